/**
 * Network namespaces (upstream pkg/ns): open by path, identity, run code inside one, and named
 * namespaces the way `ip netns add/del` makes them (a bind mount under /var/run/netns).
 */
import { isErrno, SysError } from "../sys/errno.ts";
import {
  closeFile,
  exists,
  fstat,
  mkdir,
  O_CREAT,
  O_EXCL,
  O_WRONLY,
  openFile,
  stat,
  unlink,
} from "../sys/fs.ts";
import {
  CLONE_NEWNET,
  close,
  MNT_DETACH,
  MS_BIND,
  mount,
  O_RDONLY,
  open,
  setns,
  umount2,
  unshare,
} from "../sys/libc.ts";
import { THREAD_NETNS_PATH, withNetnsFd } from "../sys/netns.ts";

export const NETNS_RUN_DIR = "/var/run/netns";

/** An open network namespace. Close it when done. */
export interface NetNS {
  readonly path: string;
  readonly fd: number;
  close(): void;
}

/** Identity of a namespace: nsfs device + inode, equal for every path that names it. */
export interface NsIdentity {
  dev: number;
  ino: number;
}

export class NsNotFoundError extends Error {
  constructor(readonly path: string) {
    super(`failed to open netns ${path}: no such network namespace`);
    this.name = "NsNotFoundError";
  }
}

/** Opens a netns by path (`/var/run/netns/X`, `/proc/PID/ns/net`). A missing path → NsNotFoundError. */
export function openNetns(path: string): NetNS {
  let fd: number;
  try {
    fd = open(path, O_RDONLY);
  } catch (err) {
    if (isErrno(err, "ENOENT")) throw new NsNotFoundError(path);
    throw err;
  }
  // A plain file (e.g. the mount point of a deleted netns) is not a namespace.
  if (!isNsfsFd(fd)) {
    close(fd);
    throw new NsNotFoundError(path);
  }
  let closed = false;
  return {
    path,
    fd,
    close() {
      if (!closed) close(fd);
      closed = true;
    },
  };
}

function isNsfsFd(fd: number): boolean {
  // Every namespace inode lives on the one nsfs device: compare with our own netns's device
  // (no statfs binding needed).
  try {
    return fstat(fd).dev === stat(THREAD_NETNS_PATH).dev;
  } catch {
    return false;
  }
}

export function currentNetns(): NetNS {
  return openNetns(THREAD_NETNS_PATH);
}

export function nsIdentity(ns: NetNS | string): NsIdentity {
  const st = typeof ns === "string" ? stat(ns) : fstat(ns.fd);
  return { dev: st.dev, ino: Number(st.ino) };
}

export function sameNetns(a: NetNS | string, b: NetNS | string): boolean {
  const x = nsIdentity(a);
  const y = nsIdentity(b);
  return x.dev === y.dev && x.ino === y.ino;
}

/** Runs a synchronous `fn` inside `ns`; the thread always returns to its netns, even when fn throws. */
export function withNetns<T>(ns: NetNS, fn: () => T): T {
  return withNetnsFd(ns.fd, fn);
}

/** Opens `path`, runs fn inside, closes it. */
export function withNetnsPath<T>(path: string, fn: (ns: NetNS) => T): T {
  const ns = openNetns(path);
  try {
    return withNetns(ns, () => fn(ns));
  } finally {
    ns.close();
  }
}

/** `<NETNS_RUN_DIR>/<name>` for a bare name, the path itself when it contains a slash. */
export function netnsPath(nameOrPath: string): string {
  return nameOrPath.includes("/") ? nameOrPath : `${NETNS_RUN_DIR}/${nameOrPath}`;
}

const NETNS_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$/;

/** Creates a named netns like `ip netns add NAME`; returns its path. EEXIST if it exists. */
export function createNamedNetns(name: string): string {
  if (!NETNS_NAME.test(name)) throw new Error(`invalid netns name ${JSON.stringify(name)}`);
  ensureRunDirShared();
  const path = `${NETNS_RUN_DIR}/${name}`;
  try {
    closeFile(openFile(path, O_WRONLY | O_CREAT | O_EXCL, 0o444));
  } catch (err) {
    if (isErrno(err, "EEXIST")) throw new SysError(`creating netns ${name}`, 17);
    throw err;
  }
  const original = open(THREAD_NETNS_PATH, O_RDONLY);
  try {
    unshare(CLONE_NEWNET);
    try {
      mount(THREAD_NETNS_PATH, path, "none", MS_BIND);
    } finally {
      setns(original, CLONE_NEWNET);
    }
  } catch (err) {
    try {
      unlink(path);
    } catch {}
    throw err;
  } finally {
    close(original);
  }
  return path;
}

/** Deletes a named netns like `ip netns del NAME`; a missing one is not an error. */
export function deleteNamedNetns(nameOrPath: string): void {
  const path = netnsPath(nameOrPath);
  if (!exists(path)) return;
  try {
    umount2(path, MNT_DETACH);
  } catch (err) {
    if (!isErrno(err, "EINVAL", "ENOENT")) throw err; // EINVAL: not a mount point
  }
  unlink(path, { force: true });
}

/**
 * Like `ip netns add`: make the run dir a shared mount so netns mounts propagate to other mount
 * namespaces. Making it shared fails with EINVAL when it is not a mount point yet; only then bind it
 * onto itself, once. (Never look it up in mountinfo by name: /var/run is a symlink to /run.)
 */
function ensureRunDirShared(): void {
  mkdir(NETNS_RUN_DIR, { recursive: true, mode: 0o755 });
  const MS_REC = 0x4000;
  const MS_SHARED = 1 << 20;
  try {
    mount("none", NETNS_RUN_DIR, "none", MS_SHARED | MS_REC);
    return;
  } catch (err) {
    if (!isErrno(err, "EINVAL")) return; // not fatal: the netns bind mount works without propagation
  }
  try {
    mount(NETNS_RUN_DIR, NETNS_RUN_DIR, "none", MS_BIND | MS_REC);
    mount("none", NETNS_RUN_DIR, "none", MS_SHARED | MS_REC);
  } catch {
    // as above
  }
}
