import { afterAll, describe, expect, test } from "bun:test";
import * as nfs from "node:fs";
import { tmpdir } from "node:os";
import * as npath from "node:path";
import type { SysError } from "../../src/sys/errno.ts";
import {
  access,
  closeFile,
  exists,
  F_OK,
  fstat,
  ftruncate,
  joinPath,
  lstat,
  mkdir,
  O_APPEND,
  O_CREAT,
  O_EXCL,
  O_NONBLOCK,
  O_RDONLY,
  O_RDWR,
  O_TRUNC,
  O_WRONLY,
  openFile,
  pread,
  pwrite,
  R_OK,
  readAll,
  readdir,
  readdirTypes,
  readFile,
  rename,
  type Stat,
  setMtime,
  stat,
  unlink,
  W_OK,
  write,
  writeFile,
} from "../../src/sys/fs.ts";

const root = nfs.mkdtempSync(npath.join(tmpdir(), "tscni-fs-"));
afterAll(() => nfs.rmSync(root, { recursive: true, force: true }));

let seq = 0;
/** A fresh path under the temp dir (nothing created). */
function fresh(name = "f"): string {
  return npath.join(root, `${name}-${++seq}`);
}

function caught(fn: () => unknown): SysError {
  try {
    fn();
  } catch (err) {
    return err as SysError;
  }
  throw new Error("expected a throw");
}

function expectErr(fn: () => unknown, code: string, op: string): void {
  const err = caught(fn);
  expect(err.name).toBe("SysError");
  expect(err.code).toBe(code);
  expect(err.message).toStartWith(`${op}: ${code}`);
}

/** Every field of ours against node's bigint stats of the same file. */
function expectSameStat(ours: Stat, theirs: nfs.BigIntStats): void {
  expect(ours.mode).toBe(Number(theirs.mode));
  expect(ours.ino).toBe(theirs.ino);
  expect(ours.dev).toBe(Number(theirs.dev));
  expect(ours.rdev).toBe(Number(theirs.rdev));
  expect(ours.nlink).toBe(Number(theirs.nlink));
  expect(ours.uid).toBe(Number(theirs.uid));
  expect(ours.gid).toBe(Number(theirs.gid));
  expect(ours.size).toBe(Number(theirs.size));
  expect(ours.mtimeNs).toBe(theirs.mtimeNs);
  expect(ours.isFile()).toBe(theirs.isFile());
  expect(ours.isDirectory()).toBe(theirs.isDirectory());
  expect(ours.isSymbolicLink()).toBe(theirs.isSymbolicLink());
  expect(ours.isCharacterDevice()).toBe(theirs.isCharacterDevice());
  expect(ours.isBlockDevice()).toBe(theirs.isBlockDevice());
  expect(ours.isFIFO()).toBe(theirs.isFIFO());
  expect(ours.isSocket()).toBe(theirs.isSocket());
}

