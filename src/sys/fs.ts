/**
 * Synchronous file system calls over libc, for the plugin paths. A compiled plugin that imports node:fs
 * pays ~1 ms of start-up for it on every call; these bindings cost ~0.1 ms, and only once a file is
 * touched: their dlopen is made on first use, apart from libc.ts's (a second dlopen costs no more than
 * the same symbols in the first, ~3–4 µs a symbol), so a plugin that needs only one of them skips the other.
 *
 * Like libc.ts: every wrapper checks the return value, reads errno right away and throws a SysError
 * naming the operation and the path (`opening /x: ENOENT (no such file or directory)`, `.code` "ENOENT").
 * Calls run on the JS thread, so a /proc/sys/net file opened inside withNetns is that netns's.
 * Linux on x86_64 and aarch64 (little-endian, 64-bit): struct statx and struct linux_dirent64 have one
 * layout there.
 */
import { dlopen, FFIType, type Pointer, read } from "bun:ffi";
import { SysError } from "./errno.ts";

const { i32, u32, u64, i64, i64_fast, ptr } = FFIType;

function load() {
  return dlopen("libc.so.6", {
    __errno_location: { args: [], returns: ptr },
    open: { args: [ptr, i32, u32], returns: i32 },
    close: { args: [i32], returns: i32 },
    read: { args: [i32, ptr, u64], returns: i64_fast },
    write: { args: [i32, ptr, u64], returns: i64_fast },
    pread: { args: [i32, ptr, u64, i64], returns: i64_fast },
    pwrite: { args: [i32, ptr, u64, i64], returns: i64_fast },
    ftruncate: { args: [i32, i64], returns: i32 },
    statx: { args: [i32, ptr, i32, u32, ptr], returns: i32 },
    getdents64: { args: [i32, ptr, u64], returns: i64_fast },
    mkdir: { args: [ptr, u32], returns: i32 },
    unlink: { args: [ptr], returns: i32 },
    rename: { args: [ptr, ptr], returns: i32 },
    access: { args: [ptr, i32], returns: i32 },
    utimensat: { args: [i32, ptr, ptr, i32], returns: i32 },
    poll: { args: [ptr, u64, i32], returns: i32 },
  }).symbols;
}

let libc: ReturnType<typeof load> | undefined;
let errnoPtr: Pointer | undefined;

function fn(): ReturnType<typeof load> {
  if (libc === undefined) {
    libc = load();
    errnoPtr = libc.__errno_location() as Pointer;
  }
  return libc;
}

function errno(): number {
  return read.i32(errnoPtr!, 0);
}

const EINTR = 4;
const EAGAIN = 11;
const POLLIN = 1;
const POLLOUT = 4;
const ENOENT = 2;
const EEXIST = 17;
const EINVAL = 22;

function check(ret: number, op: string): number {
  if (ret < 0) throw new SysError(op, errno());
  return ret;
}

const encoder = new TextEncoder();
/** Like Buffer#toString("utf8") (what node:fs returns): a BOM is kept, bad bytes become U+FFFD. */
const decoder = new TextDecoder("utf-8", { ignoreBOM: true });

function cpath(path: string, op: string): Uint8Array {
  if (path.includes("\0")) throw new SysError(op, EINVAL, "path contains a NUL byte");
  return encoder.encode(`${path}\0`);
}

function bytes(data: string | Uint8Array): Uint8Array {
  return typeof data === "string" ? encoder.encode(data) : data;
}

// open(2) flags: the same numbers on x86_64 and aarch64, except O_DIRECTORY.
export const O_RDONLY = 0;
export const O_WRONLY = 1;
export const O_RDWR = 2;
export const O_CREAT = 0o100;
export const O_EXCL = 0o200;
export const O_NOCTTY = 0o400;
export const O_TRUNC = 0o1000;
export const O_APPEND = 0o2000;
export const O_NONBLOCK = 0o4000;
export const O_DIRECTORY = process.arch === "arm64" ? 0o40000 : 0o200000;
export const O_CLOEXEC = 0o2000000;

