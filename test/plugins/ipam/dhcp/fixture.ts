/**
 * A real DHCP server for the dhcp tests: dnsmasq in a throwaway "server" netns on a bridge `br0`
 * (10.<n>.0.1/24), a temp lease file and log, stopped by `stop()` (and at the end of the run). Plus
 * our daemon (or upstream's) with a temp socket and state dir, and containers: netns whose `eth0` is a
 * veth port of br0.
 */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { addrAdd } from "../../../../src/netlink/addr.ts";
import { linkAdd, linkByName, linkSetMaster, linkSetUp } from "../../../../src/netlink/link.ts";
import { makeNetns, type TempNetns, tempDir } from "../../../helpers/netns.ts";
import { onTestRunEnd } from "../../../helpers/teardown.ts";
import { BUN, REPO } from "../../_run.ts";

const procs = new Set<Subprocess>();
onTestRunEnd(() => {
  for (const p of procs) p.kill("SIGKILL");
});

export const MAIN = join(REPO, "src/plugins/ipam/dhcp/main.ts");
export const UPSTREAM_DHCP = "/usr/lib/cni/dhcp";

export interface Server {
  ns: TempNetns;
  dir: string;
  subnet: string;
  /** 10.n.0.1 */
  gw: string;
  leaseFile: string;
  logFile: string;
  proc: Subprocess;
  /** The lease file's lines: [expiry, mac, ip, hostname, client-id]. */
  leases(): string[][];
  log(): string;
  stop(): void;
}

let subnetSeq = 100 + Math.floor(Math.random() * 100);

function randomMac(): string {
  const b = crypto.getRandomValues(new Uint8Array(5));
  return `02:${[...b].map((x) => x.toString(16).padStart(2, "0")).join(":")}`;
}

export interface ServerOptions {
  /** Lease time as dnsmasq takes it ("2m", "1h"). */
  leaseTime?: string;
  /** Extra dnsmasq arguments (--dhcp-option=…). */
  extra?: string[];
}

export async function startServer(o: ServerOptions = {}): Promise<Server> {
  const n = subnetSeq++;
  const ns = makeNetns("dhsrv");
  const dir = tempDir("tscni-dhcp-srv-");
  const gw = `10.${n}.0.1`;
  const br = linkAdd(ns.sock, { kind: "bridge", name: "br0" });
  addrAdd(ns.sock, { index: br!.index, address: `${gw}/24` });
  linkSetUp(ns.sock, br!.index);
  linkSetUp(ns.sock, "lo");
  const leaseFile = join(dir.path, "leases");
  const logFile = join(dir.path, "log");
  writeFileSync(leaseFile, "");
  const proc = Bun.spawn(
    [
      "nsenter",
      `--net=${ns.path}`,
      "dnsmasq",
      "--keep-in-foreground",
      "--conf-file=/dev/null",
      "--port=0",
      "--interface=br0",
      "--bind-interfaces",
      "--no-ping",
      "--log-dhcp",
      `--log-facility=${logFile}`,
      `--dhcp-leasefile=${leaseFile}`,
      `--pid-file=${join(dir.path, "pid")}`,
      `--dhcp-range=10.${n}.0.100,10.${n}.0.199,255.255.255.0,${o.leaseTime ?? "1h"}`,
      ...(o.extra ?? []).map((e) => e.replaceAll("$N", String(n))),
    ],
    { stdout: "ignore", stderr: "pipe" },
  );
  procs.add(proc);
  // dnsmasq writes its log line "started" once it listens.
  const deadline = Date.now() + 10_000;
  while (!(existsSync(logFile) && readFileSync(logFile, "utf8").includes("DHCP, IP range"))) {
    if (proc.exitCode !== null || Date.now() > deadline) {
      const err = await new Response(proc.stderr).text();
      ns.cleanup();
      dir.cleanup();
      throw new Error(`dnsmasq did not start (${proc.exitCode}): ${err}`);
    }
    await Bun.sleep(20);
  }
  const s: Server = {
    ns,
    dir: dir.path,
    subnet: `10.${n}.0.0/24`,
    gw,
    leaseFile,
    logFile,
    proc,
    leases: () =>
      readFileSync(leaseFile, "utf8")
        .split("\n")
        .filter((l) => l.trim() !== "")
        .map((l) => l.split(" ")),
    log: () => (existsSync(logFile) ? readFileSync(logFile, "utf8") : ""),
    stop() {
      proc.kill("SIGKILL");
      procs.delete(proc);
      ns.cleanup();
      dir.cleanup();
    },
  };
  return s;
}

/** A container netns with `eth0`, a veth whose peer is a port of the server's br0. */
export function addContainer(srv: Server, ifName = "eth0"): TempNetns & { mac: string } {
  const c = makeNetns("dhctr");
  const host = `v${Math.random().toString(36).slice(2, 10)}`;
  const mac = randomMac();
  linkAdd(srv.ns.sock, { kind: "veth", name: host, peerName: ifName, peerMac: mac, peerNetnsFd: c.ns.fd });
  const h = linkByName(srv.ns.sock, host)!;
  linkSetMaster(srv.ns.sock, h.index, linkByName(srv.ns.sock, "br0")!.index);
  linkSetUp(srv.ns.sock, h.index);
  linkSetUp(c.sock, "lo");
  return Object.assign(c, { mac });
}

