/**
 * `dhcp daemon`: the long-running half of the dhcp IPAM plugin (upstream's daemon.go). It listens on
 * a Unix socket for the plugin's requests and keeps one DHCP client per attachment (containerID,
 * network, ifname) running inside the container's netns until DEL.
 *
 * Flags as upstream (Go flag syntax: -name value, -name=value, --name): -socketpath, -pidfile,
 * -hostprefix, -broadcast, -timeout, -resendmax, -resendtimeout; ours: -statedir. Leases live in the
 * state dir, so SIGTERM (or kill -9) loses nothing: the next daemon renews them and DEL releases them.
 */
import { existsSync, mkdirSync, unlinkSync, writeFileSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { dirname, isAbsolute } from "node:path";
import { addrList } from "../../../netlink/addr.ts";
import { linkByName } from "../../../netlink/link.ts";
import { NetlinkSocket } from "../../../netlink/socket.ts";
import { openNetns } from "../../../ns/index.ts";
import { parseValidAttachments } from "../../../spec/conf.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import { parseJSONObject } from "../../../spec/json.ts";
import { unixSocketAlive } from "../../../sys/packet.ts";
import { type Attachment, acquire, type ClientTiming } from "./client.ts";
import { clientIDFor, DEFAULT_SOCKET_PATH, loadDhcpConf, prepareOptions, resultFromAck } from "./config.ts";
import { LeaseKeeper } from "./keeper.ts";
import type { Answer, Request } from "./rpc.ts";
import { DEFAULT_STATE_DIR, LeaseStore } from "./store.ts";
import { LinkGoneError } from "./transport.ts";

export interface DaemonOptions {
  socketPath: string;
  pidfile: string;
  hostPrefix: string;
  broadcast: boolean;
  stateDir: string;
  timing: ClientTiming;
  resendTimeoutMs: number;
  /** Ours: RFC 5227 ARP probe after each ACK, this long; 0 (the default) probes nothing, like upstream. */
  arpCheckMs: number;
}

const USAGE = `Usage of daemon:
  -arpcheck duration  probe each leased address with ARP this long and DHCPDECLINE it when in use (default 0: no probe)
  -broadcast          broadcast DHCP leases
  -hostprefix string  optional prefix to host root
  -pidfile string     optional path to write daemon PID to
  -resendmax duration optional dhcp client max resend delay between requests (default 1m2s)
  -resendtimeout duration  optional dhcp client resend timeout, no more retries after this timeout (default 3m28s)
  -socketpath string  optional dhcp server socketpath (default ${DEFAULT_SOCKET_PATH})
  -statedir string    where leases are kept across daemon restarts (default ${DEFAULT_STATE_DIR})
  -timeout duration   optional dhcp client timeout duration for each request (default 10s)
`;

export class UsageError extends Error {}

const VALUE_FLAGS = new Set([
  "socketpath",
  "pidfile",
  "hostprefix",
  "statedir",
  "timeout",
  "resendmax",
  "resendtimeout",
  "arpcheck",
]);

const UNITS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/** Go's time.ParseDuration, in milliseconds ("10s", "1m30s", "500ms", "0"). */
export function parseGoDuration(s: string): number {
  if (s === "0") return 0;
  const re = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/gy;
  let total = 0;
  let at = 0;
  for (let m = re.exec(s); m; m = re.exec(s)) {
    total += Number(m[1]) * UNITS[m[2]!]!;
    at = re.lastIndex;
  }
  if (at !== s.length || s.length === 0) throw new UsageError(`invalid duration ${JSON.stringify(s)}`);
  return total;
}

export function parseDaemonFlags(argv: string[]): DaemonOptions {
  const o: DaemonOptions = {
    socketPath: "",
    pidfile: "",
    hostPrefix: "",
    broadcast: false,
    stateDir: DEFAULT_STATE_DIR,
    timing: { timeoutMs: 10_000, resendMaxMs: 62_000 },
    resendTimeoutMs: 208_000,
    arpCheckMs: 0,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") break;
    const m = /^--?([a-z]+)(?:=(.*))?$/.exec(a);
    if (!m) break; // Go's flag stops at the first non-flag
    const name = m[1]!;
    if (name === "h" || name === "help") throw new UsageError(USAGE);
    if (name === "broadcast") {
      o.broadcast = m[2] === undefined ? true : parseBool(m[2]);
      continue;
    }
    if (!VALUE_FLAGS.has(name)) throw new UsageError(`flag provided but not defined: -${name}\n${USAGE}`);
    const value = m[2] ?? argv[++i];
    if (value === undefined) throw new UsageError(`flag needs an argument: -${name}\n${USAGE}`);
    switch (name) {
      case "socketpath":
        o.socketPath = value;
        break;
      case "pidfile":
        o.pidfile = value;
        break;
      case "hostprefix":
        o.hostPrefix = value;
        break;
      case "statedir":
        o.stateDir = value;
        break;
      case "timeout":
        o.timing.timeoutMs = parseGoDuration(value);
        break;
      case "resendmax":
        o.timing.resendMaxMs = parseGoDuration(value);
        break;
      case "resendtimeout":
        o.resendTimeoutMs = parseGoDuration(value);
        break;
      case "arpcheck":
        o.arpCheckMs = parseGoDuration(value);
        break;
      default:
        throw new UsageError(`flag provided but not defined: -${name}\n${USAGE}`);
    }
  }
  if (o.socketPath === "") o.socketPath = DEFAULT_SOCKET_PATH;
  return o;
}

function parseBool(v: string): boolean {
  if (/^(1|t|true|TRUE|True)$/.test(v)) return true;
  if (/^(0|f|false|FALSE|False)$/.test(v)) return false;
  throw new UsageError(`invalid boolean value ${JSON.stringify(v)} for -broadcast`);
}

function log(msg: string): void {
  process.stderr.write(`${new Date().toISOString()} ${msg}\n`);
}

function errorAnswer(err: unknown): Answer {
  if (err instanceof CniError)
    return { ok: false, code: Number(err.code), msg: err.msg, details: err.details || undefined };
  return { ok: false, code: ErrCode.Internal, msg: err instanceof Error ? err.message : String(err) };
}

/** The daemon's attachments and what it does for each request. */
export class Dhcp {
  readonly keepers = new Map<string, LeaseKeeper>();
  /** Per client ID: the tail of the operations queued on it (one at a time per attachment). */
  private readonly queues = new Map<string, Promise<unknown>>();
  readonly store: LeaseStore;

  constructor(readonly opts: DaemonOptions) {
    this.store = new LeaseStore(opts.stateDir);
  }

  private ctx() {
    return {
      store: this.store,
      timing: this.opts.timing,
      resendTimeoutMs: this.opts.resendTimeoutMs,
      arpCheckMs: this.opts.arpCheckMs,
      log,
    };
  }

  /** Loads the leases a previous daemon left and resumes their upkeep. */
  resume(): void {
    this.store.init();
    for (const r of this.store.loadAll((f, e) =>
      log(`lease file ${f} unreadable, ignored: ${(e as Error).message}`),
    )) {
      const k = new LeaseKeeper(r, this.ctx());
      this.keepers.set(r.clientID, k);
      log(
        `${r.clientID}: resuming lease ${r.lease.ip}, expiration is ${new Date(r.lease.expireAt).toISOString()}`,
      );
      k.start();
    }
  }

  private serial<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.queues.get(id) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => {});
    this.queues.set(id, tail);
    tail.then(() => {
      if (this.queues.get(id) === tail) this.queues.delete(id);
    });
    return run;
  }

  async handle(req: Request): Promise<Answer> {
    try {
      switch (req.method) {
        case "status":
          return { ok: true };
        case "gc":
          await this.gc(req);
          return { ok: true };
        case "add":
          return { ok: true, result: await this.add(req) };
        case "del":
          await this.del(req);
          return { ok: true };
        case "check":
          await this.check(req);
          return { ok: true };
        default:
          throw new CniError(ErrCode.Internal, `dhcp daemon: unknown method ${JSON.stringify(req.method)}`);
      }
    } catch (err) {
      return errorAnswer(err);
    }
  }

  private netnsOf(req: Request): string {
    if (!isAbsolute(req.netns)) {
      throw new CniError(
        ErrCode.InvalidEnvironmentVariables,
        `dhcp daemon: netns ${req.netns} is not an absolute path`,
      );
    }
    return this.opts.hostPrefix + req.netns;
  }

  private add(req: Request) {
    const conf = loadDhcpConf(req.stdin);
    const options = prepareOptions(conf, req.args);
    const id = clientIDFor(req.containerID, conf.name, req.ifName);
    const netns = this.netnsOf(req);
    return this.serial(id, async () => {
      const have = this.keepers.get(id);
      if (have && have.record.netns === netns && have.held && have.state !== "gone") {
        return resultFromAck(have.lease.ack, conf.priority);
      }
      if (have) {
        await have.stop(true);
        this.keepers.delete(id);
      }
      const a: Attachment = {
        clientID: id,
        netns,
        ifName: req.ifName,
        options,
        broadcast: this.opts.broadcast,
        arpCheckMs: this.opts.arpCheckMs,
      };
      log(`${id}: acquiring lease`);
      const t0 = performance.now();
      let lease: Awaited<ReturnType<typeof acquire>>;
      try {
        lease = await acquire(
          a,
          this.opts.timing,
          Date.now() + this.opts.resendTimeoutMs,
          undefined,
          undefined,
          (ip, owner) => log(`${id}: ${ip} is in use by ${owner}: declined`),
        );
      } catch (err) {
        if (err instanceof LinkGoneError) throw new CniError(ErrCode.Internal, `dhcp: ${err.message}`);
        throw new CniError(ErrCode.Internal, `dhcp: ${(err as Error).message}`);
      }
      const result = resultFromAck(lease.ack, conf.priority); // no mask: fails before anything is kept
      const record = {
        clientID: id,
        containerID: req.containerID,
        netName: conf.name,
        ifName: req.ifName,
        netns,
        options,
        broadcast: this.opts.broadcast,
        lease,
      };
      const k = new LeaseKeeper(record, this.ctx());
      try {
        this.store.save(record);
      } catch (err) {
        // Not kept, so not held: give the address back rather than leak it.
        await k.stop(true);
        throw new CniError(
          ErrCode.IOFailure,
          `dhcp: saving the lease in ${this.opts.stateDir}: ${(err as Error).message}`,
        );
      }
      this.keepers.set(id, k);
      k.start();
      const took = (performance.now() - t0).toFixed(1);
      log(
        `${id}: lease ${lease.ip} acquired in ${took} ms, expiration is ${new Date(lease.expireAt).toISOString()}`,
      );
      return result;
    });
  }

  private del(req: Request): Promise<void> {
    const conf = loadDhcpConf(req.stdin);
    const id = clientIDFor(req.containerID, conf.name, req.ifName);
    return this.serial(id, async () => {
      const k = this.keepers.get(id);
      if (!k) return;
      this.keepers.delete(id);
      await k.stop(true);
    });
  }

  private check(req: Request): Promise<void> {
    const conf = loadDhcpConf(req.stdin);
    const id = clientIDFor(req.containerID, conf.name, req.ifName);
    return this.serial(id, async () => {
      const k = this.keepers.get(id);
      if (!k) throw new CniError(ErrCode.UnknownContainer, `dhcp: no lease for ${id}`);
      if (!k.held) throw new CniError(ErrCode.Internal, `dhcp: the lease ${k.lease.ip} of ${id} has expired`);
      const prefix = resultFromAck(k.lease.ack, 0).ips![0]!.address;
      const ns = openNetns(this.netnsOf(req));
      try {
        const sock = NetlinkSocket.open({ netnsFd: ns.fd });
        try {
          const link = linkByName(sock, req.ifName);
          if (!link) throw new CniError(ErrCode.Internal, `dhcp: interface ${req.ifName} not found`);
          const addrs = addrList(sock, { index: link.index, version: 4 }).map((a) => a.address);
          if (!addrs.includes(prefix)) {
            throw new CniError(ErrCode.Internal, `dhcp: lease address ${prefix} is not on ${req.ifName}`);
          }
        } finally {
          sock.close();
        }
      } finally {
        ns.close();
      }
    });
  }

  /** Releases the leases of this network whose attachment the runtime no longer lists. */
  private async gc(req: Request): Promise<void> {
    const conf = loadDhcpConf(req.stdin);
    const valid = parseValidAttachments(parseJSONObject(req.stdin, "network configuration"));
    if (!valid)
      throw new CniError(ErrCode.InvalidNetworkConfig, "GC: config is missing cni.dev/valid-attachments");
    const keep = new Set(valid.map((a) => clientIDFor(a.containerID, conf.name, a.ifname)));
    const stale = [...this.keepers.values()].filter(
      (k) => k.record.netName === conf.name && !keep.has(k.record.clientID),
    );
    await Promise.all(
      stale.map((k) =>
        this.serial(k.record.clientID, async () => {
          if (this.keepers.get(k.record.clientID) !== k) return;
          this.keepers.delete(k.record.clientID);
          log(`${k.record.clientID}: not a valid attachment (GC)`);
          await k.stop(true);
        }),
      ),
    );
  }

  /** Shutdown: stop every upkeep, release nothing (the leases stay on disk). */
  async shutdown(): Promise<void> {
    await Promise.all([...this.keepers.values()].map((k) => k.stop(false)));
  }
}

