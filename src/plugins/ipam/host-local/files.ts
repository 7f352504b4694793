/**
 * The file layout of a host-local network directory, shared with upstream's disk backend
 * (plugins/ipam/host-local/backend/disk), and the low-level reads of it.
 */

import { parseAddr } from "../../../ipam-common/ipmath.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import { type DirEntry, joinPath, readdirTypes, readFile } from "../../../sys/fs.ts";

export const DEFAULT_DATA_DIR = "/var/lib/cni/networks";
/** flock'ed around every operation, by upstream and by us. */
export const LOCK_FILE = "lock";
export const LAST_RESERVED_PREFIX = "last_reserved_ip.";
/** Our index (see store-index.ts); upstream ignores it (not an IP name, content never an owner). */
export const INDEX_FILE = ".tscni-index";
/** A reservation being written (then renamed to its IP); one left by a killed process is no reservation. */
export const NEW_PREFIX = ".tscni-new.";
/** Upstream's separator between container ID and ifname in a reservation file. */
export const LINE_BREAK = "\r\n";

export function ioError(what: string, path: string, err: unknown): CniError {
  const text = err instanceof Error ? err.message : String(err);
  return new CniError(ErrCode.IOFailure, `host-local: ${what} ${path}: ${text}`);
}

export function errCode(err: unknown): string | undefined {
  return typeof err === "object" && err !== null ? (err as { code?: string }).code : undefined;
}

/** What upstream writes and compares a file against: TrimSpace(id) + "\r\n" + ifname. */
export function reservationContent(containerID: string, ifname: string): string {
  return containerID.trim() + LINE_BREAK + ifname;
}

/** Owner of a reservation from its (trimmed) content; ifname undefined for pre-ifname files (id only). */
export function splitContent(content: string): { containerID: string; ifname: string | undefined } {
  const at = content.indexOf(LINE_BREAK);
  if (at < 0) return { containerID: content, ifname: undefined };
  return { containerID: content.slice(0, at), ifname: content.slice(at + LINE_BREAK.length) };
}

/** Files of the directory that are not reservations. */
function isBookkeeping(name: string): boolean {
  return (
    name === LOCK_FILE ||
    name === INDEX_FILE ||
    name.startsWith(`${INDEX_FILE}.`) ||
    name.startsWith(NEW_PREFIX) ||
    name.startsWith(LAST_RESERVED_PREFIX)
  );
}

/** A reservation file's trimmed content (what upstream compares); undefined when it is gone. */
export function readReservation(dir: string, name: string): string | undefined {
  const path = joinPath(dir, name);
  try {
    return readFile(path, "utf8").trim();
  } catch (err) {
    if (errCode(err) === "ENOENT") return undefined;
    throw ioError("reading", path, err);
  }
}

/** One listing of a store directory: its reservation files and its bookkeeping files (lock, index…). */
export interface StoreListing {
  reservations: string[];
  bookkeeping: string[];
}

/** Lists the directory once; a file that is neither bookkeeping nor an IP is an error. */
export function listStore(dir: string): StoreListing {
  let dirents: DirEntry[];
  try {
    dirents = readdirTypes(dir);
  } catch (err) {
    throw ioError("listing", dir, err);
  }
  const names: string[] = [];
  const bookkeeping: string[] = [];
  for (const d of dirents) {
    if (d.type !== "file") continue;
    if (isBookkeeping(d.name)) {
      bookkeeping.push(d.name);
      continue;
    }
    if (!parseAddr(d.name)) {
      throw new CniError(
        ErrCode.IOFailure,
        `host-local: store file ${joinPath(dir, d.name)} is not named by an IP address; remove it or move it away`,
      );
    }
    names.push(d.name);
  }
  return { reservations: names, bookkeeping };
}

/** The reservation file names of the directory (see listStore). */
export function listReservationNames(dir: string): string[] {
  return listStore(dir).reservations;
}