describe("open, read, write", () => {
  test("openFile creates with the mode, O_EXCL refuses an existing file, a missing one is ENOENT", () => {
    const p = fresh();
    const fd = openFile(p, O_WRONLY | O_CREAT | O_EXCL, 0o640);
    closeFile(fd);
    expect(nfs.statSync(p).mode & 0o777).toBe(0o640 & ~process.umask());
    expectErr(() => openFile(p, O_WRONLY | O_CREAT | O_EXCL), "EEXIST", `opening ${p}`);
    const missing = fresh();
    expectErr(() => openFile(missing, O_RDONLY), "ENOENT", `opening ${missing}`);
    expectErr(() => openFile(`${p}/below`, O_RDONLY), "ENOTDIR", `opening ${p}/below`);
    expectErr(() => openFile(root, O_WRONLY), "EISDIR", `opening ${root}`);
    expectErr(() => openFile(`${p}\0x`, O_RDONLY), "EINVAL", `opening ${p}\0x`);
  });

  test("the fd is close-on-exec", () => {
    const fd = openFile("/dev/null", O_RDONLY);
    try {
      const flags = nfs.readFileSync(`/proc/self/fdinfo/${fd}`, "utf8").match(/^flags:\s+(\d+)/m)![1]!;
      expect(Number.parseInt(flags, 8) & 0o2000000).toBe(0o2000000);
    } finally {
      closeFile(fd);
    }
  });

  test("closeFile of a closed fd is EBADF", () => {
    const fd = openFile("/dev/null", O_RDONLY);
    closeFile(fd);
    expectErr(() => closeFile(fd), "EBADF", "close");
  });

  test("write and readAll: strings as UTF-8, from the current offset, past one buffer", () => {
    const p = fresh();
    const fd = openFile(p, O_RDWR | O_CREAT);
    const big = "é".repeat(20000); // 40000 bytes: several read buffers
    try {
      write(fd, "héllo ");
      write(fd, new TextEncoder().encode(big));
      write(fd, new Uint8Array(0));
    } finally {
      closeFile(fd);
    }
    expect(nfs.readFileSync(p, "utf8")).toBe(`héllo ${big}`);
    const rd = openFile(p, O_RDONLY);
    try {
      expect(pread(rd, new Uint8Array(1), 0)).toBe(1);
      nfs.readSync(rd, new Uint8Array(7)); // moves the offset past "héllo "
      expect(readAll(rd, "utf8")).toBe(big);
      expect(readAll(rd)).toEqual(new Uint8Array(0));
    } finally {
      closeFile(rd);
    }
    expectErr(() => readAll(9999), "EBADF", "read");
    expectErr(() => write(9999, "x"), "EBADF", "write");
  });

  test("pread and pwrite at a position (pwrite of a subarray writes those bytes), ftruncate", () => {
    const p = fresh();
    nfs.writeFileSync(p, "0123456789");
    const fd = openFile(p, O_RDWR);
    try {
      const src = new TextEncoder().encode("xxABCxx");
      pwrite(fd, src.subarray(2, 5), 3);
      pwrite(fd, "Z", 0);
      const buf = new Uint8Array(4);
      expect(pread(fd, buf, 2)).toBe(4);
      expect(new TextDecoder().decode(buf)).toBe("2ABC");
      expect(pread(fd, buf, 100)).toBe(0);
      ftruncate(fd, 5);
      expect(readAll(fd, "utf8")).toBe("Z12AB"); // the offset is still 0
      expectErr(() => ftruncate(fd, -1), "EINVAL", "ftruncate");
    } finally {
      closeFile(fd);
    }
    expectErr(() => pread(9999, new Uint8Array(1), 0), "EBADF", "pread");
    expectErr(() => pwrite(9999, "x", 0), "EBADF", "pwrite");
    const ro = openFile(p, O_RDONLY);
    try {
      expectErr(() => pwrite(ro, "x", 0), "EBADF", "pwrite");
      expectErr(() => ftruncate(ro, 0), "EINVAL", "ftruncate");
    } finally {
      closeFile(ro);
    }
  });

  test("O_APPEND and O_TRUNC", () => {
    const p = fresh();
    nfs.writeFileSync(p, "abc");
    let fd = openFile(p, O_WRONLY | O_APPEND);
    write(fd, "def");
    closeFile(fd);
    expect(nfs.readFileSync(p, "utf8")).toBe("abcdef");
    fd = openFile(p, O_WRONLY | O_TRUNC);
    closeFile(fd);
    expect(nfs.readFileSync(p, "utf8")).toBe("");
  });
});

describe("non-blocking fds", () => {
  test("readAll waits (poll) on a non-blocking pipe instead of failing with EAGAIN", async () => {
    const fifo = fresh();
    expect(Bun.spawnSync(["mkfifo", fifo]).exitCode).toBe(0);
    const rd = openFile(fifo, O_RDONLY | O_NONBLOCK);
    const wr = openFile(fifo, O_WRONLY);
    try {
      const child = Bun.spawn(["sh", "-c", "sleep 0.3; printf late"], { stdout: wr });
      closeFile(wr);
      expect(readAll(rd, "utf8")).toBe("late");
      expect(await child.exited).toBe(0);
    } finally {
      closeFile(rd);
    }
  });
});