/** A request line: every field a string, the method one we know (anything else is "bad request"). */
function parseRequest(line: string): Request {
  const r = JSON.parse(line) as Record<string, unknown>;
  const fields = ["method", "containerID", "netns", "ifName", "args", "stdin"] as const;
  if (typeof r !== "object" || r === null || fields.some((f) => typeof r[f] !== "string"))
    throw new Error("bad request");
  if (!["add", "del", "check", "gc", "status"].includes(r.method as string)) throw new Error("bad request");
  return r as unknown as Request;
}

function serveConnection(d: Dhcp, sock: Socket): void {
  let buf = "";
  let answered = false;
  sock.setEncoding("utf8");
  sock.on("data", (chunk: string) => {
    if (answered) return;
    buf += chunk;
    const nl = buf.indexOf("\n");
    if (nl < 0) {
      if (buf.length > 1 << 20) sock.destroy();
      return;
    }
    answered = true;
    let req: Request;
    try {
      req = parseRequest(buf.slice(0, nl));
    } catch {
      sock.end(
        `${JSON.stringify(errorAnswer(new CniError(ErrCode.DecodingFailure, "dhcp daemon: bad request")))}\n`,
      );
      return;
    }
    d.handle(req).then((a) => sock.end(`${JSON.stringify(a)}\n`));
  });
  sock.on("error", () => {});
}