// access(2) modes.
export const F_OK = 0;
export const X_OK = 1;
export const W_OK = 2;
export const R_OK = 4;

// st_mode file types.
export const S_IFMT = 0o170000;
export const S_IFSOCK = 0o140000;
export const S_IFLNK = 0o120000;
export const S_IFREG = 0o100000;
export const S_IFBLK = 0o60000;
export const S_IFDIR = 0o40000;
export const S_IFCHR = 0o20000;
export const S_IFIFO = 0o10000;

/** open(2); O_CLOEXEC is always added. Returns the fd. */
export function openFile(path: string, flags: number, mode = 0o666): number {
  const op = `opening ${path}`;
  const p = cpath(path, op);
  for (;;) {
    const fd = fn().open(p, flags | O_CLOEXEC, mode);
    if (fd >= 0) return fd;
    const e = errno();
    if (e !== EINTR) throw new SysError(op, e);
  }
}

export function closeFile(fd: number): void {
  check(fn().close(fd), "close");
}

/**
 * Waits until `fd` is readable (POLLIN) or writable (POLLOUT): a pipe handed to us may be in
 * non-blocking mode (the parent's choice), and then read/write say EAGAIN instead of waiting.
 */
function waitFor(fd: number, events: number, op: string): void {
  const pfd = new Int32Array([fd, events]); // struct pollfd: int fd; short events, revents
  for (;;) {
    if (fn().poll(pfd, 1, -1) >= 0) return;
    const e = errno();
    if (e !== EINTR) throw new SysError(op, e);
  }
}

/** One read(2) into `buf` at the fd's offset; returns the byte count (0 at end of file). */
function readOnce(fd: number, buf: Uint8Array, op: string): number {
  for (;;) {
    const n = fn().read(fd, buf, buf.byteLength);
    if (n >= 0) return Number(n);
    const e = errno();
    if (e === EAGAIN) waitFor(fd, POLLIN, op);
    else if (e !== EINTR) throw new SysError(op, e);
  }
}

function readFd(fd: number, op: string): Uint8Array {
  // Files in /proc report size 0: read until end of file, growing the buffer.
  let buf = new Uint8Array(8192);
  let len = 0;
  for (;;) {
    if (len === buf.byteLength) {
      const bigger = new Uint8Array(buf.byteLength * 2);
      bigger.set(buf);
      buf = bigger;
    }
    const n = readOnce(fd, buf.subarray(len), op);
    if (n === 0) return buf.subarray(0, len);
    len += n;
  }
}

/** Everything from the fd's offset to the end of file (as UTF-8 text with "utf8"). */
export function readAll(fd: number): Uint8Array;
export function readAll(fd: number, encoding: "utf8"): string;
export function readAll(fd: number, encoding?: "utf8"): Uint8Array | string {
  const data = readFd(fd, "read");
  return encoding ? decoder.decode(data) : data;
}

/** One pread(2) into `buf` at `position`; returns the byte count (0 at end of file). */
export function pread(fd: number, buf: Uint8Array, position: number): number {
  for (;;) {
    const n = fn().pread(fd, buf, buf.byteLength, position);
    if (n >= 0) return Number(n);
    const e = errno();
    if (e !== EINTR) throw new SysError("pread", e);
  }
}

function writeLoop(fd: number, data: Uint8Array, position: number | undefined, op: string): void {
  let off = 0;
  while (off < data.byteLength) {
    const rest = data.subarray(off);
    const n =
      position === undefined
        ? fn().write(fd, rest, rest.byteLength)
        : fn().pwrite(fd, rest, rest.byteLength, position + off);
    if (n < 0) {
      const e = errno();
      if (e === EAGAIN) waitFor(fd, POLLOUT, op);
      else if (e !== EINTR) throw new SysError(op, e);
      continue;
    }
    off += Number(n);
  }
}

