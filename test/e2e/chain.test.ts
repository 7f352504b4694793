/**
 * The chain a Kubernetes node runs, end to end through the compiled multicall binary and its CLI:
 *
 *   bridge (host-local, isGateway, ipMasq, hairpinMode) → portmap (portMappings) → bandwidth (bandwidth)
 *   → tuning (net.core.somaxconn, mtu)
 *
 * `tscni install` lays the plugin links in a temp CNI_PATH; `tscni add|check|del|gc|status` runs inside a
 * throwaway host netns (`nsenter --net`, which keeps the mount namespace, unlike `ip netns exec`); the
 * container is another throwaway netns. Every piece of state is snapshotted before ADD (chain-state.ts)
 * and must be back to the snapshot after DEL / GC, except this shared infrastructure, which may remain:
 *   - the bridge cni0 (no ports), with its gateway address, its routes and its default noqueue qdisc;
 *   - nft tables `inet tscni_masquerade` and `inet tscni_hostport` with their chains and fixed rules
 *     (exactly those present after ADD: no rule is per attachment) and their maps, all EMPTY; plus
 *     portmap's `layout_<hash>` set, whose one element marks which chain layout is built;
 *   - in host-local's dataDir: `lock`, `last_reserved_ip.<n>` (upstream leaves both too) and our
 *     `.tscni-index*` bucket files, none of which may still mention the container;
 *   - in the container netns: net.core.somaxconn keeps the tuned value (tuning restores link
 *     attributes only; sysctls of a netns die with it — upstream behaves the same).
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { cnitoolContainerID } from "../../src/cli/commands.ts";
import { buildTscni, REPO } from "../helpers/build.ts";
import { cleanupAll, makeNetns, type TempNetns, tempDir } from "../helpers/netns.ts";
import { dirFiles, type NetnsState, netnsState, nftElements, nftSplit, nftStructure } from "./chain-state.ts";

const BUN = join(REPO, "node_modules/.bin/bun");
const NET = "k8s-pod-network";
const BRIDGE = "cni0";
const SUBNET_PREFIX = "10.244.31.";
const GATEWAY = `${SUBNET_PREFIX}1`;
const HOST_PORT = 8080;
const CONTAINER_PORT = 80;
const SOMAXCONN = "512";
const MTU = 1400;
/** bits/s: toward the container (host veth) and from it (ifb); far apart so a swapped direction shows. */
const INGRESS_RATE = 20_000_000;
const EGRESS_RATE = 80_000_000;
const SHARED_TABLES = ["inet tscni_masquerade", "inet tscni_hostport"];
/** What host-local may leave in its dataDir after the last release (see the header). */
const IPAM_LEFTOVERS = /^(lock|last_reserved_ip\.\d+|\.tscni-index(\.\d+)?)$/;
const T = 30_000;

const CAP_ARGS = {
  portMappings: [{ hostPort: HOST_PORT, containerPort: CONTAINER_PORT, protocol: "tcp" }],
  bandwidth: {
    ingressRate: INGRESS_RATE,
    ingressBurst: INGRESS_RATE / 10,
    egressRate: EGRESS_RATE,
    egressBurst: EGRESS_RATE / 10,
  },
};

/** The compiled executable (run as "tscni" it is the CLI) and the dir of its plugin links (CNI_PATH). */
let cli = "";
let binDir = "";

