/**
 * `tscni node-net` on three "nodes" (throwaway netns on an underlay bridge) with a 3-member etcd reachable
 * on the underlay: each node leases a distinct subnet and writes subnet.env, pods on different nodes ping
 * across the VXLAN overlay (each pod attached by `tscni pod up` on the flannel conflist), a stopped node's routes, neighbours and fdb entries go after its lease TTL
 * and come back (same subnet) when it restarts, and restarting a daemon tears no packet path down.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { type EtcdCluster, skipUnlessEtcd, startEtcdCluster } from "../helpers/etcd.ts";
import { cleanupAll, makeNetns, type TempNetns, tempDir } from "../helpers/netns.ts";
import { BUN, flannelPluginDir, MAIN, podUp } from "./flannel-pod.ts";

const why = skipUnlessEtcd();
const _REPO = join(import.meta.dir, "../..");
const PREFIX = "/coreos.com/network";

function sh(n: TempNetns, ...cmd: string[]): void {
  const r = n.run(cmd);
  if (r.code !== 0) throw new Error(`${cmd.join(" ")} in ${n.name}: ${r.stderr}`);
}

interface Node {
  ns: TempNetns;
  pod?: TempNetns;
  env: string;
  daemon?: ChildProcess;
  log: string;
}

let etcd: EtcdCluster | undefined;
const nodes: Node[] = [];

afterAll(async () => {
  for (const n of nodes) n.daemon?.kill("SIGKILL");
  await etcd?.stop();
  cleanupAll();
});

async function until(what: string, ok: () => boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(100);
  }
}

function startDaemon(n: Node): void {
  n.daemon = spawn(
    "ip",
    [
      "netns",
      "exec",
      n.ns.name,
      BUN,
      MAIN,
      "node-net",
      "--etcd-endpoints",
      etcd?.endpoints.join(",") ?? "",
      "--iface",
      "eth0",
      "--subnet-file",
      n.env,
      "--ttl",
      "3",
      "--poll-ms=300",
      "--ip-masq",
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  n.daemon.stderr?.on("data", (d: Buffer) => {
    n.log += d.toString();
  });
}

async function stopDaemon(n: Node, signal: NodeJS.Signals = "SIGKILL"): Promise<number | null> {
  const d = n.daemon;
  if (!d) return null;
  const exited = new Promise<number | null>((r) => d.once("exit", (code) => r(code)));
  d.kill(signal);
  const code = await exited;
  n.daemon = undefined;
  return code;
}

/** The names of the nft tables in a node's netns (`nft -j list tables`). */
function nftTables(n: Node): string[] {
  const out = JSON.parse(n.ns.run(["nft", "-j", "list", "tables"]).stdout) as {
    nftables: { table?: { family: string; name: string } }[];
  };
  return out.nftables.flatMap((o) => (o.table ? [`${o.table.family} ${o.table.name}`] : []));
}

/** The rules of flannel-ipv4's postrtg chain as `nft list` prints them. */
function masqRules(n: Node): string[] {
  const r = n.ns.run(["nft", "list", "chain", "ip", "flannel-ipv4", "postrtg"]);
  return r.stdout
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => /return$|masquerade/.test(l));
}

function subnetOf(n: Node): string {
  const m = /FLANNEL_SUBNET=(\d+\.\d+\.\d+)\.1\/24/.exec(readFileSync(n.env, "utf8"));
  if (!m) throw new Error(`no subnet in ${n.env}`);
  return m[1] ?? "";
}

function ping(from: TempNetns, ip: string): boolean {
  return from.run(["ping", "-c", "1", "-W", "1", ip]).code === 0;
}

function vtepRoutes(n: Node): string[] {
  return (n.ns.ip("-4", "route", "show", "dev", "flannel.1") as { dst: string }[]).map((r) => r.dst).sort();
}

