/**
 * The kubelet chain (bridge + host-local → portmap → bandwidth → tuning) run through our libcni with every
 * plugin its own process of the compiled executable, in a throwaway host netns, for the kill and load
 * suites. host-local in CNI_PATH is a hard link of the executable (not a symlink), so bridge does not take
 * the in-process fast path and really execs its IPAM (the execve a kill can hit).
 *
 *   chainBin() → dir             CNI_PATH with the plugin links (built once per process)
 *   netExec(hostPath, wrap?)     a libcni Exec that runs each plugin under `nsenter --net=<host>`, with
 *                                `wrap(pluginType)` → extra argv put before the plugin (strace)
 *   chainList(dirs, plugins?)    the conflist (all four plugins, or only bridge)
 *   hostLeftovers(host, pristine)  what the host netns holds beyond `pristine` besides the shared
 *                                infrastructure (the bridge without ports, its address and routes, the
 *                                fixed nft tables with empty maps): [] when nothing of an attachment is left
 */
import { spawn } from "node:child_process";
import { linkSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { type Exec, failedPluginError, findInPath } from "../../src/libcni/exec.ts";
import type { NetConfList } from "../../src/spec/types.ts";
import { type NetnsState, netnsState, nftSplit, nftStructure } from "../e2e/chain-state.ts";
import { buildTscni, REPO } from "../helpers/build.ts";
import { onTestRunEnd } from "../helpers/teardown.ts";

export const NET = "faultnet";
export const BRIDGE = "cnf0";
export const SHARED_TABLES = ["inet tscni_masquerade", "inet tscni_hostport"];
export const CAP_ARGS = {
  portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }],
  bandwidth: {
    ingressRate: 20_000_000,
    ingressBurst: 2_000_000,
    egressRate: 80_000_000,
    egressBurst: 8_000_000,
  },
};

const bins = new Map<string, string>();

/**
 * The warm path (README "Speed"): native/warm-launcher.c compiled beside the executable, a CNI_PATH whose
 * bridge and host-local are the launcher, and `tscni warm serve` on a temp socket; `env` is what the
 * launcher needs (TSCNI_WARM_SOCK, TSCNI_WARM_FALLBACK). stop() kills the helper.
 */
export async function warmPath(): Promise<{ bin: string; env: Record<string, string>; stop(): void }> {
  const exe = buildTscni();
  const launcher = join(dirname(exe), "tscni-launcher");
  const cc = Bun.spawnSync(["cc", "-O2", "-static", "-o", launcher, join(REPO, "native/warm-launcher.c")], {
    stderr: "pipe",
  });
  if (cc.exitCode !== 0) throw new Error(`building the warm launcher failed: ${cc.stderr}`);
  const dir = mkdtempSync(join(tmpdir(), "tscni-fault-warm-"));
  onTestRunEnd(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, "bin"));
  for (const p of ["bridge", "host-local"]) symlinkSync(launcher, join(dir, "bin", p));
  const sock = join(dir, "warm.sock");
  const helper = spawn(exe, ["warm", "serve", "--socket", sock], { stdio: ["ignore", "ignore", "pipe"] });
  const stop = () => helper.kill("SIGKILL");
  onTestRunEnd(stop);
  await new Promise<void>((resolve, reject) => {
    helper.stderr.once("data", () => resolve());
    helper.once("exit", (c) => reject(new Error(`tscni warm serve exited ${c}`)));
  });
  return { bin: join(dir, "bin"), env: { TSCNI_WARM_SOCK: sock, TSCNI_WARM_FALLBACK: exe }, stop };
}

/**
 * CNI_PATH with bridge, portmap, bandwidth, tuning and dhcp as symlinks to the executable (as `tscni install`
 * lays them). "exec-ipam": host-local is a hard link (another path to the same inode), so bridge execs it
 * instead of running it in-process; "installed": a symlink like the rest.
 */
export function chainBin(layout: "exec-ipam" | "installed" = "exec-ipam"): string {
  const known = bins.get(layout);
  if (known) return known;
  const exe = buildTscni();
  const dir = mkdtempSync(join(tmpdir(), "tscni-fault-bin-"));
  onTestRunEnd(() => rmSync(dir, { recursive: true, force: true }));
  for (const p of ["bridge", "portmap", "bandwidth", "tuning", "dhcp"]) symlinkSync(exe, join(dir, p));
  if (layout === "exec-ipam") linkSync(exe, join(dir, "host-local"));
  else symlinkSync(exe, join(dir, "host-local"));
  bins.set(layout, dir);
  return dir;
}

/** What one plugin process did: how it ended (for the kill suite's bookkeeping). */
export interface ExecRecord {
  type: string;
  status: number | null;
  signal: string | null;
}

