/**
 * Our index of a host-local network directory: reservation file name → content, so that DEL, CHECK and
 * the ADD duplicate check read only the container's own entries instead of every file (upstream reads
 * every file of the directory on each of those, which is what grows with a filling /16).
 *
 * Layout: `.tscni-index` holds the directory's inode and mtime as of our last write; the entries are
 * spread over BUCKETS files `.tscni-index.<k>` by a hash of the container ID, so one operation reads
 * and rewrites one small bucket. Every file is rewritten in place (never created once it exists,
 * never renamed), so keeping the index does not change the directory's mtime.
 *
 * Upstream never updates the index, so it is trusted only when the directory provably has not
 * changed since we wrote it. Proof by a mark: after our changes we set the directory's mtime to one
 * nanosecond before what it was, and record that. Any later create/unlink stamps the current time,
 * which is never earlier than the time we read — so it can never equal the mark, even within the same
 * tick of a coarse clock (where a plain "same mtime" could not tell a later change from ours).
 *   - same inode and the marked mtime → fresh, buckets are read lazily;
 *   - no mark (a file system that drops the nanoseconds): same mtime and the header written after it
 *     → fresh; same mtime, header within that same timestamp → reconcile the names against a
 *     readdir, reading only files we did not know (writing such a header waits up to one tick);
 *   - anything else (a foreign create/unlink, a missing or unreadable index) → rebuild by reading
 *     every file, once, as upstream would.
 * The store reads a reservation back before acting on it and asks for a rebuild on a mismatch (a
 * file rewritten in place does not change the directory).
 */
import {
  closeFile,
  fstat,
  ftruncate,
  joinPath,
  O_CREAT,
  O_RDONLY,
  O_WRONLY,
  openFile,
  pwrite,
  readAll,
  type Stat,
  setMtime,
  stat,
} from "../../../sys/fs.ts";
import {
  errCode,
  INDEX_FILE,
  ioError,
  listReservationNames,
  listStore,
  readReservation,
  splitContent,
} from "./files.ts";

const VERSION = 3;
/** How long flush may wait for the clock to pass the directory's mtime (a jiffy is 1–10 ms). */
const HEADER_SETTLE_MS = 30;
/** ~250 entries per bucket on a full /16: a bucket parses and rewrites in well under a millisecond. */
export const BUCKETS = 256;

const encoder = new TextEncoder();

interface Header {
  v: number;
  ino: string;
  mtime: string;
  buckets: number;
  /** `mtime` is our mark (see the file comment), not just the time we saw. */
  marked: boolean;
}

/** FNV-1a of the container ID: which bucket holds its entries. */
export function bucketOf(containerID: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < containerID.length; i++) {
    h ^= containerID.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h % BUCKETS;
}

function bucketFile(k: number): string {
  return `${INDEX_FILE}.${k}`;
}

function isHeader(v: unknown): v is Header {
  if (typeof v !== "object" || v === null) return false;
  const o = v as Record<string, unknown>;
  return (
    o.v === VERSION &&
    typeof o.ino === "string" &&
    typeof o.mtime === "string" &&
    o.buckets === BUCKETS &&
    typeof o.marked === "boolean"
  );
}

/** Reads an index file; "missing" when it does not exist, undefined when unreadable. */
function readJSON(path: string): { value: unknown; writtenAt: bigint } | "missing" | undefined {
  let fd: number;
  try {
    fd = openFile(path, O_RDONLY);
  } catch (err) {
    if (errCode(err) === "ENOENT") return "missing";
    throw ioError("opening", path, err);
  }
  try {
    const writtenAt = fstat(fd).mtimeNs;
    return { value: JSON.parse(readAll(fd, "utf8")), writtenAt };
  } catch {
    return undefined;
  } finally {
    closeFile(fd);
  }
}

/** A bucket on disk: [name, content, name, content, …] (arrays parse much faster than big objects). */
function parseBucket(v: unknown): Map<string, string> | undefined {
  if (!Array.isArray(v) || v.length % 2 !== 0) return undefined;
  const out = new Map<string, string>();
  for (let i = 0; i < v.length; i += 2) {
    const name: unknown = v[i];
    const content: unknown = v[i + 1];
    if (typeof name !== "string" || typeof content !== "string") return undefined;
    out.set(name, content);
  }
  return out;
}

