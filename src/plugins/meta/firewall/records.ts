/**
 * Which addresses an attachment was given, for the backends whose kernel state does not say (iptables'
 * per-address rules and firewalld's zone sources name no owner — they must stay exactly upstream's so
 * attachments move between the Go plugin and ours): one small JSON file per attachment,
 *
 *   <dataDir>/<network>/<hash(containerID, ifName)>   {"containerID", "ifName", "backend", "ips": [...]}
 *
 * written on ADD, read on DEL (when prevResult is missing) and GC, removed on DEL. A DEL also skips
 * addresses that another attachment's record claims (an address IPAM gave again after a lost DEL), so
 * it removes exactly its own rules.
 */
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import type { Owner } from "../../../firewall/owner.ts";
import { sha512hex } from "../../../ip/hash.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import type { Backend, FwAddr } from "./config.ts";

export interface FwRecord {
  containerID: string;
  ifName: string;
  backend: Backend;
  /** firewalld: the zone the sources went to. */
  zone?: string;
  addrs: FwAddr[];
}

function netDir(dataDir: string, network: string): string {
  return `${dataDir}/${network || "_"}`;
}

function fileOf(dataDir: string, o: Owner): string {
  return `${netDir(dataDir, o.network)}/${sha512hex(`${o.containerID}\0${o.ifName}`).slice(0, 32)}`;
}

function isENOENT(err: unknown): boolean {
  return (err as NodeJS.ErrnoException)?.code === "ENOENT";
}

function parseRecord(text: string): FwRecord | undefined {
  try {
    const r = JSON.parse(text) as FwRecord;
    if (typeof r.containerID !== "string" || typeof r.ifName !== "string" || !Array.isArray(r.addrs)) {
      return undefined;
    }
    return r;
  } catch {
    return undefined;
  }
}

export function writeRecord(dataDir: string, o: Owner, r: FwRecord): void {
  const file = fileOf(dataDir, o);
  try {
    mkdirSync(netDir(dataDir, o.network), { recursive: true, mode: 0o755 });
    writeFileSync(`${file}.tmp`, JSON.stringify(r), { mode: 0o644 });
    renameSync(`${file}.tmp`, file);
  } catch (err) {
    throw CniError.from(err, `writing firewall record ${file}`, ErrCode.IOFailure);
  }
}

export function readRecord(dataDir: string, o: Owner): FwRecord | undefined {
  const file = fileOf(dataDir, o);
  try {
    return parseRecord(readFileSync(file, "utf8"));
  } catch (err) {
    if (isENOENT(err)) return undefined;
    throw CniError.from(err, `reading firewall record ${file}`, ErrCode.IOFailure);
  }
}

export function removeRecord(dataDir: string, o: Owner): void {
  rmSync(fileOf(dataDir, o), { force: true });
}

/** Every record of `network` (all networks when undefined), with the network it is under. */
export function listRecords(dataDir: string, network?: string): { network: string; record: FwRecord }[] {
  const out: { network: string; record: FwRecord }[] = [];
  let nets: string[];
  try {
    nets = network === undefined ? readdirSync(dataDir) : [network || "_"];
  } catch (err) {
    if (isENOENT(err)) return out;
    throw CniError.from(err, `listing firewall records in ${dataDir}`, ErrCode.IOFailure);
  }
  for (const net of nets) {
    let files: string[];
    try {
      files = readdirSync(`${dataDir}/${net}`);
    } catch {
      continue;
    }
    for (const f of files) {
      if (f.endsWith(".tmp")) continue;
      try {
        const r = parseRecord(readFileSync(`${dataDir}/${net}/${f}`, "utf8"));
        if (r) out.push({ network: net === "_" ? "" : net, record: r });
      } catch {
        // Removed meanwhile.
      }
    }
  }
  return out;
}

/** Addresses that an attachment other than `o` records for `backend` (in any network). */
export function claimedByOthers(dataDir: string, o: Owner, backend: Backend): Set<string> {
  const out = new Set<string>();
  for (const { network, record } of listRecords(dataDir)) {
    if (record.backend !== backend) continue;
    if (network === o.network && record.containerID === o.containerID && record.ifName === o.ifName) continue;
    for (const a of record.addrs) out.add(a.ip);
  }
  return out;
}