/** write(2) at the fd's offset until every byte is written (strings as UTF-8). */
export function write(fd: number, data: string | Uint8Array): void {
  writeLoop(fd, bytes(data), undefined, "write");
}

/** pwrite(2) at `position` until every byte is written (strings as UTF-8). */
export function pwrite(fd: number, data: string | Uint8Array, position: number): void {
  writeLoop(fd, bytes(data), position, "pwrite");
}

export function ftruncate(fd: number, length: number): void {
  check(fn().ftruncate(fd, length), "ftruncate");
}

/** The whole file (as UTF-8 text with "utf8"). */
export function readFile(path: string): Uint8Array;
export function readFile(path: string, encoding: "utf8"): string;
export function readFile(path: string, encoding?: "utf8"): Uint8Array | string {
  const fd = openFile(path, O_RDONLY);
  try {
    const data = readFd(fd, `reading ${path}`);
    return encoding ? decoder.decode(data) : data;
  } finally {
    fn().close(fd);
  }
}

export interface WriteFileOptions {
  /** Permission bits when the file is created (before the umask). Default 0o666. */
  mode?: number;
  /** Append instead of truncating (node's appendFileSync). */
  append?: boolean;
}

/** Creates or truncates (or appends to) `path` and writes all of `data` (strings as UTF-8). */
export function writeFile(path: string, data: string | Uint8Array, opts: WriteFileOptions = {}): void {
  const flags = O_WRONLY | O_CREAT | (opts.append ? O_APPEND : O_TRUNC);
  const fd = openFile(path, flags, opts.mode ?? 0o666);
  try {
    writeLoop(fd, bytes(data), undefined, `writing ${path}`);
  } catch (err) {
    fn().close(fd);
    throw err;
  }
  check(fn().close(fd), `writing ${path}`);
}

/** What stat(2) says about a file (the fields tscni uses), from statx(2). */
export class Stat {
  constructor(
    /** File type and permission bits. */
    readonly mode: number,
    readonly ino: bigint,
    /** makedev(major, minor) as glibc (and node:fs) compose it. */
    readonly dev: number,
    readonly rdev: number,
    readonly nlink: number,
    readonly uid: number,
    readonly gid: number,
    readonly size: number,
    /** Last modification, nanoseconds since the epoch (node's `mtimeNs` with `bigint: true`). */
    readonly mtimeNs: bigint,
  ) {}

  isFile(): boolean {
    return (this.mode & S_IFMT) === S_IFREG;
  }
  isDirectory(): boolean {
    return (this.mode & S_IFMT) === S_IFDIR;
  }
  isSymbolicLink(): boolean {
    return (this.mode & S_IFMT) === S_IFLNK;
  }
  isCharacterDevice(): boolean {
    return (this.mode & S_IFMT) === S_IFCHR;
  }
  isBlockDevice(): boolean {
    return (this.mode & S_IFMT) === S_IFBLK;
  }
  isFIFO(): boolean {
    return (this.mode & S_IFMT) === S_IFIFO;
  }
  isSocket(): boolean {
    return (this.mode & S_IFMT) === S_IFSOCK;
  }
}

const AT_FDCWD = -100;
const AT_SYMLINK_NOFOLLOW = 0x100;
const AT_EMPTY_PATH = 0x1000;
const STATX_BASIC_STATS = 0x7ff;
const STATX_SIZE = 256;
const EMPTY_PATH = new Uint8Array(1);

/** glibc's makedev, in doubles: majors and minors are 32-bit. */
function makedev(major: number, minor: number): number {
  const majLo = major & 0xfff;
  const minLo = minor & 0xff;
  return (major - majLo) * 2 ** 32 + majLo * 2 ** 8 + (minor - minLo) * 2 ** 12 + minLo;
}