export class ReservationIndex {
  private readonly dir: string;
  private readonly buckets: (Map<string, string> | undefined)[] = new Array(BUCKETS).fill(undefined);
  private readonly dirtyBuckets = new Set<number>();
  /** The directory changed (or the index was repaired): the header must be rewritten. */
  private headerDirty = false;
  private opened = false;
  private rebuilt = false;

  constructor(dir: string) {
    this.dir = dir;
  }

  /** The entries of one container ID's bucket (name → content; may hold other IDs too). */
  bucket(containerID: string): Map<string, string> {
    const k = bucketOf(containerID);
    this.bucketAt(k);
    return this.buckets[k]!;
  }

  /** Every entry (STATUS, GC). */
  all(): Map<string, string> {
    const out = new Map<string, string>();
    // A bucket that cannot be read rebuilds (and so fills) them all.
    for (let k = 0; k < BUCKETS; k++) this.bucketAt(k);
    for (const b of this.buckets) for (const [name, content] of b!) out.set(name, content);
    return out;
  }

  set(name: string, content: string): void {
    const id = splitContent(content).containerID;
    this.bucket(id).set(name, content);
    this.dirtyBuckets.add(bucketOf(id));
    this.headerDirty = true;
  }

  delete(name: string, content: string): void {
    const id = splitContent(content).containerID;
    this.bucket(id).delete(name);
    this.dirtyBuckets.add(bucketOf(id));
    this.headerDirty = true;
  }

  /** Re-reads every reservation file. */
  rebuild(): void {
    // Built aside first: a failure (a stray file) must not leave a half-empty index to be written.
    const fresh: Map<string, string>[] = Array.from({ length: BUCKETS }, () => new Map());
    const { reservations, bookkeeping } = listStore(this.dir);
    for (const name of reservations) {
      const content = readReservation(this.dir, name);
      if (content === undefined) continue;
      fresh[bucketOf(splitContent(content).containerID)]!.set(name, content);
    }
    // Written: the buckets with entries and those on disk (stale content). An empty bucket with no file
    // stays without one (a missing bucket under a fresh header is empty), so a fresh store's first ADD
    // writes two files, not BUCKETS + 1.
    const onDisk = new Set(bookkeeping);
    for (let k = 0; k < BUCKETS; k++) {
      this.buckets[k] = fresh[k];
      if (fresh[k]!.size > 0 || onDisk.has(bucketFile(k))) this.dirtyBuckets.add(k);
    }
    this.headerDirty = true;
    this.opened = true;
    this.rebuilt = true;
  }

  /** Writes what changed back, header last (it vouches for the buckets). Call before unlocking. */
  flush(): void {
    if (!this.headerDirty && this.dirtyBuckets.size === 0) return;
    const fds = new Map<string, number>();
    try {
      // Open (creating) every file first: creating changes the directory's mtime, which the header records.
      const open = (name: string) => {
        const path = joinPath(this.dir, name);
        try {
          fds.set(name, openFile(path, O_WRONLY | O_CREAT, 0o600));
        } catch (err) {
          throw ioError("opening", path, err);
        }
      };
      for (const k of this.dirtyBuckets) open(bucketFile(k));
      open(INDEX_FILE);
      let st: Stat;
      try {
        st = stat(this.dir);
      } catch (err) {
        throw ioError("inspecting", this.dir, err);
      }
      for (const k of this.dirtyBuckets) {
        const flat: string[] = [];
        for (const [name, content] of this.buckets[k]!) flat.push(name, content);
        this.writeInPlace(bucketFile(k), fds.get(bucketFile(k))!, JSON.stringify(flat));
      }
      const mark = this.markDir(st);
      const header: Header = {
        v: VERSION,
        ino: String(st.ino),
        mtime: String(mark ?? st.mtimeNs),
        buckets: BUCKETS,
        marked: mark !== undefined,
      };
      if (mark !== undefined) this.writeInPlace(INDEX_FILE, fds.get(INDEX_FILE)!, JSON.stringify(header));
      else this.writeHeader(fds.get(INDEX_FILE)!, JSON.stringify(header), st.mtimeNs);
      this.dirtyBuckets.clear();
      this.headerDirty = false;
    } finally {
      for (const fd of fds.values()) closeFile(fd);
    }
  }