describe.skipIf(!!why)("tscni node-net", () => {
  test("three nodes: leases, subnet.env, pod-to-pod pings, a node leaving and coming back, a daemon restart", async () => {
    const dir = tempDir("tscni-nodenet-").path;
    const underlay = makeNetns("nu");
    sh(underlay, "ip", "link", "add", "br0", "type", "bridge");
    sh(underlay, "ip", "link", "set", "br0", "up");
    etcd = await startEtcdCluster({
      members: 3,
      basePort: 25791,
      host: "192.168.50.100",
      prepare: (e) => {
        sh(underlay, "ip", "link", "add", "ue", "type", "veth", "peer", "name", "eth0", "netns", e.name);
        sh(underlay, "ip", "link", "set", "ue", "master", "br0", "up");
        sh(e, "ip", "addr", "add", "192.168.50.100/24", "dev", "eth0");
        sh(e, "ip", "link", "set", "eth0", "up");
      },
    });
    const cfg = JSON.stringify({
      Network: "10.244.0.0/16",
      SubnetLen: 24,
      Backend: { Type: "vxlan", VNI: 1 },
    });
    const put = await etcd.exec(
      ["etcdctl", `--endpoints=${etcd.endpoints[0]}`, "put", `${PREFIX}/config`, cfg],
      {
        env: { ETCDCTL_API: "3" },
      },
    );
    expect(put.stdout.trim()).toBe("OK");

    for (let i = 1; i <= 3; i++) {
      const ns = makeNetns(`nn${i}`);
      sh(underlay, "ip", "link", "add", `u${i}`, "type", "veth", "peer", "name", "eth0", "netns", ns.name);
      sh(underlay, "ip", "link", "set", `u${i}`, "master", "br0", "up");
      sh(ns, "ip", "addr", "add", `192.168.50.${i}/24`, "dev", "eth0");
      sh(ns, "ip", "link", "set", "eth0", "up");
      for (const k of [
        "net.ipv4.ip_forward=1",
        "net.ipv4.conf.all.rp_filter=0",
        "net.ipv4.conf.default.rp_filter=0",
      ])
        sh(ns, "sysctl", "-qw", k);
      nodes.push({ ns, env: join(dir, `node${i}.env`), log: "" });
    }
    for (const n of nodes) startDaemon(n);
    await until("every subnet.env", () => nodes.every((n) => existsSync(n.env)));
    const subnets = nodes.map(subnetOf);
    expect(new Set(subnets).size).toBe(3);
    expect(readFileSync(nodes[0]!.env, "utf8")).toContain("FLANNEL_NETWORK=10.244.0.0/16\n");
    expect(readFileSync(nodes[0]!.env, "utf8")).toContain("FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n");
    // --ip-masq: flanneld's rules for this node's lease
    expect(masqRules(nodes[0]!)).toEqual([
      "meta mark 0x00004000 return",
      `ip saddr ${subnets[0]}.0/24 ip daddr 10.244.0.0/16 return`,
      `ip saddr 10.244.0.0/16 ip daddr ${subnets[0]}.0/24 return`,
      `ip saddr != ${subnets[0]}.0/24 ip daddr 10.244.0.0/16 return`,
      "ip saddr 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random",
      "ip saddr != 10.244.0.0/16 ip daddr 10.244.0.0/16 masquerade fully-random",
    ]);
    // an "outside" host beyond node A's second link, with no route into the cluster network
    const outside = makeNetns("no");
    sh(
      nodes[0]!.ns,
      "ip",
      "link",
      "add",
      "ext0",
      "type",
      "veth",
      "peer",
      "name",
      "eth0",
      "netns",
      outside.name,
    );
    sh(nodes[0]!.ns, "ip", "addr", "add", "203.0.113.1/24", "dev", "ext0");
    sh(nodes[0]!.ns, "ip", "link", "set", "ext0", "up");
    sh(outside, "ip", "addr", "add", "203.0.113.2/24", "dev", "eth0");
    sh(outside, "ip", "link", "set", "eth0", "up");

    // a pod per node through kubelet's flow on the canonical flannel conflist: flannel reads the
    // subnet.env node-net wrote and delegates to bridge + host-local
    const bin = flannelPluginDir(dir);
    const podIPs: string[] = [];
    for (const [i, n] of nodes.entries()) {
      const pod = makeNetns(`np${i + 1}`);
      const up = podUp({
        nodeNetns: n.ns.path,
        podNetns: pod.path,
        dir,
        index: i,
        subnetFile: n.env,
        bin,
        pod: `default/web-${i}`,
        sandboxID: `sandbox${i}`,
      });
      expect(up.code, up.stderr).toBe(0);
      const ip = up.ips[0] ?? "";
      expect(ip.startsWith(`${subnets[i]}.`)).toBe(true);
      podIPs.push(ip);
      n.pod = pod;
    }
    const [a, b, c] = nodes as [Node, Node, Node];
    await until(
      "pod A reaches pods B and C",
      () => ping(a.pod!, podIPs[1] ?? "") && ping(a.pod!, podIPs[2] ?? ""),
    );
    expect(ping(c.pod!, podIPs[1] ?? "")).toBe(true);
    // a TCP transfer between pods on two nodes: 2 MiB over HTTP, sized by the client
    // (/ip answers with the address the request came from)
    const serve = `Bun.serve({hostname:"0.0.0.0",port:5201,fetch:(r,s)=>new URL(r.url).pathname==="/ip"?new Response(s.requestIP(r)?.address??""):new Response(new Uint8Array(2097152))});console.log("ready")`;
    const server = spawn("ip", ["netns", "exec", b.pod!.name, BUN, "-e", serve]);
    const outer = spawn("ip", ["netns", "exec", outside.name, BUN, "-e", serve]);
    let got = "";
    for (const p of [server, outer])
      p.stdout?.on("data", (d: Buffer) => {
        got += d.toString();
      });
    const seenBy = (url: string) => a.pod!.run(["curl", "-s", "-m", "5", url]).stdout.replace(/^::ffff:/, "");
    try {
      await until("the servers", () => got.split("ready").length === 3);
      // pod → pod across nodes: not masqueraded, the peer sees the pod's address
      expect(seenBy(`http://${podIPs[1]}:5201/ip`)).toBe(podIPs[0] ?? "");
      // pod → outside the cluster network: masqueraded to node A's address on that link
      expect(seenBy("http://203.0.113.2:5201/ip")).toBe("203.0.113.1");
      const curl = a.pod!.run([
        "curl",
        "-s",
        "-m",
        "10",
        "-o",
        "/dev/null",
        "-w",
        "%{size_download}",
        `http://${podIPs[1]}:5201/`,
      ]);
      expect(curl.stdout).toBe("2097152");
    } finally {
      server.kill("SIGKILL");
      outer.kill("SIGKILL");
    }

    // node C goes away: after its lease TTL, A forgets it
    await stopDaemon(c);
    await until("A drops C's route", () => !vtepRoutes(a).includes(`${subnets[2]}.0/24`), 20_000);
    expect(vtepRoutes(a)).toEqual([`${subnets[1]}.0/24`]);
    const fdb = JSON.parse(a.ns.run(["bridge", "-j", "fdb", "show", "dev", "flannel.1"]).stdout) as {
      dst?: string;
    }[];
    expect(fdb.filter((f) => f.dst).map((f) => f.dst)).toEqual(["192.168.50.2"]);
    expect(ping(a.pod!, podIPs[2] ?? "")).toBe(false);
    // killed, not stopped: its masquerade rules stay (as flanneld's do), the next start replaces them
    expect(nftTables(c)).toContain("ip flannel-ipv4");

    // C comes back: the same subnet (its PublicIP's lease), reachable again
    startDaemon(c);
    await until("A reaches C again", () => ping(a.pod!, podIPs[2] ?? ""), 20_000);
    expect(subnetOf(c)).toBe(subnets[2] ?? "");

    // restarting A's daemon tears nothing down: B keeps reaching A's pod throughout
    const pinger = spawn("ip", [
      "netns",
      "exec",
      b.pod!.name,
      "ping",
      "-c",
      "30",
      "-i",
      "0.1",
      "-W",
      "1",
      podIPs[0] ?? "",
    ]);
    let out = "";
    pinger.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
    });
    const done = new Promise((r) => pinger.once("exit", r));
    await Bun.sleep(500);
    await stopDaemon(a);
    startDaemon(a);
    await done;
    expect(out).toContain("30 received");
    expect(masqRules(a)).toHaveLength(6);

    // a clean stop (SIGTERM) removes the masquerade tables; the overlay stays
    for (const n of nodes) expect(await stopDaemon(n, "SIGTERM")).toBe(0);
    for (const n of nodes) expect(nftTables(n).filter((t) => t.includes("flannel"))).toEqual([]);
    expect(vtepRoutes(a)).toHaveLength(2);
  }, 180_000);
});
