/**
 * Throwaway network namespaces for kernel tests. Stable API — everyone's tests use it:
 *
 *   makeNetns(prefix = "t") → TempNetns  a named netns `tscni-<prefix>-<random6>` with
 *       .name .path           its name and /var/run/netns path
 *       .ns                   an open NetNS (fd) for setns / IFLA_NET_NS_FD
 *       .sock                 a NetlinkSocket opened inside it
 *       .ip(...args)          parsed JSON of `ip -n <name> -j ...args` (the independent oracle;
 *                             undefined when ip prints nothing; throws when ip fails)
 *       .bridge(...args)      the same for `bridge -n <name> -j ...args`
 *       .tc(...args)          the same for `tc -n <name> -j ...args`
 *       .run(cmd)             `ip netns exec <name> ...cmd` → {code, stdout, stderr} (sync)
 *       .cleanup()            closes everything and deletes the netns (its links die with it)
 *   withTempNetns(fn, prefix?)   runs fn(netns) and always cleans up
 *   tempDir(prefix) → {path, cleanup()}   a mkdtemp dir under os.tmpdir()
 *   cleanupAll()                 cleans every netns and dir made here (call in afterEach/afterAll;
 *                                also runs after the last test file, see teardown.ts)
 *   skipUnlessKind(kind)         undefined when the kernel can make links of `kind`, else the reason
 *   skipUnlessBridgeVlan()       the same for bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING)
 *   requiresKernel(...kinds)     a test needing link kinds: skips here with the reason when the kernel lacks
 *                                them, and is tagged `[kernel …]` so the VM lane (scripts/vm test) runs it
 *   forwardingOff(...netns)      sets IPv4 and IPv6 forwarding to 0 in each netns (a new netns inherits
 *                                net.ipv4.ip_forward from the root netns, which container hosts have at 1):
 *                                tests that assert a plugin turned forwarding on, or left it off, start here
 *   skipLabel(name, reason)      the test name with " (skipped: reason)" appended when skipping:
 *       const why = skipUnlessKind("ipvlan");
 *       test.skipIf(!!why)(skipLabel("creates an ipvlan", why), () => { ... });
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { linkAdd, linkKindSupported } from "../../src/netlink/link.ts";
import { bridgeSetOptions } from "../../src/netlink/link-bridge.ts";
import type { LinkKind } from "../../src/netlink/link-kinds.ts";
import { NetlinkSocket } from "../../src/netlink/socket.ts";
import { createNamedNetns, deleteNamedNetns, type NetNS, openNetns } from "../../src/ns/index.ts";
import { onTestRunEnd } from "./teardown.ts";

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface TempNetns {
  readonly name: string;
  readonly path: string;
  readonly ns: NetNS;
  readonly sock: NetlinkSocket;
  // biome-ignore lint/suspicious/noExplicitAny: parsed `ip -j` output is whatever ip prints
  ip(...args: string[]): any;
  // biome-ignore lint/suspicious/noExplicitAny: parsed `bridge -j` output
  bridge(...args: string[]): any;
  // biome-ignore lint/suspicious/noExplicitAny: parsed `tc -j` output
  tc(...args: string[]): any;
  run(cmd: string[]): RunResult;
  cleanup(): void;
}

const live = new Set<{ cleanup(): void }>();

function randomTag(): string {
  return Math.random().toString(36).slice(2, 8).padEnd(6, "0");
}

function run(cmd: string[]): RunResult {
  const p = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode ?? -1, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

function json(cmd: string[]) {
  const r = run(cmd);
  if (r.code !== 0) throw new Error(`${cmd.join(" ")} failed (${r.code}): ${r.stderr.trim()}`);
  return r.stdout.trim() === "" ? undefined : JSON.parse(r.stdout);
}

export function makeNetns(prefix = "t"): TempNetns {
  const name = `tscni-${prefix}-${randomTag()}`;
  const path = createNamedNetns(name);
  let ns: NetNS | undefined;
  let sock: NetlinkSocket | undefined;
  try {
    ns = openNetns(path);
    sock = NetlinkSocket.open({ netnsFd: ns.fd });
  } catch (err) {
    ns?.close();
    deleteNamedNetns(name);
    throw err;
  }
  let done = false;
  const t: TempNetns = {
    name,
    path,
    ns,
    sock,
    ip: (...args) => json(["ip", "-n", name, "-j", ...args]),
    bridge: (...args) => json(["bridge", "-n", name, "-j", ...args]),
    tc: (...args) => json(["tc", "-n", name, "-j", ...args]),
    run: (cmd) => run(["ip", "netns", "exec", name, ...cmd]),
    cleanup() {
      if (done) return;
      done = true;
      live.delete(t);
      try {
        sock?.close();
      } finally {
        ns?.close();
        deleteNamedNetns(name);
      }
    },
  };
  live.add(t);
  return t;
}

export async function withTempNetns<T>(fn: (n: TempNetns) => T | Promise<T>, prefix = "t"): Promise<T> {
  const n = makeNetns(prefix);
  try {
    return await fn(n);
  } finally {
    n.cleanup();
  }
}

export function tempDir(prefix = "tscni-"): { path: string; cleanup(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  const d = {
    path,
    cleanup() {
      live.delete(d);
      rmSync(path, { recursive: true, force: true });
    },
  };
  live.add(d);
  return d;
}

/**
 * Forwarding off in each netns, whatever the root netns has: with net.core.devconf_inherit_init_net=0 a new
 * netns copies IPv4's conf/all and conf/default (so net.ipv4.ip_forward) from the root netns; with 1 it
 * copies IPv6's too. Written with sysctl(8) in the netns, the independent tool.
 */
