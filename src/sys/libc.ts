/**
 * Thin bun:ffi bindings to libc. bun:ffi stays inside src/sys (this file, fs.ts, packet.ts, pidfd.ts): every wrapper checks the
 * return value, reads errno right away and throws a SysError naming the operation.
 */
import { dlopen, FFIType, type Pointer, read } from "bun:ffi";
import { SysError } from "./errno.ts";

const { i32, u32, u64, i64_fast, ptr, cstring } = FFIType;

const lib = dlopen("libc.so.6", {
  __errno_location: { args: [], returns: ptr },
  socket: { args: [i32, i32, i32], returns: i32 },
  bind: { args: [i32, ptr, u32], returns: i32 },
  getsockname: { args: [i32, ptr, ptr], returns: i32 },
  setsockopt: { args: [i32, i32, i32, ptr, u32], returns: i32 },
  getsockopt: { args: [i32, i32, i32, ptr, ptr], returns: i32 },
  listen: { args: [i32, i32], returns: i32 },
  accept4: { args: [i32, ptr, ptr, i32], returns: i32 },
  sendto: { args: [i32, ptr, u64, i32, ptr, u32], returns: i64_fast },
  recvfrom: { args: [i32, ptr, u64, i32, ptr, ptr], returns: i64_fast },
  close: { args: [i32], returns: i32 },
  open: { args: [cstring, i32, u32], returns: i32 },
  setns: { args: [i32, i32], returns: i32 },
  unshare: { args: [i32], returns: i32 },
  mount: { args: [cstring, cstring, cstring, u64, ptr], returns: i32 },
  umount2: { args: [cstring, i32], returns: i32 },
  flock: { args: [i32, i32], returns: i32 },
  ioctl: { args: [i32, u64, ptr], returns: i32 },
  realpath: { args: [cstring, ptr], returns: ptr },
  getpid: { args: [], returns: i32 },
  gettid: { args: [], returns: i32 },
});

const fn = lib.symbols;
const errnoPtr = fn.__errno_location() as Pointer;

function errno(): number {
  return read.i32(errnoPtr, 0);
}

function check(ret: number, op: string): number {
  if (ret < 0) throw new SysError(op, errno());
  return ret;
}

function cstr(s: string): Buffer {
  return Buffer.from(`${s}\0`, "utf8");
}

export const AF_UNIX = 1;
export const AF_INET = 2;
export const AF_INET6 = 10;
export const AF_NETLINK = 16;
export const SOCK_DGRAM = 2;
export const SOCK_RAW = 3;
export const SOCK_CLOEXEC = 0o2000000;
export const SOL_SOCKET = 1;
export const SO_SNDBUF = 7;
export const SO_RCVBUF = 8;
export const SO_RCVBUFFORCE = 33;
export const SO_PEERCRED = 17;
export const SOCK_STREAM = 1;
export const SOL_NETLINK = 270;
export const MSG_PEEK = 2;
export const MSG_TRUNC = 0x20;
export const MSG_DONTWAIT = 0x40;

export const O_RDONLY = 0;
export const O_RDWR = 2;
export const O_CREAT = 0o100;
export const O_EXCL = 0o200;
export const O_CLOEXEC = 0o2000000;

export const CLONE_NEWNET = 0x40000000;
export const MS_BIND = 4096;
export const MNT_DETACH = 2;

export const LOCK_SH = 1;
export const LOCK_EX = 2;
export const LOCK_NB = 4;
export const LOCK_UN = 8;

export function socket(domain: number, type: number, protocol: number): number {
  return check(fn.socket(domain, type | SOCK_CLOEXEC, protocol), "socket");
}

export function bind(fd: number, addr: Uint8Array): void {
  check(fn.bind(fd, addr, addr.byteLength), "bind");
}

/** Returns the socket's address bytes (up to `size` bytes). */
export function getsockname(fd: number, size = 128): Uint8Array {
  const addr = new Uint8Array(size);
  const len = new Uint32Array([size]);
  check(fn.getsockname(fd, addr, len), "getsockname");
  return addr.subarray(0, len[0]);
}

export function setsockoptInt(
  fd: number,
  level: number,
  name: number,
  value: number,
  op = "setsockopt",
): void {
  const v = new Int32Array([value]);
  check(fn.setsockopt(fd, level, name, v, 4), op);
}