export interface Daemon {
  socket: string;
  stateDir: string;
  proc: Subprocess;
  output(): string;
  /** SIGTERM and wait. */
  stop(): Promise<number>;
  kill9(): Promise<void>;
}

export async function startDaemon(
  opts: { dir?: string; upstream?: boolean; extra?: string[]; exe?: string } = {},
): Promise<Daemon> {
  const dir = opts.dir ?? tempDir("tscni-dhcpd-").path;
  mkdirSync(dir, { recursive: true });
  const socket = join(dir, "dhcp.sock");
  const stateDir = join(dir, "state");
  const cmd = opts.upstream
    ? [UPSTREAM_DHCP, "daemon", "-socketpath", socket, ...(opts.extra ?? [])]
    : [
        ...(opts.exe ? [opts.exe] : [BUN, MAIN]),
        "daemon",
        "-socketpath",
        socket,
        "-statedir",
        stateDir,
        ...(opts.extra ?? []),
      ];
  const logPath = join(dir, `daemon-${Date.now()}.log`);
  const proc = Bun.spawn(cmd, { stdout: "ignore", stderr: Bun.file(logPath) });
  procs.add(proc);
  const deadline = Date.now() + 15_000;
  while (!existsSync(socket) || !(opts.upstream || /Z listening on /.test(readLog(logPath)))) {
    if (proc.exitCode !== null || Date.now() > deadline) {
      proc.kill("SIGKILL");
      throw new Error(`dhcp daemon did not start (${proc.exitCode}): ${readLog(logPath)}`);
    }
    await Bun.sleep(20);
  }
  return {
    socket,
    stateDir,
    proc,
    output: () => readLog(logPath),
    async stop() {
      proc.kill("SIGTERM");
      const code = await proc.exited;
      procs.delete(proc);
      return code;
    },
    async kill9() {
      proc.kill("SIGKILL");
      await proc.exited;
      procs.delete(proc);
    },
  };
}

export interface DhcpBed {
  srv: Server;
  /** The running daemon: restart() replaces it. */
  d: Daemon;
  /** A container netns on the server's bridge. */
  c: TempNetns & { mac: string };
  /** The daemon's dir (socket, state). */
  dir: string;
  /** Starts the daemon again on the same dir, after the test stopped or killed it. */
  restart(): Promise<Daemon>;
}

/**
 * dnsmasq, our daemon and one container, for the length of `body`; all stopped and removed after it,
 * whether it passed or threw.
 */
export async function withDhcpBed(
  o: { server?: ServerOptions; daemon?: { extra?: string[] }; dir?: string },
  body: (b: DhcpBed) => Promise<void>,
): Promise<void> {
  const srv = await startServer(o.server);
  try {
    const dir = o.dir ?? tempDir("tscni-dhcpd-").path;
    const d = await startDaemon({ dir, extra: o.daemon?.extra });
    const b: DhcpBed = {
      srv,
      d,
      c: addContainer(srv),
      dir,
      restart: async () => {
        b.d = await startDaemon({ dir });
        return b.d;
      },
    };
    try {
      await body(b);
    } finally {
      await b.d.stop();
      b.c.cleanup();
    }
  } finally {
    srv.stop();
  }
}

function readLog(p: string): string {
  return existsSync(p) ? readFileSync(p, "utf8") : "";
}

let pathDir: string | undefined;

/** A CNI_PATH with `dhcp` (ours) for plugins that delegate to it. */
export function dhcpPath(): string {
  if (pathDir) return pathDir;
  const dir = mkdtempSync(join(tmpdir(), "tscni-dhcp-path-"));
  writeFileSync(join(dir, "dhcp"), `#!/bin/sh\nexec ${BUN} ${MAIN} "$@"\n`);
  chmodSync(join(dir, "dhcp"), 0o755);
  pathDir = dir;
  onTestRunEnd(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export interface PluginRun {
  code: number;
  stdout: string;
  stderr: string;
  // biome-ignore lint/suspicious/noExplicitAny: the plugin's JSON
  json: any;
}

/** Runs the dhcp plugin (ours or upstream's) once, with a deadline. */
export async function runDhcp(o: {
  command: string;
  containerID: string;
  netns: string;
  ifName?: string;
  config: object;
  args?: string;
  upstream?: boolean;
}): Promise<PluginRun> {
  const cmd = o.upstream ? [UPSTREAM_DHCP] : [BUN, MAIN];
  const proc = Bun.spawn(cmd, {
    env: {
      PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin",
      CNI_COMMAND: o.command,
      CNI_CONTAINERID: o.containerID,
      CNI_NETNS: o.netns,
      CNI_IFNAME: o.ifName ?? "eth0",
      CNI_ARGS: o.args ?? "",
      CNI_PATH: "/nonexistent",
    },
    stdin: new TextEncoder().encode(JSON.stringify(o.config)),
    stdout: "pipe",
    stderr: "pipe",
  });
  const timer = setTimeout(() => proc.kill("SIGKILL"), 60_000);
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  clearTimeout(timer);
  let json: unknown;
  try {
    json = stdout.trim() ? JSON.parse(stdout) : undefined;
  } catch {}
  return { code, stdout, stderr, json };
}

export function ipamConf(socket: string, ipam: object = {}, name = "dhcptest", cniVersion = "1.0.0") {
  return { cniVersion, name, type: "bridge", ipam: { type: "dhcp", daemonSocketPath: socket, ...ipam } };
}