export function forwardingOff(...netns: TempNetns[]): void {
  const keys = [
    "net.ipv4.ip_forward=0",
    "net.ipv6.conf.all.forwarding=0",
    "net.ipv6.conf.default.forwarding=0",
  ];
  for (const n of netns) {
    const r = n.run(["sysctl", "-qw", ...keys]);
    if (r.code !== 0) throw new Error(`sysctl -w in ${n.name} failed (${r.code}): ${r.stderr.trim()}`);
  }
}

/** Cleans up every netns and temp dir made by this module that is still around. */
export function cleanupAll(): void {
  const errors: unknown[] = [];
  for (const x of [...live]) {
    try {
      x.cleanup();
    } catch (err) {
      errors.push(err);
    }
  }
  if (errors.length) throw errors[0];
}

onTestRunEnd(cleanupAll);

const kindCache = new Map<LinkKind, string | undefined>();

/** Why tests of `kind` must skip (the kernel cannot make it), or undefined when it can. Cached. */
export function skipUnlessKind(kind: LinkKind): string | undefined {
  if (!kindCache.has(kind)) {
    const n = makeNetns("probe");
    try {
      const r = linkKindSupported(n.sock, kind);
      kindCache.set(kind, r.supported ? undefined : r.reason);
    } finally {
      n.cleanup();
    }
  }
  return kindCache.get(kind);
}

let bridgeVlanReason: string | undefined | null = null;

/** Why bridge VLAN tests must skip (no CONFIG_BRIDGE_VLAN_FILTERING), or undefined. Cached. */
export function skipUnlessBridgeVlan(): string | undefined {
  if (bridgeVlanReason === null) {
    const n = makeNetns("probe");
    try {
      const br = linkAdd(n.sock, { kind: "bridge", name: "br0" });
      bridgeSetOptions(n.sock, br?.index ?? 0, { vlanFiltering: true });
      bridgeVlanReason = undefined;
    } catch (err) {
      bridgeVlanReason = `kernel lacks bridge vlan filtering: ${err instanceof Error ? err.message : err}`;
    } finally {
      n.cleanup();
    }
  }
  return bridgeVlanReason;
}

/** A test's need for kernel link kinds: why it must skip here (undefined when it can run) and its name. */
export interface KernelNeed {
  why: string | undefined;
  /** `name` tagged `[kernel a,b]` (the VM lane selects tests by that tag), plus the skip reason. */
  name(name: string): string;
}

/**
 * Declares that a test needs the kernel to make links of `kinds`. Where it can (an ordinary host with
 * modules, or the VM lane's guest) the test runs; on a host without them it skips with the reason, and
 * `scripts/vm test` runs it in a guest with a stock kernel (selected by the `[kernel …]` tag). Use:
 *     const k = requiresKernel("ipvlan");
 *     test.skipIf(!!k.why)(k.name("ipvlan l2 on a veth"), () => { ... });
 */
export function requiresKernel(...kinds: LinkKind[]): KernelNeed {
  const missing = kinds.map((k) => skipUnlessKind(k)).filter((r): r is string => !!r);
  const inVm = process.env.TSCNI_LANE === "vm";
  const why = missing.length
    ? `${missing.join("; ")}${inVm ? " (even in the VM lane's kernel)" : "; runs in the VM lane (scripts/vm test)"}`
    : undefined;
  return { why, name: (name) => skipLabel(`[kernel ${kinds.join(",")}] ${name}`, why) };
}

/** `name`, plus the skip reason when there is one, so a skip is visible in the test report. */
export function skipLabel(name: string, reason: string | undefined): string {
  return reason ? `${name} (skipped: ${reason})` : name;
}