beforeAll(() => {
  cli = buildTscni();
  // Not a tempDir(): cleanupAll() after each test would remove it.
  binDir = mkdtempSync(join(tmpdir(), "tscni-chain-bin-"));
  const p = Bun.spawnSync([cli, "install", binDir], { stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`tscni install failed: ${p.stderr}`);
}, 180_000);

afterEach(() => cleanupAll());
afterAll(() => {
  cleanupAll();
  if (binDir) rmSync(binDir, { recursive: true, force: true });
});

interface Chain {
  host: TempNetns;
  cont: TempNetns;
  conf: string;
  cache: string;
  ipam: string;
  tuning: string;
  /** The container id `tscni` derives from the netns path (cnitool's). */
  cid: string;
}

function conflist(cniVersion: string, c: Pick<Chain, "ipam" | "tuning">): object {
  return {
    cniVersion,
    name: NET,
    plugins: [
      {
        type: "bridge",
        bridge: BRIDGE,
        isGateway: true,
        ipMasq: true,
        hairpinMode: true,
        ipam: {
          type: "host-local",
          dataDir: c.ipam,
          ranges: [[{ subnet: `${SUBNET_PREFIX}0/24` }]],
          routes: [{ dst: "0.0.0.0/0" }],
        },
      },
      { type: "portmap", capabilities: { portMappings: true }, snat: true },
      { type: "bandwidth", capabilities: { bandwidth: true } },
      { type: "tuning", dataDir: c.tuning, mtu: MTU, sysctl: { "net.core.somaxconn": SOMAXCONN } },
    ],
  };
}

function makeChain(cniVersion: string): Chain {
  const host = makeNetns("chh");
  const cont = makeNetns("chc");
  // A real host has its loopback up: 127.0.0.1:hostPort is part of what portmap serves.
  host.run(["ip", "link", "set", "lo", "up"]);
  const dir = tempDir("tscni-chain-").path;
  const c: Chain = {
    host,
    cont,
    conf: join(dir, "net.d"),
    cache: join(dir, "cache"),
    ipam: join(dir, "ipam"),
    tuning: join(dir, "tuning"),
    cid: cnitoolContainerID(cont.path),
  };
  mkdirSync(c.conf);
  writeFileSync(join(c.conf, "10-k8s.conflist"), JSON.stringify(conflist(cniVersion, c)));
  return c;
}

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** `tscni <args>` in the host netns, with the runtime's environment (kubelet-like CNI_ARGS). */
function tscni(c: Chain, ...args: string[]): CliResult {
  const p = Bun.spawnSync(["nsenter", `--net=${c.host.path}`, cli, ...args], {
    env: {
      PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin",
      NETCONFPATH: c.conf,
      CNI_PATH: binDir,
      CNI_CACHE_DIR: c.cache,
      CAP_ARGS: JSON.stringify(CAP_ARGS),
      CNI_ARGS: "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0",
    },
    stdout: "pipe",
    stderr: "pipe",
  });
  return { code: p.exitCode ?? -1, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

function ok(r: CliResult, what: string): string {
  if (r.code !== 0) throw new Error(`${what} failed (${r.code}): ${r.stderr}${r.stdout}`);
  return r.stdout;
}

interface Snapshot {
  host: NetnsState;
  cont?: NetnsState;
  cache: Record<string, string>;
  ipam: Record<string, string>;
  tuning: Record<string, string>;
}

function snapshot(c: Chain, withContainer = true): Snapshot {
  const s: Snapshot = {
    host: netnsState(c.host.path),
    cache: dirFiles(c.cache),
    ipam: dirFiles(c.ipam),
    tuning: dirFiles(c.tuning),
  };
  if (withContainer) s.cont = netnsState(c.cont.path, ["net.core.somaxconn"]);
  return s;
}

// biome-ignore lint/suspicious/noExplicitAny: ip/tc JSON rows
const notOn = (key: string) => (x: any) => x[key] !== BRIDGE;

/** Everything is back to `before`, except the shared infrastructure listed in the header. */
function expectRestored(c: Chain, before: Snapshot, afterAdd: Snapshot, after: Snapshot): void {
  const h = after.host;
  expect(h.links.filter(notOn("ifname"))).toEqual(before.host.links);
  expect(h.links.find((l: { ifname: string }) => l.ifname === BRIDGE)?.linkinfo?.info_kind).toBe("bridge");
  expect(h.addrs.filter(notOn("ifname"))).toEqual(before.host.addrs);
  expect(h.routes4.filter(notOn("dev"))).toEqual(before.host.routes4);
  expect(h.routes6.filter(notOn("dev"))).toEqual(before.host.routes6);
  expect(h.qdiscs.filter(notOn("dev"))).toEqual(before.host.qdiscs);
  expect(
    h.qdiscs.filter((q: { dev: string }) => q.dev === BRIDGE).map((q: { kind: string }) => q.kind),
  ).toEqual(["noqueue"]);
  expect(h.iptables).toBe(before.host.iptables);
  expect(h.ip6tables).toBe(before.host.ip6tables);

  const was = nftSplit(before.host.nft, SHARED_TABLES);
  const added = nftSplit(afterAdd.host.nft, SHARED_TABLES);
  const now = nftSplit(h.nft, SHARED_TABLES);
  expect(was.shared).toEqual([]); // a fresh host netns
  expect(now.other).toEqual(was.other);
  // Same tables, chains, rules and maps as after ADD (so nothing per attachment is a rule) …
  expect(nftStructure(now.shared)).toEqual(nftStructure(added.shared));
  // … and every map is empty.
  // biome-ignore lint/suspicious/noExplicitAny: nft -j objects
  expect(now.shared.filter((o: any) => o.map?.elem !== undefined).map((o: any) => o.map.name)).toEqual([]);

  if (before.cont && after.cont) {
    const { sysctls: tunedNow, ...restNow } = after.cont;
    const { sysctls: tunedBefore, ...restBefore } = before.cont;
    expect(restNow).toEqual(restBefore);
    expect(tunedBefore["net.core.somaxconn"]).not.toBe(SOMAXCONN);
    expect(tunedNow["net.core.somaxconn"]).toBe(SOMAXCONN);
  }

  expect(after.cache).toEqual(before.cache);
  expect(after.tuning).toEqual(before.tuning);
  const reservations = (files: Record<string, string>) =>
    Object.keys(files).filter((f) => !IPAM_LEFTOVERS.test(basename(f)));
  expect(reservations(after.ipam)).toEqual(reservations(before.ipam));
  for (const [file, text] of Object.entries(after.ipam)) {
    expect({ file, mentionsContainer: text.includes(c.cid) }).toEqual({ file, mentionsContainer: false });
  }
}

/** The state ADD must have made (the result, links, qdiscs, nft elements, files). Returns the container IP. */
// biome-ignore lint/suspicious/noExplicitAny: the CNI result as printed
function expectAttached(c: Chain, result: any, s: Snapshot): string {
  const ip: string = result.ips[0].address.split("/")[0];
  expect(result.ips[0].address).toStartWith(SUBNET_PREFIX);
  expect(result.ips[0].gateway).toBe(GATEWAY);
  const names = result.interfaces.map((i: { name: string }) => i.name);
  expect(names[0]).toBe(BRIDGE);
  expect(result.interfaces.find((i: { name: string; sandbox?: string }) => i.name === "eth0")?.sandbox).toBe(
    c.cont.path,
  );

  // biome-ignore lint/suspicious/noExplicitAny: ip -j rows
  const hostVeth = s.host.links.find((l: any) => l.linkinfo?.info_kind === "veth");
  expect(hostVeth?.master).toBe(BRIDGE);
  expect(hostVeth?.linkinfo?.info_slave_data?.hairpin).toBe(true);
  // biome-ignore lint/suspicious/noExplicitAny: ip -j rows
  const ifb = s.host.links.find((l: any) => l.linkinfo?.info_kind === "ifb");
  expect(ifb?.ifname).toStartWith("bwp");
  expect(names).toContain(ifb?.ifname);
  const qdiscs = (dev: string) =>
    s.host.qdiscs.filter((q: { dev: string }) => q.dev === dev).map((q: { kind: string }) => q.kind);
  expect(qdiscs(hostVeth.ifname).sort()).toEqual(["ingress", "tbf"]);
  expect(qdiscs(ifb.ifname)).toEqual(["tbf"]);

  expect(JSON.stringify(nftElements(s.host.nft, "tscni_masquerade", "masq4"))).toContain(ip);
  const dnat = JSON.stringify(nftElements(s.host.nft, "tscni_hostport", "dnat4"));
  expect(dnat).toContain(`${HOST_PORT}`);
  expect(dnat).toContain(ip);

  expect(s.ipam[join(NET, ip)]?.split(/\r?\n/)[0]).toBe(c.cid);
  expect(Object.keys(s.cache)).toEqual([join("results", `${NET}-${c.cid}-eth0`)]);
  expect(Object.keys(s.tuning)).toEqual([`${c.cid}_eth0.json`]);
  expect(JSON.parse(s.tuning[`${c.cid}_eth0.json`]!).mtu).toBe(1500);

  // biome-ignore lint/suspicious/noExplicitAny: ip -j rows
  const eth0 = s.cont?.links.find((l: any) => l.ifname === "eth0");
  expect(eth0?.mtu).toBe(MTU);
  expect(s.cont?.sysctls["net.core.somaxconn"]).toBe(SOMAXCONN);
  // biome-ignore lint/suspicious/noExplicitAny: ip -j rows
  expect(s.cont?.routes4.find((r: any) => r.dst === "default")?.gateway).toBe(GATEWAY);
  return ip;
}

/** `curl` of url inside a netns: the body, or undefined when it does not answer. */
function curl(netnsPath: string, url: string): string | undefined {
  const p = Bun.spawnSync(["nsenter", `--net=${netnsPath}`, "curl", "-s", "-m", "3", url], {
    stdout: "pipe",
  });
  return p.exitCode === 0 ? p.stdout.toString() : undefined;
}

async function until<T>(what: string, fn: () => T | undefined, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(50);
  }
}

/** Mbit/s iperf3 measures from the host netns to the container (reverse: from the container). */
async function iperf(c: Chain, ip: string, reverse: boolean): Promise<number> {
  const server = Bun.spawn(["nsenter", `--net=${c.cont.path}`, "iperf3", "-s", "-1", "-p", "5201"], {
    stdout: "ignore",
    stderr: "ignore",
  });
  try {
    const out = await until("iperf3", () => {
      const cmd = ["iperf3", "-c", ip, "-p", "5201", "-t", "1", "-J", ...(reverse ? ["-R"] : [])];
      const p = Bun.spawnSync(["nsenter", `--net=${c.host.path}`, ...cmd], { stdout: "pipe" });
      // With -J, iperf3 may exit 0 on errors: the JSON says what happened.
      const j = p.stdout.length ? JSON.parse(p.stdout.toString()) : { error: `exit ${p.exitCode}` };
      if (String(j.error ?? "").includes("Connection refused")) return undefined; // not listening yet
      const bps = j.end?.sum_received?.bits_per_second;
      if (bps === undefined) throw new Error(`iperf3 failed (${p.exitCode}): ${p.stdout}`);
      return bps as number;
    });
    return out / 1e6;
  } finally {
    server.kill();
    await server.exited;
  }
}

/** Real traffic: a TCP server in the container, reached by its hostPort, by hairpin, and shaped. */
async function expectTraffic(c: Chain, ip: string): Promise<void> {
  const server = Bun.spawn(
    [
      "nsenter",
      `--net=${c.cont.path}`,
      BUN,
      "-e",
      `Bun.serve({ hostname: "0.0.0.0", port: ${CONTAINER_PORT}, fetch: () => new Response("hello from the pod") })`,
    ],
    { stdout: "ignore", stderr: "pipe" },
  );
  try {
    await until("the server in the container", () => curl(c.host.path, `http://${ip}:${CONTAINER_PORT}/`));
    expect(curl(c.host.path, `http://127.0.0.1:${HOST_PORT}/`)).toBe("hello from the pod");
    expect(curl(c.host.path, `http://${GATEWAY}:${HOST_PORT}/`)).toBe("hello from the pod");
    // Hairpin: the pod reaches itself through the host port (hairpinMode + portmap's SNAT).
    expect(curl(c.cont.path, `http://${GATEWAY}:${HOST_PORT}/`)).toBe("hello from the pod");
  } finally {
    server.kill();
    await server.exited;
  }
  // A 1 s transfer gets at most rate + burst (1.1× rate); an unshaped veth carries gigabits.
  const ingress = await iperf(c, ip, false);
  const egress = await iperf(c, ip, true);
  expect(ingress).toBeGreaterThan(1);
  expect(ingress).toBeLessThan((1.5 * INGRESS_RATE) / 1e6);
  expect(egress).toBeGreaterThan((0.5 * EGRESS_RATE) / 1e6);
  expect(egress).toBeLessThan((1.5 * EGRESS_RATE) / 1e6);
}

describe("kubelet chain: bridge → portmap → bandwidth → tuning via the tscni CLI", () => {
  test(
    "1.0.0: ADD makes the state and carries traffic, CHECK passes, DEL restores the snapshot",
    async () => {
      const c = makeChain("1.0.0");
      const before = snapshot(c);
      const result = JSON.parse(ok(tscni(c, "add", NET, c.cont.path), "tscni add"));
      expect(result.cniVersion).toBe("1.0.0");
      const afterAdd = snapshot(c);
      const ip = expectAttached(c, result, afterAdd);
      await expectTraffic(c, ip);
      ok(tscni(c, "check", NET, c.cont.path), "tscni check");

      ok(tscni(c, "del", NET, c.cont.path), "tscni del");
      expectRestored(c, before, afterAdd, snapshot(c));
      // DEL is idempotent: a second one succeeds and changes nothing.
      ok(tscni(c, "del", NET, c.cont.path), "second tscni del");
      expectRestored(c, before, afterAdd, snapshot(c));
    },
    T,
  );

  test(
    "1.1.0: STATUS passes; GC with no valid attachment removes the attachment like DEL",
    () => {
      const c = makeChain("1.1.0");
      ok(tscni(c, "status", NET), "tscni status");
      const before = snapshot(c);
      const result = JSON.parse(ok(tscni(c, "add", NET, c.cont.path), "tscni add"));
      expect(result.cniVersion).toBe("1.1.0");
      const afterAdd = snapshot(c);
      expectAttached(c, result, afterAdd);

      ok(tscni(c, "gc", NET), "tscni gc");
      expectRestored(c, before, afterAdd, snapshot(c));
    },
    T,
  );

  test(
    "1.1.0: GC alone cleans up after a container whose netns and cache entry are gone",
    async () => {
      // No cached attachment, so libcni has nothing to DEL: each plugin's own GC must find its state
      // (ifb, nft elements, reservation, tuning backup) by network name and remove it.
      const c = makeChain("1.1.0");
      const before = snapshot(c, false);
      ok(tscni(c, "add", NET, c.cont.path), "tscni add");
      const afterAdd = snapshot(c, false);
      c.cont.cleanup();
      rmSync(join(c.cache, "results"), { recursive: true, force: true });
      // The host veth goes with the container netns, asynchronously (the kernel's netns cleanup work).
      await until("the host veth to go", () =>
        // biome-ignore lint/suspicious/noExplicitAny: ip -j rows
        netnsState(c.host.path).links.some((l: any) => l.linkinfo?.info_kind === "veth") ? undefined : true,
      );

      ok(tscni(c, "gc", NET), "tscni gc");
      const after = snapshot(c, false);
      // The emptied results dir is the runtime's (we removed its file), not the chain's.
      expectRestored(c, before, afterAdd, { ...after, cache: dirFiles(c.cache) });
    },
    T,
  );
});