function statx(dirfd: number, path: Uint8Array, flags: number, op: string): Stat {
  const buf = new Uint8Array(STATX_SIZE);
  check(fn().statx(dirfd, path, flags, STATX_BASIC_STATS, buf), op);
  const v = new DataView(buf.buffer);
  // struct statx: nlink@16 uid@20 gid@24 mode@28 ino@32 size@40 mtime{sec@112 nsec@120}
  // rdev_major@128 rdev_minor@132 dev_major@136 dev_minor@140.
  return new Stat(
    v.getUint16(28, true),
    v.getBigUint64(32, true),
    makedev(v.getUint32(136, true), v.getUint32(140, true)),
    makedev(v.getUint32(128, true), v.getUint32(132, true)),
    v.getUint32(16, true),
    v.getUint32(20, true),
    v.getUint32(24, true),
    Number(v.getBigUint64(40, true)),
    v.getBigInt64(112, true) * 1_000_000_000n + BigInt(v.getUint32(120, true)),
  );
}

/** stat(2): follows symlinks. */
export function stat(path: string): Stat {
  const op = `inspecting ${path}`;
  return statx(AT_FDCWD, cpath(path, op), 0, op);
}

/** lstat(2): a symlink itself. */
export function lstat(path: string): Stat {
  const op = `inspecting ${path}`;
  return statx(AT_FDCWD, cpath(path, op), AT_SYMLINK_NOFOLLOW, op);
}

export function fstat(fd: number): Stat {
  return statx(fd, EMPTY_PATH, AT_EMPTY_PATH, "fstat");
}

/** utimensat(2)'s "leave this time alone". */
const UTIME_OMIT = (1 << 30) - 2;

/** Sets the modification time of `path` (following symlinks) to `mtimeNs`; the access time stays. */
export function setMtime(path: string, mtimeNs: bigint): void {
  const op = `setting the modification time of ${path}`;
  const times = new BigInt64Array(4); // struct timespec[2]: atime, mtime
  times[1] = BigInt(UTIME_OMIT);
  times[2] = mtimeNs / 1_000_000_000n;
  times[3] = mtimeNs % 1_000_000_000n;
  check(fn().utimensat(AT_FDCWD, cpath(path, op), times, 0), op);
}

/** ENOENT when `path` (following symlinks) is absent; other errors as access(2) gives them. */
export function access(path: string, mode = F_OK): void {
  const op = `checking access to ${path}`;
  check(fn().access(cpath(path, op), mode), op);
}

/** Whether `path` exists (following symlinks); never throws, like node's existsSync. */
export function exists(path: string): boolean {
  if (path.includes("\0")) return false;
  return fn().access(encoder.encode(`${path}\0`), F_OK) === 0;
}

export interface MkdirOptions {
  /** Permission bits (before the umask), for every directory made. Default 0o777. */
  mode?: number;
  /** Make missing parents too; an existing directory is then not an error (`mkdir -p`). */
  recursive?: boolean;
}

/** The parent of a path (no normalisation beyond trailing slashes): "/a/b/" → "/a", "a" → ".". */
function parentOf(path: string): string {
  let end = path.length;
  while (end > 1 && path[end - 1] === "/") end--;
  const at = path.lastIndexOf("/", end - 1);
  if (at < 0) return ".";
  return at === 0 ? "/" : path.slice(0, at);
}

function isDirectory(path: string): boolean {
  try {
    return stat(path).isDirectory();
  } catch {
    return false;
  }
}

export function mkdir(path: string, opts: MkdirOptions = {}): void {
  const op = `creating directory ${path}`;
  const mode = opts.mode ?? 0o777;
  const make = (dir: string): void => {
    if (fn().mkdir(cpath(dir, op), mode) === 0) return;
    const e = errno();
    if (!opts.recursive) throw new SysError(op, e);
    if (e === EEXIST && isDirectory(dir)) return;
    const parent = parentOf(dir);
    if (e !== ENOENT || parent === dir) throw new SysError(op, e);
    make(parent);
    if (fn().mkdir(cpath(dir, op), mode) === 0) return;
    const again = errno();
    if (again !== EEXIST || !isDirectory(dir)) throw new SysError(op, again);
  };
  make(path);
}