  /**
   * Sets the directory's mtime to the mark (1 ns before `st`'s) and returns it; undefined when the
   * file system does not keep it exactly (coarser timestamps) or refuses.
   */
  private markDir(st: Stat): bigint | undefined {
    const mark = st.mtimeNs - 1n;
    try {
      setMtime(this.dir, mark);
      const now = stat(this.dir);
      return now.ino === st.ino && now.mtimeNs === mark ? mark : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * Without a mark: writes the header so that its own mtime ends up later than the directory's: with a coarse
   * clock both can fall in the same tick, and a reader could not tell whether a change came after
   * us within that tick. Rewriting it once the clock has moved on (≤ one tick, under the lock) spares
   * every later reader a full reconcile.
   */
  private writeHeader(fd: number, text: string, dirMtime: bigint): void {
    const deadline = Date.now() + HEADER_SETTLE_MS;
    for (;;) {
      this.writeInPlace(INDEX_FILE, fd, text);
      if (fstat(fd).mtimeNs > dirMtime || Date.now() >= deadline) return;
      Bun.sleepSync(1);
    }
  }

  private writeInPlace(name: string, fd: number, text: string): void {
    const data = encoder.encode(text);
    try {
      pwrite(fd, data, 0);
      ftruncate(fd, data.byteLength);
    } catch (err) {
      throw ioError("writing", joinPath(this.dir, name), err);
    }
  }

  /** Loads bucket k unless it is in memory; an unreadable bucket means a rebuild. */
  private bucketAt(k: number): void {
    if (this.buckets[k]) return;
    this.open();
    if (this.buckets[k]) return;
    const read = readJSON(joinPath(this.dir, bucketFile(k)));
    // The header is trusted here (open): a bucket file created since would have changed the
    // directory's mtime, so a missing one was never written — an empty bucket.
    const parsed = read === "missing" ? new Map<string, string>() : read && parseBucket(read.value);
    if (parsed) this.buckets[k] = parsed;
    else this.rebuild();
  }

  /** Decides, once per operation, whether the index on disk can be trusted (see the file comment). */
  private open(): void {
    if (this.opened) return;
    this.opened = true;
    const read = readJSON(joinPath(this.dir, INDEX_FILE));
    if (!read || read === "missing" || !isHeader(read.value)) {
      this.rebuild();
      return;
    }
    let st: Stat;
    try {
      st = stat(this.dir);
    } catch (err) {
      throw ioError("inspecting", this.dir, err);
    }
    if (read.value.ino !== String(st.ino) || read.value.mtime !== String(st.mtimeNs)) {
      this.rebuild();
    } else if (!read.value.marked && read.writtenAt <= st.mtimeNs) {
      this.reconcile();
    }
  }

  /** Same mtime, not provably fresh: keep known files, learn unknown ones, drop vanished ones. */
  private reconcile(): void {
    for (let k = 0; k < BUCKETS; k++) {
      this.bucketAt(k);
      // A bucket that could not be read triggered a full rebuild: nothing left to reconcile.
      if (this.rebuilt) return;
    }
    const present = new Set(listReservationNames(this.dir));
    const known = new Set<string>();
    for (let k = 0; k < BUCKETS; k++) {
      for (const name of [...this.buckets[k]!.keys()]) {
        if (present.has(name)) {
          known.add(name);
        } else {
          this.buckets[k]!.delete(name);
          this.dirtyBuckets.add(k);
        }
      }
    }
    for (const name of present) {
      if (known.has(name)) continue;
      const content = readReservation(this.dir, name);
      if (content === undefined) continue;
      const k = bucketOf(splitContent(content).containerID);
      this.buckets[k]!.set(name, content);
      this.dirtyBuckets.add(k);
    }
    this.headerDirty = true;
  }
}