describe("readFile, writeFile", () => {
  test("readFile: bytes or text (a BOM kept, like node), /proc files that report size 0", () => {
    const p = fresh();
    nfs.writeFileSync(p, "\ufeffa\u00ffb");
    expect(readFile(p, "utf8")).toBe(nfs.readFileSync(p, "utf8"));
    expect(readFile(p)).toEqual(new Uint8Array(nfs.readFileSync(p)));
    expect(readFile("/proc/self/status", "utf8")).toStartWith("Name:");
    expect(readFile("/proc/sys/net/ipv4/ip_forward", "utf8")).toMatch(/^[01]\n$/);
    const empty = fresh();
    nfs.writeFileSync(empty, "");
    expect(readFile(empty, "utf8")).toBe("");
    expect(readFile(empty).byteLength).toBe(0);
  });

  test("readFile errors name the path", () => {
    const missing = fresh();
    expectErr(() => readFile(missing), "ENOENT", `opening ${missing}`);
    expectErr(() => readFile(root), "EISDIR", `reading ${root}`);
  });

  test("writeFile truncates or appends; the mode applies only on creation", () => {
    const p = fresh();
    writeFile(p, "first line that is long", { mode: 0o600 });
    expect(nfs.statSync(p).mode & 0o777).toBe(0o600);
    writeFile(p, "second", { mode: 0o644 });
    expect(nfs.readFileSync(p, "utf8")).toBe("second");
    expect(nfs.statSync(p).mode & 0o777).toBe(0o600);
    writeFile(p, new TextEncoder().encode("+bytes"), { append: true });
    writeFile(p, "", { append: true });
    expect(nfs.readFileSync(p, "utf8")).toBe("second+bytes");
    const q = fresh();
    writeFile(q, "", { append: true });
    expect(nfs.statSync(q).mode & 0o777).toBe(0o666 & ~process.umask());
    const noDir = `${fresh()}/x`;
    expectErr(() => writeFile(noDir, "y"), "ENOENT", `opening ${noDir}`);
    expectErr(() => writeFile(root, "y"), "EISDIR", `opening ${root}`);
  });

  test("writing a sysctl with a bad value fails in write(2) with the kernel's errno", () => {
    expectErr(
      () => writeFile("/proc/sys/net/ipv4/ip_forward", "not a number"),
      "EINVAL",
      "writing /proc/sys/net/ipv4/ip_forward",
    );
  });
});

describe("stat", () => {
  test("stat, lstat and fstat match node's bigint stats (ino, dev, mtimeNs…)", () => {
    const p = fresh();
    nfs.writeFileSync(p, "12345");
    nfs.utimesSync(p, 1_700_000_000.123456, 1_700_000_000.123456);
    const link = fresh("link");
    nfs.symlinkSync(p, link);
    expectSameStat(stat(p), nfs.statSync(p, { bigint: true }));
    expectSameStat(stat(link), nfs.statSync(link, { bigint: true }));
    expectSameStat(lstat(link), nfs.lstatSync(link, { bigint: true }));
    expectSameStat(stat(root), nfs.statSync(root, { bigint: true }));
    expectSameStat(stat("/dev/null"), nfs.statSync("/dev/null", { bigint: true }));
    expectSameStat(stat("/proc/self/ns/net"), nfs.statSync("/proc/self/ns/net", { bigint: true }));
    const fd = openFile(p, O_RDONLY);
    try {
      expectSameStat(fstat(fd), nfs.fstatSync(fd, { bigint: true }));
    } finally {
      closeFile(fd);
    }
    expect(stat(p).size).toBe(5);
    expect(stat(p).isFile()).toBe(true);
    expect(lstat(link).isSymbolicLink()).toBe(true);
    expect(stat(root).isDirectory()).toBe(true);
    const dn = stat("/dev/null");
    expect(dn.isCharacterDevice()).toBe(true);
    expect(dn.rdev).toBe(0x103);
    expect(typeof stat(p).ino).toBe("bigint");
    expect(stat(p).mtimeNs).toBe(nfs.statSync(p, { bigint: true }).mtimeNs);
  });

  test("setMtime sets the modification time to the nanosecond and leaves the access time", () => {
    const p = fresh();
    nfs.writeFileSync(p, "a");
    nfs.utimesSync(p, 5, 5);
    setMtime(p, 1_234_567_890_123_456_789n);
    const st = nfs.statSync(p, { bigint: true });
    expect(st.mtimeNs).toBe(1_234_567_890_123_456_789n);
    expect(st.atimeNs).toBe(5_000_000_000n);
    expect(() => setMtime(joinPath(root, "missing"), 1n)).toThrow(/ENOENT/);
  });

  test("mtimeNs moves with a write, to the nanosecond as node sees it", () => {
    const p = fresh();
    nfs.writeFileSync(p, "a");
    nfs.utimesSync(p, 1, 1);
    expect(stat(p).mtimeNs).toBe(1_000_000_000n);
    writeFile(p, "b", { append: true });
    expect(stat(p).mtimeNs).toBeGreaterThan(1_000_000_000n);
    expect(stat(p).mtimeNs).toBe(nfs.statSync(p, { bigint: true }).mtimeNs);
  });

  test("errors: ENOENT, ENOTDIR, ELOOP, EBADF", () => {
    const missing = fresh();
    expectErr(() => stat(missing), "ENOENT", `inspecting ${missing}`);
    expectErr(() => lstat(missing), "ENOENT", `inspecting ${missing}`);
    const file = fresh();
    nfs.writeFileSync(file, "");
    expectErr(() => stat(`${file}/x`), "ENOTDIR", `inspecting ${file}/x`);
    const loop = fresh("loop");
    nfs.symlinkSync(loop, loop);
    expectErr(() => stat(loop), "ELOOP", `inspecting ${loop}`);
    expect(lstat(loop).isSymbolicLink()).toBe(true);
    expectErr(() => fstat(9999), "EBADF", "fstat");
  });
});