function listenFd(): number | undefined {
  // systemd socket activation (cni-dhcp.socket): LISTEN_FDS=1 for us → fd 3.
  if (process.env.LISTEN_PID !== String(process.pid) || process.env.LISTEN_FDS !== "1") return undefined;
  return 3;
}

export async function runDaemon(argv: string[]): Promise<number> {
  let o: DaemonOptions;
  try {
    o = parseDaemonFlags(argv);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    return 2;
  }
  const socketPath = o.hostPrefix + o.socketPath;
  const fd = listenFd();
  if (o.pidfile) {
    if (!isAbsolute(o.pidfile)) {
      log(`Error writing pidfile ${JSON.stringify(o.pidfile)}: path not absolute`);
      return 1;
    }
  }
  if (fd === undefined) {
    try {
      if (existsSync(socketPath)) {
        if (unixSocketAlive(socketPath)) {
          log(`another dhcp daemon is listening on ${socketPath}; not starting`);
          return 1;
        }
        unlinkSync(socketPath); // a stale socket of a daemon that died
      }
      mkdirSync(dirname(socketPath), { recursive: true, mode: 0o700 });
    } catch (err) {
      log(`Error getting listener: preparing ${socketPath}: ${(err as Error).message}`);
      return 1;
    }
  }
  const d = new Dhcp(o);
  try {
    d.resume();
  } catch (err) {
    log(`reading the state dir ${o.stateDir}: ${(err as Error).message}`);
    return 1;
  }
  const server: Server = createServer((s) => serveConnection(d, s));
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      if (fd !== undefined) server.listen({ fd }, resolve);
      else server.listen(socketPath, resolve);
    });
  } catch (err) {
    log(`Error getting listener: ${(err as Error).message}`);
    await d.shutdown();
    return 1;
  }
  if (o.pidfile) writeFileSync(o.pidfile, String(process.pid), { mode: 0o644 });
  const where = fd === undefined ? socketPath : `fd ${fd} (socket activation)`;
  log(`listening on ${where}, leases in ${o.stateDir}`);
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once("SIGTERM", stop);
    process.once("SIGINT", stop);
  });
  log("shutting down; leases are kept in the state dir");
  server.close();
  await d.shutdown();
  for (const p of [fd === undefined ? socketPath : "", o.pidfile]) {
    if (!p) continue;
    try {
      unlinkSync(p);
    } catch {}
  }
  return 0;
}