/** A connected Unix socket's peer (SO_PEERCRED): the kernel's word, not the peer's. */
export function peerCredentials(fd: number): { pid: number; uid: number; gid: number } {
  const buf = new Uint8Array(12);
  const len = new Uint32Array([12]);
  check(fn.getsockopt(fd, SOL_SOCKET, SO_PEERCRED, buf, len), "getsockopt SO_PEERCRED");
  const v = new DataView(buf.buffer);
  return { pid: v.getInt32(0, true), uid: v.getUint32(4, true), gid: v.getUint32(8, true) };
}

/** SO_RCVTIMEO: a blocking read on `fd` fails with EAGAIN after `ms`. */
export function setReceiveTimeout(fd: number, ms: number): void {
  const tv = new BigInt64Array([BigInt(Math.floor(ms / 1000)), BigInt((ms % 1000) * 1000)]);
  check(fn.setsockopt(fd, SOL_SOCKET, 20, new Uint8Array(tv.buffer), 16), "setsockopt SO_RCVTIMEO");
}

export function listen(fd: number, backlog: number): void {
  check(fn.listen(fd, backlog), "listen");
}

/** Blocks until a connection arrives; the new socket is close-on-exec. */
export function accept(fd: number): number {
  for (;;) {
    const r = fn.accept4(fd, null, null, SOCK_CLOEXEC);
    if (r >= 0) return r;
    const e = errno();
    if (e !== 4) throw new SysError("accept", e); // EINTR: again
  }
}

export function sendto(fd: number, data: Uint8Array, addr: Uint8Array | null, flags = 0): number {
  for (;;) {
    const n = fn.sendto(fd, data, data.byteLength, flags, addr, addr ? addr.byteLength : 0);
    if (n >= 0) return Number(n);
    const e = errno();
    if (e !== 4 /* EINTR */) throw new SysError("sendto", e);
  }
}

/** recvfrom into `buf`; returns the byte count (with MSG_TRUNC: the real datagram size). */
export function recv(fd: number, buf: Uint8Array, flags = 0): number {
  for (;;) {
    const n = fn.recvfrom(fd, buf, buf.byteLength, flags, null, null);
    if (n >= 0) return Number(n);
    const e = errno();
    if (e !== 4 /* EINTR */) throw new SysError("recvfrom", e);
  }
}

export function close(fd: number): void {
  check(fn.close(fd), "close");
}

export function open(path: string, flags: number, mode = 0): number {
  return check(fn.open(cstr(path), flags | O_CLOEXEC, mode), `opening ${path}`);
}

export function setns(fd: number, nstype: number): void {
  check(fn.setns(fd, nstype), "setns");
}

export function unshare(flags: number): void {
  check(fn.unshare(flags), "unshare");
}

export function mount(source: string, target: string, fstype: string | null, flags: number): void {
  const r = fn.mount(cstr(source), cstr(target), fstype === null ? null : cstr(fstype), flags, null);
  check(r, `mounting ${source} on ${target}`);
}

export function umount2(target: string, flags: number): void {
  check(fn.umount2(cstr(target), flags), `unmounting ${target}`);
}

export function flock(fd: number, op: number): void {
  for (;;) {
    if (fn.flock(fd, op) === 0) return;
    const e = errno();
    if (e !== 4 /* EINTR */) throw new SysError("flock", e);
  }
}

/**
 * ioctl with a pointer argument (e.g. struct ifreq) or an integer one passed by value (TUNSETPERSIST,
 * TUNSETOWNER…); returns the (non-negative) result.
 */
export function ioctl(fd: number, request: number, arg: Uint8Array | number, op = "ioctl"): number {
  return check(fn.ioctl(fd, request, arg as Uint8Array), op);
}

/** realpath(3): the canonical absolute path (symlinks resolved); SysError when it does not resolve. */
export function realpath(path: string): string {
  const buf = new Uint8Array(4096); // PATH_MAX
  if (fn.realpath(cstr(path), buf) === null) throw new SysError(`resolving ${path}`, errno());
  return new TextDecoder().decode(buf.subarray(0, buf.indexOf(0)));
}

export function getpid(): number {
  return fn.getpid();
}

export function gettid(): number {
  return fn.gettid();
}