describe("directories and names", () => {
  test("mkdir: mode, EEXIST, ENOENT without recursive; recursive makes parents and accepts a directory", () => {
    const d = fresh("dir");
    mkdir(d, { mode: 0o750 });
    expect(nfs.statSync(d).mode & 0o777).toBe(0o750 & ~process.umask());
    expectErr(() => mkdir(d), "EEXIST", `creating directory ${d}`);
    const deep = npath.join(fresh("dir"), "a", "b", "c");
    expectErr(() => mkdir(deep), "ENOENT", `creating directory ${deep}`);
    mkdir(deep, { recursive: true, mode: 0o700 });
    expect(nfs.statSync(deep).isDirectory()).toBe(true);
    expect(nfs.statSync(npath.dirname(deep)).mode & 0o777).toBe(0o700);
    mkdir(deep, { recursive: true });
    mkdir(`${deep}/`, { recursive: true });
    mkdir("/", { recursive: true });
    const link = fresh("dirlink");
    nfs.symlinkSync(deep, link);
    mkdir(link, { recursive: true }); // a symlink to a directory is a directory
  });

  test("mkdir recursive over a file: EEXIST for the file itself, ENOTDIR below it", () => {
    const file = fresh();
    nfs.writeFileSync(file, "");
    expectErr(() => mkdir(file, { recursive: true }), "EEXIST", `creating directory ${file}`);
    expectErr(() => mkdir(`${file}/a/b`, { recursive: true }), "ENOTDIR", `creating directory ${file}/a/b`);
  });

  test("unlink: the file goes; a missing one is ENOENT unless forced; a directory is EISDIR", () => {
    const p = fresh();
    nfs.writeFileSync(p, "");
    unlink(p);
    expect(nfs.existsSync(p)).toBe(false);
    expectErr(() => unlink(p), "ENOENT", `removing ${p}`);
    unlink(p, { force: true });
    expectErr(() => unlink(root, { force: true }), "EISDIR", `removing ${root}`);
    unlink(`${p}/x/y`, { force: true }); // ENOENT too
    const file = fresh();
    nfs.writeFileSync(file, "");
    expectErr(() => unlink(`${file}/x`, { force: true }), "ENOTDIR", `removing ${file}/x`);
  });

  test("rename replaces the target; a missing source is ENOENT", () => {
    const a = fresh();
    const b = fresh();
    nfs.writeFileSync(a, "A");
    nfs.writeFileSync(b, "B");
    rename(a, b);
    expect(nfs.existsSync(a)).toBe(false);
    expect(nfs.readFileSync(b, "utf8")).toBe("A");
    expectErr(() => rename(a, b), "ENOENT", `renaming ${a} to ${b}`);
    const dir = fresh("dir");
    nfs.mkdirSync(dir);
    const nodeCode = caught(() => nfs.renameSync(b, dir)).code;
    expectErr(() => rename(b, dir), nodeCode, `renaming ${b} to ${dir}`);
  });

  test("access and exists", () => {
    const p = fresh();
    nfs.writeFileSync(p, "");
    access(p);
    access(p, R_OK | W_OK);
    access(root, F_OK);
    const missing = fresh();
    expectErr(() => access(missing), "ENOENT", `checking access to ${missing}`);
    expectErr(() => access(`${p}/x`, W_OK), "ENOTDIR", `checking access to ${p}/x`);
    expect(exists(p)).toBe(true);
    expect(exists(root)).toBe(true);
    expect(exists(missing)).toBe(false);
    expect(exists(`${p}/x`)).toBe(false);
    expect(exists(`${p}\0`)).toBe(false);
    const dangling = fresh("dangling");
    nfs.symlinkSync(missing, dangling);
    expect(exists(dangling)).toBe(false); // follows symlinks, like existsSync
  });

  test("readdir and readdirTypes: every entry but . and .., with types, as node lists them", () => {
    const d = fresh("dir");
    nfs.mkdirSync(d);
    nfs.writeFileSync(`${d}/file`, "");
    nfs.writeFileSync(`${d}/.hidden`, "");
    nfs.writeFileSync(`${d}/ünï-cødé`, "");
    nfs.mkdirSync(`${d}/sub`);
    nfs.symlinkSync("file", `${d}/link`);
    expect(readdir(d).sort()).toEqual(nfs.readdirSync(d).sort());
    expect(readdir(d).sort()).toEqual([".hidden", "file", "link", "sub", "ünï-cødé"]);
    const types = Object.fromEntries(readdirTypes(d).map((e) => [e.name, e.type]));
    expect(types).toEqual({
      ".hidden": "file",
      file: "file",
      link: "symlink",
      sub: "directory",
      "ünï-cødé": "file",
    });
    expect(Object.fromEntries(readdirTypes("/dev").map((e) => [e.name, e.type]))["null"]).toBe("char");
    nfs.mkdirSync(`${d}/empty`);
    expect(readdir(`${d}/empty`)).toEqual([]);
  });

  test("readdir of a big directory (several getdents64 buffers)", () => {
    const d = fresh("big");
    nfs.mkdirSync(d);
    const names = Array.from({ length: 3000 }, (_, i) => `10.0.${i >> 8}.${i & 255}`);
    for (const n of names) nfs.writeFileSync(`${d}/${n}`, "");
    const listed = readdirTypes(d);
    expect(listed.map((e) => e.name).sort()).toEqual([...names].sort());
    expect(listed.every((e) => e.type === "file")).toBe(true);
  });

  test("readdir errors: ENOENT, ENOTDIR", () => {
    const missing = fresh();
    expectErr(() => readdir(missing), "ENOENT", `opening ${missing}`);
    const file = fresh();
    nfs.writeFileSync(file, "");
    expectErr(() => readdirTypes(file), "ENOTDIR", `opening ${file}`);
  });

  test("joinPath is node's path.join", () => {
    const cases: string[][] = [
      ["/var/lib/cni/networks", "net"],
      ["/var/lib/cni/networks/", "net"],
      ["/a//b/", "./c/"],
      ["/a/b", "../c"],
      ["/a", "../../.."],
      ["a", "..", "..", "b"],
      ["", ""],
      ["", "x"],
      ["./", ""],
      [".", ".."],
      ["a/", "/b/", "/"],
      ["/"],
      ["x_eth0.json"],
      ["/tmp/x.d", "c1_eth0.json"],
    ];
    for (const parts of cases) expect(joinPath(...parts)).toBe(npath.join(...parts));
  });
});
