/**
 * host-local's on-disk store, byte-compatible with upstream's disk backend so that an upstream Go
 * host-local and ours can share one data dir at the same time:
 *
 *   <dataDir>/<network>/lock                  flock(LOCK_EX) around every operation
 *   <dataDir>/<network>/<ip>                  one file per reserved IP (Go's IP.String() as the name),
 *                                             created O_EXCL, content "<containerID>\r\n<ifname>"
 *   <dataDir>/<network>/last_reserved_ip.<n>  the last IP handed out from range set n
 *
 * plus our index (store-index.ts), which upstream ignores. Everything here is synchronous on purpose:
 * the flock belongs to this process, and an `await` while holding it could let a second in-process
 * operation block on the same lock forever.
 */

import { type Addr, formatAddr, parseAddr } from "../../../ipam-common/ipmath.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import {
  closeFile,
  exists,
  ftruncate,
  joinPath,
  lstat,
  mkdir,
  O_CREAT,
  O_RDONLY,
  O_TRUNC,
  O_WRONLY,
  openFile,
  pwrite,
  readFile,
  rename,
  unlink,
  write,
} from "../../../sys/fs.ts";
import { flock, LOCK_EX, LOCK_UN } from "../../../sys/libc.ts";
import {
  DEFAULT_DATA_DIR,
  errCode,
  ioError,
  LAST_RESERVED_PREFIX,
  LOCK_FILE,
  NEW_PREFIX,
  readReservation,
  reservationContent,
  splitContent,
} from "./files.ts";
import { ReservationIndex } from "./store-index.ts";

/** One reserved address: its file name and who holds it (ifname undefined: a pre-ifname file). */
export interface Reservation {
  name: string;
  ip: Addr;
  containerID: string;
  ifname: string | undefined;
  /** The file's trimmed content. */
  content: string;
}

function toReservations(entries: Map<string, string>, pred: (content: string) => boolean): Reservation[] {
  const out: Reservation[] = [];
  for (const [name, content] of entries) {
    if (!pred(content)) continue;
    const ip = parseAddr(name);
    if (ip) out.push({ name, ip, content, ...splitContent(content) });
  }
  return out;
}

/** An open, locked network directory. Obtain one with withStore. */
export class LockedStore {
  readonly dir: string;
  private readonly index: ReservationIndex;

  constructor(dir: string) {
    this.dir = dir;
    this.index = new ReservationIndex(dir);
  }

  /**
   * Creates the file for `ip`; false when it already exists (someone holds the IP). Written whole under a
   * temp name, then renamed into place (under the lock no one else can create `ip` meanwhile): a process
   * killed half-way leaves no empty reservation that no DEL could ever match (a kill -9 finding), only a
   * `.tscni-new.<ip>` temp file, which is no reservation and is reused by the next reserve of that IP.
   */
  reserve(containerID: string, ifname: string, ip: Addr, rangeID: number): boolean {
    const name = formatAddr(ip);
    const path = joinPath(this.dir, name);
    if (exists(path)) return false;
    const tmp = joinPath(this.dir, `${NEW_PREFIX}${name}`);
    const content = reservationContent(containerID, ifname);
    let fd: number;
    try {
      fd = openFile(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0o600);
    } catch (err) {
      throw ioError("reserving", path, err);
    }
    try {
      try {
        write(fd, content);
      } finally {
        closeFile(fd);
      }
      rename(tmp, path);
    } catch (err) {
      unlink(tmp, { force: true });
      throw ioError("writing", path, err);
    }
    this.index.set(name, content.trim());
    const last = joinPath(this.dir, LAST_RESERVED_PREFIX + rangeID);
    try {
      // Rewritten in place, not truncated first: with same-length addresses (the common case) ext4
      // then frees and reallocates nothing (an O_TRUNC open cost ~0.25 ms here). Same content as
      // upstream's os.WriteFile, under the same lock.
      const lastFd = openFile(last, O_WRONLY | O_CREAT, 0o600);
      try {
        const data = new TextEncoder().encode(name);
        pwrite(lastFd, data, 0);
        ftruncate(lastFd, data.byteLength);
      } finally {
        closeFile(lastFd);
      }
    } catch (err) {
      throw ioError("writing", last, err);
    }
    return true;
  }