export function netExec(
  hostPath: string,
  wrap: (type: string) => string[] = () => [],
  log?: ExecRecord[],
  extraEnv: Record<string, string> = {},
): Exec {
  return {
    findInPath,
    execPlugin(pluginPath, stdin, env) {
      const type = basename(pluginPath);
      const argv = ["nsenter", `--net=${hostPath}`, ...wrap(type), pluginPath];
      return new Promise((resolve, reject) => {
        const child = spawn(argv[0] ?? "nsenter", argv.slice(1), {
          env: { ...process.env, ...extraEnv, ...env },
          stdio: ["pipe", "pipe", "pipe"],
        });
        const out: Buffer[] = [];
        const err: Buffer[] = [];
        child.stdout.on("data", (c: Buffer) => out.push(c));
        child.stderr.on("data", (c: Buffer) => err.push(c));
        child.stdin.on("error", () => {});
        child.on("error", reject);
        child.on("close", (status, signal) => {
          log?.push({ type, status, signal });
          const o = { status, signal, stdout: Buffer.concat(out), stderr: Buffer.concat(err) };
          if (status === 0) resolve(o.stdout);
          else reject(failedPluginError(pluginPath, o));
        });
        child.stdin.end(stdin);
      });
    },
  };
}

export interface ChainDirs {
  ipam: string;
  tuning: string;
}

export function chainList(d: ChainDirs, subnet: string, only?: "bridge"): NetConfList {
  const bridge = {
    type: "bridge",
    bridge: BRIDGE,
    isGateway: true,
    ipMasq: true,
    hairpinMode: true,
    ipam: { type: "host-local", dataDir: d.ipam, ranges: [[{ subnet }]], routes: [{ dst: "0.0.0.0/0" }] },
  };
  const plugins: Record<string, unknown>[] = [bridge];
  if (!only)
    plugins.push(
      { type: "portmap", capabilities: { portMappings: true }, snat: true },
      { type: "bandwidth", capabilities: { bandwidth: true } },
      { type: "tuning", dataDir: d.tuning, mtu: 1400, sysctl: { "net.core.somaxconn": "512" } },
    );
  return { cniVersion: "1.1.0", name: NET, plugins } as unknown as NetConfList;
}

// biome-ignore lint/suspicious/noExplicitAny: ip/tc/nft JSON rows
type Row = any;
const notBridge = (key: string) => (x: Row) => x[key] !== BRIDGE;

/**
 * Differences between the host netns now and `pristine` (its state before any ADD), ignoring the shared
 * infrastructure the chain may leave: bridge BRIDGE with no port (its address, routes, noqueue qdisc), and
 * the tables SHARED_TABLES whose maps are all empty and whose objects are all in `infra` (sharedInfra() of a
 * netns after one clean ADD + DEL). Each entry says what is left.
 */
export function hostLeftovers(hostPath: string, pristine: NetnsState, infra?: string[]): string[] {
  const now = netnsState(hostPath);
  const out: string[] = [];
  const same = (what: string, a: unknown, b: unknown) => {
    if (JSON.stringify(a) !== JSON.stringify(b)) out.push(`${what}: ${JSON.stringify(a)}`);
  };
  same("links", now.links.filter(notBridge("ifname")), pristine.links);
  same(
    "ports of the bridge",
    now.links.filter((l: Row) => l.master === BRIDGE).map((l: Row) => l.ifname),
    [],
  );
  same("addrs", now.addrs.filter(notBridge("ifname")), pristine.addrs);
  same("routes4", now.routes4.filter(notBridge("dev")), pristine.routes4);
  same("routes6", now.routes6.filter(notBridge("dev")), pristine.routes6);
  same("qdiscs", now.qdiscs.filter(notBridge("dev")), pristine.qdiscs);
  same(
    "bridge qdiscs",
    now.qdiscs.filter((q: Row) => q.dev === BRIDGE && q.kind !== "noqueue").map((q: Row) => q.kind),
    [],
  );
  same("iptables", now.iptables, pristine.iptables);
  same("ip6tables", now.ip6tables, pristine.ip6tables);
  const was = nftSplit(pristine.nft, SHARED_TABLES);
  const split = nftSplit(now.nft, SHARED_TABLES);
  same("nft tables", nftStructure(split.other), nftStructure(was.other));
  const elems = split.shared
    .map((o: Row) => o.map)
    .filter((m: Row) => m !== undefined && (m.elem?.length ?? 0) > 0)
    .map((m: Row) => `${m.name}: ${JSON.stringify(m.elem)}`);
  same("nft map elements", elems, []);
  if (infra) {
    const known = new Set(infra);
    for (const o of nftStructure(split.shared).map((x: Row) => JSON.stringify(x)))
      if (!known.has(o)) out.push(`nft object not in the shared infrastructure: ${o}`);
  }
  return out;
}

/** The shared tables' objects (no handles, no map elements) as JSON lines: what one ADD + DEL leaves. */
export function sharedInfra(hostPath: string): string[] {
  return nftStructure(nftSplit(netnsState(hostPath).nft, SHARED_TABLES).shared).map((x: Row) =>
    JSON.stringify(x),
  );
}