export interface UnlinkOptions {
  /** A missing file is not an error (`rm -f`). */
  force?: boolean;
}

export function unlink(path: string, opts: UnlinkOptions = {}): void {
  const op = `removing ${path}`;
  if (fn().unlink(cpath(path, op)) === 0) return;
  const e = errno();
  if (!(opts.force && e === ENOENT)) throw new SysError(op, e);
}

/** rename(2): atomically replaces `to`. */
export function rename(from: string, to: string): void {
  const op = `renaming ${from} to ${to}`;
  check(fn().rename(cpath(from, op), cpath(to, op)), op);
}

/** A directory entry's type, from d_type (lstat when the file system does not say). */
export type FileType = "file" | "directory" | "symlink" | "char" | "block" | "fifo" | "socket" | "unknown";

export interface DirEntry {
  name: string;
  type: FileType;
}

const DT_TYPES: Record<number, FileType> = {
  1: "fifo",
  2: "char",
  4: "directory",
  6: "block",
  8: "file",
  10: "symlink",
  12: "socket",
};

function typeOfMode(mode: number): FileType {
  return DT_TYPES[(mode & S_IFMT) >> 12] ?? "unknown";
}

/** getdents64(2) over the directory; `visit` gets each name (never . or ..) and its d_type. */
function scanDir(path: string, visit: (name: string, dtype: number) => void): void {
  const op = `listing ${path}`;
  const fd = openFile(path, O_RDONLY | O_DIRECTORY);
  try {
    const buf = new Uint8Array(32768);
    const v = new DataView(buf.buffer);
    for (;;) {
      const n = Number(fn().getdents64(fd, buf, buf.byteLength));
      if (n < 0) {
        const e = errno();
        if (e === EINTR) continue;
        throw new SysError(op, e);
      }
      if (n === 0) return;
      // struct linux_dirent64: ino@0 off@8 reclen@16 (u16) type@18 (u8) name@19 (NUL-terminated).
      for (let pos = 0; pos < n; ) {
        const reclen = v.getUint16(pos + 16, true);
        const dtype = buf[pos + 18]!;
        let end = buf.indexOf(0, pos + 19);
        if (end < 0 || end > pos + reclen) end = pos + reclen;
        const name = decoder.decode(buf.subarray(pos + 19, end));
        pos += reclen;
        if (name !== "." && name !== "..") visit(name, dtype);
      }
    }
  } finally {
    fn().close(fd);
  }
}

/** The names in a directory, in the file system's order (like node's readdirSync), without . and .. */
export function readdir(path: string): string[] {
  const names: string[] = [];
  scanDir(path, (name) => names.push(name));
  return names;
}

/** The entries of a directory with their types (readdirSync's withFileTypes). */
export function readdirTypes(path: string): DirEntry[] {
  const entries: DirEntry[] = [];
  scanDir(path, (name, dtype) => {
    let type = DT_TYPES[dtype] ?? "unknown";
    if (dtype === 0) {
      try {
        type = typeOfMode(lstat(joinPath(path, name)).mode);
      } catch {
        // gone meanwhile: stays unknown
      }
    }
    entries.push({ name, type });
  });
  return entries;
}

/** node's path.posix.join: the parts joined with "/", then normalised (//, ., .. collapsed). */
export function joinPath(...parts: string[]): string {
  const joined = parts.filter((p) => p !== "").join("/");
  if (joined === "") return ".";
  const absolute = joined.startsWith("/");
  const trailing = joined.endsWith("/");
  const out: string[] = [];
  for (const seg of joined.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === "..") {
      if (out.length > 0 && out[out.length - 1] !== "..") out.pop();
      else if (!absolute) out.push("..");
    } else {
      out.push(seg);
    }
  }
  let path = out.join("/");
  if (path === "") return absolute ? "/" : trailing ? "./" : ".";
  if (trailing) path += "/";
  return absolute ? `/${path}` : path;
}