  /** The last IP handed out from range set `rangeID`; garbage or absence → undefined (start over). */
  lastReservedIP(rangeID: number): Addr | undefined {
    const path = joinPath(this.dir, LAST_RESERVED_PREFIX + rangeID);
    let text: string;
    try {
      text = readFile(path, "utf8");
    } catch (err) {
      if (errCode(err) === "ENOENT") return undefined;
      throw ioError("reading", path, err);
    }
    return parseAddr(text.trim());
  }

  /**
   * The reservations of (containerID, ifname); when there are none, those of files written before
   * upstream recorded the ifname (content = the ID alone), like upstream's ReleaseByID fallback.
   * Each is read back from its file; a mismatch means the index missed a change: rebuild, look again.
   */
  findByID(containerID: string, ifname: string): Reservation[] {
    const id = containerID.trim();
    const exact = reservationContent(containerID, ifname).trim();
    const pick = (): Reservation[] => {
      const bucket = this.index.bucket(id);
      const found = toReservations(bucket, (c) => c === exact);
      return found.length > 0 ? found : toReservations(bucket, (c) => c === id);
    };
    const found = pick();
    if (found.every((r) => readReservation(this.dir, r.name) === r.content)) return found;
    this.index.rebuild();
    return pick();
  }

  /** Removes the files of (containerID, ifname) (see findByID); returns what was released. */
  releaseByID(containerID: string, ifname: string): Reservation[] {
    const found = this.findByID(containerID, ifname);
    for (const r of found) this.remove(r);
    return found;
  }

  /** Every reservation, read fresh from the files (for GC). */
  all(): Reservation[] {
    this.index.rebuild();
    return toReservations(this.index.all(), () => true);
  }

  /** The reserved addresses as the index knows them (for STATUS). */
  reservedAddrs(): Addr[] {
    return toReservations(this.index.all(), () => true).map((r) => r.ip);
  }

  remove(r: Pick<Reservation, "name" | "content">): void {
    const path = joinPath(this.dir, r.name);
    try {
      unlink(path);
    } catch (err) {
      if (errCode(err) !== "ENOENT") throw ioError("releasing", path, err);
    }
    this.index.delete(r.name, r.content);
  }

  /** Writes the index back; withStore calls it before unlocking. */
  flush(): void {
    this.index.flush();
  }
}

/** The network's directory under dataDir (the name is validated by the config loader). */
export function networkDir(dataDir: string, network: string): string {
  return joinPath(dataDir || DEFAULT_DATA_DIR, network);
}

/**
 * Runs `fn` with the network directory created and its lock file held (flock LOCK_EX, the same lock
 * upstream takes), then writes the index back and unlocks.
 */
export function withStore<T>(dataDir: string, network: string, fn: (store: LockedStore) => T): T {
  const dir = networkDir(dataDir, network);
  try {
    mkdir(dir, { recursive: true, mode: 0o755 });
  } catch (err) {
    throw ioError("creating", dir, err);
  }
  refuseSymlink(dir);
  return withLock(dir, () => {
    const store = new LockedStore(dir);
    const out = fn(store);
    store.flush();
    return out;
  });
}

/** A store dir that is a symlink would take our writes out of the data dir: refused, never followed. */
function refuseSymlink(dir: string): void {
  if (lstat(dir).isSymbolicLink())
    throw new CniError(
      ErrCode.IOFailure,
      `host-local: store directory ${dir} is a symlink: not following it`,
    );
}

/**
 * Whether the network has a store to release from: no directory (never made, or the data dir cannot be
 * written: read-only, full) or one that is a symlink holds nothing of ours, so DEL succeeds without it.
 */
export function storeExists(dataDir: string, network: string): boolean {
  try {
    const st = lstat(networkDir(dataDir, network));
    return st.isDirectory();
  } catch (err) {
    if (errCode(err) === "ENOENT" || errCode(err) === "ENOTDIR") return false;
    throw ioError("examining", networkDir(dataDir, network), err);
  }
}

/** Holds flock(LOCK_EX) on `<dir>/lock` while `fn` runs. */
export function withLock<T>(dir: string, fn: () => T): T {
  const path = joinPath(dir, LOCK_FILE);
  let fd: number;
  try {
    fd = openFile(path, O_RDONLY | O_CREAT, 0o600);
  } catch (err) {
    throw ioError("opening lock file", path, err);
  }
  try {
    try {
      flock(fd, LOCK_EX);
    } catch (err) {
      throw ioError("locking", path, err);
    }
    try {
      return fn();
    } finally {
      flock(fd, LOCK_UN);
    }
  } finally {
    closeFile(fd);
  }
}
