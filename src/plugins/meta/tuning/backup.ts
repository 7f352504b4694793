/**
 * The originals tuning restores on DEL, one file per attachment: `<dataDir>/<containerID>_<ifName>.json`
 * with upstream's configToRestore shape (only the attributes the config changes):
 *
 *   { "mac": "aa:…", "promisc": false, "mtu": 1500, "allmulti": false, "txQLen": 1000 }
 *
 * written like Go's json.MarshalIndent(v, "", " "), so upstream's tuning can restore from our files and
 * we from its. We add one key upstream ignores, "network": the network name, because the data dir is
 * shared by every network and GC (which upstream lacks) must only remove its own network's files.
 */
import { CniError, ErrCode } from "../../../spec/errors.ts";
import { isObject } from "../../../spec/json.ts";
import { joinPath, mkdir, readdir, readFile, rename, unlink, writeFile } from "../../../sys/fs.ts";

export interface Backup {
  mac?: string;
  promisc?: boolean;
  mtu?: number;
  allmulti?: boolean;
  txQLen?: number;
  /** Ours: the network whose ADD wrote the file (absent in upstream's files). */
  network?: string;
}

export function backupPath(dataDir: string, containerID: string, ifName: string): string {
  return joinPath(dataDir, `${containerID}_${ifName}.json`);
}

/** Go's MarshalIndent with a one-space indent, keys in struct order, empty fields omitted. */
export function formatBackup(b: Backup): string {
  const ordered: Record<string, unknown> = {};
  if (b.mac) ordered["mac"] = b.mac;
  if (b.promisc !== undefined) ordered["promisc"] = b.promisc;
  if (b.mtu) ordered["mtu"] = b.mtu;
  if (b.allmulti !== undefined) ordered["allmulti"] = b.allmulti;
  if (b.txQLen !== undefined) ordered["txQLen"] = b.txQLen;
  if (b.network) ordered["network"] = b.network;
  return JSON.stringify(ordered, null, 1);
}

/** Parses a backup file's text; unknown or mistyped keys are dropped (upstream ignores a bad file). */
export function parseBackup(text: string): Backup | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!isObject(v)) return undefined;
  const b: Backup = {};
  if (typeof v["mac"] === "string" && v["mac"] !== "") b.mac = v["mac"];
  if (typeof v["promisc"] === "boolean") b.promisc = v["promisc"];
  if (typeof v["mtu"] === "number" && v["mtu"] > 0) b.mtu = v["mtu"];
  if (typeof v["allmulti"] === "boolean") b.allmulti = v["allmulti"];
  if (typeof v["txQLen"] === "number" && v["txQLen"] >= 0) b.txQLen = v["txQLen"];
  if (typeof v["network"] === "string") b.network = v["network"];
  return b;
}

/** The temp file writeBackup renames into place: what an ADD killed between write and rename leaves. */
function tempPath(path: string): string {
  return `${path}.tmp`;
}

/** Writes the file atomically (temp file + rename), creating the data dir. */
export function writeBackup(path: string, dataDir: string, b: Backup): void {
  const tmp = tempPath(path);
  try {
    mkdir(dataDir, { recursive: true, mode: 0o700 });
    writeFile(tmp, formatBackup(b), { mode: 0o600 });
    rename(tmp, path);
  } catch (err) {
    unlink(tmp, { force: true });
    throw CniError.from(err, `saving tuning backup ${path}`, ErrCode.IOFailure);
  }
}

/** The backup, or undefined when there is none; an unreadable file is an I/O error (code 5). */
export function readBackup(path: string): Backup | undefined {
  let text: string;
  try {
    text = readFile(path, "utf8");
  } catch (err) {
    if ((err as { code?: string }).code === "ENOENT") return undefined;
    throw CniError.from(err, `reading tuning backup ${path}`, ErrCode.IOFailure);
  }
  // Upstream treats a file it cannot decode as nothing to restore.
  return parseBackup(text) ?? {};
}

/** Removes the backup and the temp file of a write that was killed before its rename. */
export function removeBackup(path: string): void {
  try {
    unlink(path, { force: true });
    unlink(tempPath(path), { force: true });
  } catch (err) {
    throw CniError.from(err, `removing tuning backup ${path}`, ErrCode.IOFailure);
  }
}

/** Every backup file name in the data dir with its network tag (missing dir → none). */
export function listBackups(dataDir: string): { file: string; network?: string }[] {
  let names: string[];
  try {
    names = readdir(dataDir);
  } catch (err) {
    if ((err as { code?: string }).code === "ENOENT") return [];
    throw CniError.from(err, `listing tuning backups in ${dataDir}`, ErrCode.IOFailure);
  }
  return names
    .filter((n) => n.endsWith(".json"))
    .map((file) => {
      const b = readBackup(joinPath(dataDir, file));
      return b?.network === undefined ? { file } : { file, network: b.network };
    });
}
