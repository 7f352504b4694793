/**
 * The daemon's lease store (beyond upstream, which keeps leases in memory only): one JSON file per
 * attachment in the state dir, written atomically (temp file, fsync, rename),
 * so a daemon that was killed or restarted finds every lease again, renews it, and still RELEASEs it
 * on DEL.
 */
import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import type { Bound } from "./client.ts";
import { decodeMessage, encodeMessage } from "./message.ts";

export const DEFAULT_STATE_DIR = "/var/lib/cni/dhcp";
const SUFFIX = ".json";

export interface LeaseRecord {
  clientID: string;
  containerID: string;
  netName: string;
  ifName: string;
  /** netns path as the daemon opens it (host prefix applied). */
  netns: string;
  /** Options every request carries, [code, base64]. */
  options: [number, Uint8Array][];
  broadcast: boolean;
  lease: Bound;
}

interface LeaseFile {
  version: 1;
  clientID: string;
  containerID: string;
  netName: string;
  ifName: string;
  netns: string;
  options: [number, string][];
  broadcast: boolean;
  ip: string;
  serverId: string;
  serverMac: string;
  mac: string;
  /** The DHCPACK as received, base64. */
  ack: string;
  boundAt: string;
  renewAt: string;
  rebindAt: string;
  expireAt: string;
}

const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");
const unb64 = (s: string) => new Uint8Array(Buffer.from(s, "base64"));
const iso = (ms: number) => new Date(ms).toISOString();
function ms(s: string, what: string): number {
  const t = Date.parse(s);
  if (Number.isNaN(t)) throw new Error(`${what} is not a time: ${s}`);
  return t;
}

/** A file name for a client ID: readable where it can be, hashed to stay short and safe. */
export function fileNameFor(clientID: string): string {
  const h = new Bun.CryptoHasher("sha256").update(clientID).digest("hex").slice(0, 16);
  const readable = clientID.replace(/[^A-Za-z0-9_.-]/g, "_").slice(0, 64);
  return `${readable}-${h}${SUFFIX}`;
}

export class LeaseStore {
  constructor(readonly dir: string) {}

  init(): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  save(r: LeaseRecord): void {
    const f: LeaseFile = {
      version: 1,
      clientID: r.clientID,
      containerID: r.containerID,
      netName: r.netName,
      ifName: r.ifName,
      netns: r.netns,
      options: r.options.map(([c, v]) => [c, b64(v)]),
      broadcast: r.broadcast,
      ip: r.lease.ip,
      serverId: r.lease.serverId,
      serverMac: r.lease.serverMac,
      mac: r.lease.mac,
      ack: b64(encodeMessage(r.lease.ack)),
      boundAt: iso(r.lease.boundAt),
      renewAt: iso(r.lease.renewAt),
      rebindAt: iso(r.lease.rebindAt),
      expireAt: iso(r.lease.expireAt),
    };
    const path = join(this.dir, fileNameFor(r.clientID));
    const tmp = `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
    const fd = openSync(tmp, "w", 0o600);
    try {
      writeSync(fd, `${JSON.stringify(f, null, 2)}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    try {
      renameSync(tmp, path);
    } catch (err) {
      try {
        unlinkSync(tmp);
      } catch {}
      throw err;
    }
  }

  remove(clientID: string): void {
    try {
      unlinkSync(join(this.dir, fileNameFor(clientID)));
    } catch (err) {
      if ((err as { code?: string }).code !== "ENOENT") throw err;
    }
  }

  /** Every lease on disk; unreadable files are reported to `onBad` and skipped. */
  loadAll(onBad: (file: string, err: unknown) => void): LeaseRecord[] {
    const out: LeaseRecord[] = [];
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch (err) {
      if ((err as { code?: string }).code === "ENOENT") return out;
      throw err;
    }
    for (const name of names) {
      if (name.includes(".tmp-")) {
        try {
          unlinkSync(join(this.dir, name)); // a write that never reached its rename
        } catch {}
        continue;
      }
      if (!name.endsWith(SUFFIX)) continue;
      try {
        out.push(parseFile(readFileSync(join(this.dir, name), "utf8")));
      } catch (err) {
        onBad(name, err);
      }
    }
    return out;
  }
}

function parseFile(text: string): LeaseRecord {
  const f = JSON.parse(text) as LeaseFile;
  if (f.version !== 1) throw new Error(`unknown version ${f.version}`);
  for (const k of [
    "clientID",
    "containerID",
    "netName",
    "ifName",
    "netns",
    "ip",
    "serverId",
    "serverMac",
    "mac",
    "ack",
  ] as const) {
    if (typeof f[k] !== "string") throw new Error(`${k} missing`);
  }
  return {
    clientID: f.clientID,
    containerID: f.containerID,
    netName: f.netName,
    ifName: f.ifName,
    netns: f.netns,
    options: f.options.map(([c, v]) => [c, unb64(v)]),
    broadcast: f.broadcast === true,
    lease: {
      ack: decodeMessage(unb64(f.ack)),
      ip: f.ip,
      serverId: f.serverId,
      serverMac: f.serverMac,
      mac: f.mac,
      boundAt: ms(f.boundAt, "boundAt"),
      renewAt: ms(f.renewAt, "renewAt"),
      rebindAt: ms(f.rebindAt, "rebindAt"),
      expireAt: ms(f.expireAt, "expireAt"),
    },
  };
}
