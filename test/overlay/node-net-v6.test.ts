/**
 * `tscni node-net` on a dual-stack network config: two "nodes" (throwaway netns on an underlay bridge
 * carrying IPv4 and IPv6) and a 1-member etcd. Each daemon makes flannel.<VNI> and flannel-v6.<VNI>
 * (VXLAN over the IPv6 underlay), leases a dual-stack subnet, writes flanneld's subnet.env, and pods
 * attached by `tscni pod up` on the flannel conflist ping each other across nodes over IPv6.
 * Node 1 finds its public IPv6 address itself (the first global one of eth0); node 2 is given one with
 * FLANNELD_PUBLIC_IPV6 (not the one it would find).
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
const VNI = 6;

function sh(n: TempNetns, ...cmd: string[]): void {
  const r = n.run(cmd);
  if (r.code !== 0) throw new Error(`${cmd.join(" ")} in ${n.name}: ${r.stderr}`);
}

interface Node {
  ns: TempNetns;
  /** The public IPv6 address the daemon must use. */
  ip6: string;
  env: string;
  daemon?: ChildProcess;
  log: string;
  pod?: TempNetns;
}

let etcd: EtcdCluster | undefined;
const nodes: Node[] = [];

afterAll(async () => {
  for (const n of nodes) n.daemon?.kill("SIGKILL");
  await etcd?.stop();
  cleanupAll();
});

async function until(what: string, ok: () => boolean, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(100);
  }
}

function startDaemon(n: Node, env: Record<string, string> = {}): void {
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
      "--iface=eth0",
      "--subnet-file",
      n.env,
      "--poll-ms=300",
      "--ip-masq",
    ],
    { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, ...env } },
  );
  n.daemon.stderr?.on("data", (d: Buffer) => {
    n.log += d.toString();
  });
}

async function stopDaemon(n: Node): Promise<number | null> {
  const d = n.daemon;
  if (!d) return null;
  const exited = new Promise<number | null>((r) => d.once("exit", (code) => r(code)));
  d.kill("SIGTERM");
  n.daemon = undefined;
  return exited;
}

/** The node's subnets from subnet.env: ["10.246.3", "fd00:10:0:3"]. */
function subnetsOf(n: Node): [string, string] {
  const text = readFileSync(n.env, "utf8");
  const v4 = /FLANNEL_SUBNET=(\d+\.\d+\.\d+)\.1\/24/.exec(text)?.[1];
  const v6 = /FLANNEL_IPV6_SUBNET=([0-9a-f:]+)::1\/64/.exec(text)?.[1];
  if (!v4 || !v6) throw new Error(`no dual-stack subnets in ${n.env}: ${text}`);
  return [v4, v6];
}

function ping6(from: TempNetns, ip: string, ...extra: string[]) {
  return from.run(["ping", "-6", "-n", "-c", "1", "-W", "1", ...extra, ip]);
}

interface VxlanLink {
  mtu: number;
  address: string;
  linkinfo: {
    info_kind: string;
    info_data: { id: number; local6?: string; link?: string; port: number; learning: boolean };
  };
}

describe.skipIf(!!why)("tscni node-net, dual stack", () => {
  test("two nodes: flannel-v6 over the IPv6 underlay, dual-stack leases and subnet.env, pod-to-pod ping6", async () => {
    const dir = tempDir("tscni-nn6-").path;
    const underlay = makeNetns("n6u");
    sh(underlay, "ip", "link", "add", "br0", "type", "bridge");
    sh(underlay, "ip", "link", "set", "br0", "up");
    etcd = await startEtcdCluster({
      members: 1,
      basePort: 27591,
      host: "192.168.51.100",
      prepare: (e) => {
        sh(underlay, "ip", "link", "add", "ue", "type", "veth", "peer", "name", "eth0", "netns", e.name);
        sh(underlay, "ip", "link", "set", "ue", "master", "br0", "up");
        sh(e, "ip", "addr", "add", "192.168.51.100/24", "dev", "eth0");
        sh(e, "ip", "link", "set", "eth0", "up");
      },
    });
    const cfg = JSON.stringify({
      Network: "10.246.0.0/16",
      SubnetLen: 24,
      EnableIPv6: true,
      IPv6Network: "fd00:10::/56",
      IPv6SubnetLen: 64,
      Backend: { Type: "vxlan", VNI },
    });
    const etcdctl = (...args: string[]) =>
      etcd!.exec(["etcdctl", `--endpoints=${etcd!.endpoints[0]}`, ...args], { env: { ETCDCTL_API: "3" } });
    expect((await etcdctl("put", `${PREFIX}/config`, cfg)).stdout.trim()).toBe("OK");

    for (let i = 1; i <= 2; i++) {
      const ns = makeNetns(`n6n${i}`);
      sh(underlay, "ip", "link", "add", `u${i}`, "type", "veth", "peer", "name", "eth0", "netns", ns.name);
      sh(underlay, "ip", "link", "set", `u${i}`, "master", "br0", "up");
      sh(ns, "ip", "addr", "add", `192.168.51.${i}/24`, "dev", "eth0");
      sh(ns, "ip", "addr", "add", `fd00:51::${i}/64`, "dev", "eth0", "nodad");
      // node 2: a newer global address that the daemon would pick first; FLANNELD_PUBLIC_IPV6 says ::2
      if (i === 2) sh(ns, "ip", "addr", "add", "fd00:51::22/64", "dev", "eth0", "nodad");
      sh(ns, "ip", "link", "set", "eth0", "up");
      for (const k of [
        "net.ipv4.ip_forward=1",
        "net.ipv4.conf.all.rp_filter=0",
        "net.ipv4.conf.default.rp_filter=0",
        "net.ipv6.conf.all.forwarding=1",
      ])
        sh(ns, "sysctl", "-qw", k);
      nodes.push({ ns, ip6: `fd00:51::${i}`, env: join(dir, `node${i}.env`), log: "" });
    }
    const [a, b] = nodes as [Node, Node];
    // which address node 2 would find by itself: the first global one `ip` lists (the newest)
    const firstOfB = (
      b.ns.ip("-6", "addr", "show", "dev", "eth0", "scope", "global") as {
        addr_info: { local: string }[];
      }[]
    )[0]?.addr_info[0]?.local;
    expect(firstOfB).toBe("fd00:51::22");
    startDaemon(a);
    startDaemon(b, { FLANNELD_PUBLIC_IPV6: b.ip6 });
    await until("both subnet.env files", () => nodes.every((n) => existsSync(n.env)));
    const [sa, sb] = [subnetsOf(a), subnetsOf(b)];
    expect(sa[0]).not.toBe(sb[0]);
    expect(sa[1]).not.toBe(sb[1]);
    // flanneld's subnet.env, in its order; one MTU (underlay − 50) as flanneld writes
    expect(readFileSync(a.env, "utf8")).toBe(
      `FLANNEL_NETWORK=10.246.0.0/16\nFLANNEL_SUBNET=${sa[0]}.1/24\n` +
        `FLANNEL_IPV6_NETWORK=fd00:10::/56\nFLANNEL_IPV6_SUBNET=${sa[1]}::1/64\n` +
        "FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
    );

    for (const n of nodes) {
      const [l6] = n.ns.ip("-d", "link", "show", `flannel-v6.${VNI}`) as VxlanLink[];
      const [l4] = n.ns.ip("-d", "link", "show", `flannel.${VNI}`) as VxlanLink[];
      expect(l6?.linkinfo.info_kind).toBe("vxlan");
      expect(l6?.linkinfo.info_data).toMatchObject({
        id: VNI,
        local6: n.ip6,
        link: "eth0",
        port: 8472,
        learning: false,
      });
      // VXLAN over IPv6: 70 bytes of headers on the 1500-byte underlay (over IPv4: 50)
      expect(l6?.mtu).toBe(1430);
      expect(l4?.mtu).toBe(1450);
      const [, s6] = subnetsOf(n);
      const addrs = (
        n.ns.ip("-6", "addr", "show", "dev", `flannel-v6.${VNI}`, "scope", "global") as {
          addr_info: { local: string; prefixlen: number }[];
        }[]
      )[0]?.addr_info
        .filter((x) => x.local)
        .map((x) => `${x.local}/${x.prefixlen}`);
      expect(addrs).toEqual([`${s6}::/128`]);
      // the lease in etcd names both subnets and carries the flannel-v6 MAC and public IPv6 address
      const [s4] = subnetsOf(n);
      const got = await etcdctl("get", "--print-value-only", `${PREFIX}/subnets/${s4}.0-24&${s6}::-64`);
      const value = JSON.parse(got.stdout) as {
        PublicIPv6: string;
        BackendV6Data: { VNI: number; VtepMAC: string };
      };
      expect(value.PublicIPv6).toBe(n.ip6);
      expect(value.BackendV6Data).toEqual({ VNI, VtepMAC: l6?.address ?? "" });
    }

    // each node: a route to the other's IPv6 subnet via its network address, onlink, on flannel-v6;
    // the neighbour is the other's flannel-v6 MAC, the fdb entry sends to its public IPv6 address
    const v6mac = (n: Node) =>
      (n.ns.ip("link", "show", `flannel-v6.${VNI}`) as { address: string }[])[0]?.address;
    for (const [n, peer, ps] of [
      [a, b, sb],
      [b, a, sa],
    ] as const) {
      await until(`${n.ns.name}'s IPv6 route to its peer`, () =>
        (n.ns.ip("-6", "route", "show", "dev", `flannel-v6.${VNI}`) as { dst: string }[]).some(
          (r) => r.dst === `${ps[1]}::/64`,
        ),
      );
      const routes = (
        n.ns.ip("-6", "route", "show", "dev", `flannel-v6.${VNI}`) as {
          dst: string;
          gateway?: string;
          flags: string[];
        }[]
      ).filter((r) => r.gateway);
      expect(routes).toEqual([
        expect.objectContaining({ dst: `${ps[1]}::/64`, gateway: `${ps[1]}::`, flags: ["onlink"] }),
      ]);
      const neigh = n.ns.ip("-6", "neigh", "show", "dev", `flannel-v6.${VNI}`) as {
        dst: string;
        lladdr: string;
        state: string[];
      }[];
      expect(neigh.filter((x) => x.state.includes("PERMANENT"))).toEqual([
        expect.objectContaining({ dst: `${ps[1]}::`, lladdr: v6mac(peer) }),
      ]);
      const fdb = n.ns.bridge("fdb", "show", "dev", `flannel-v6.${VNI}`) as { mac: string; dst?: string }[];
      expect(fdb.filter((f) => f.dst)).toEqual([
        expect.objectContaining({ mac: v6mac(peer), dst: peer.ip6 }),
      ]);
    }
    // --ip-masq: flanneld's IPv6 table for the IPv6 lease too
    const masq6 = a.ns
      .run(["nft", "list", "chain", "ip6", "flannel-ipv6", "postrtg"])
      .stdout.split("\n")
      .map((l) => l.trim())
      .filter((l) => /return$|masquerade/.test(l));
    expect(masq6).toContain(`ip6 saddr ${sa[1]}::/64 ip6 daddr fd00:10::/56 return`);
    expect(masq6).toContain("ip6 saddr fd00:10::/56 ip6 daddr != ff00::/8 masquerade fully-random");

    // a pod per node through kubelet's flow on the flannel conflist (bridge + host-local, both ranges)
    const bin = flannelPluginDir(dir);
    const pod6: string[] = [];
    for (const [i, n] of nodes.entries()) {
      const pod = makeNetns(`n6p${i + 1}`);
      n.pod = pod;
      const up = podUp({
        nodeNetns: n.ns.path,
        podNetns: pod.path,
        dir,
        index: i,
        subnetFile: n.env,
        bin,
        pod: `default/v6-${i}`,
        sandboxID: `sb6${i}`,
      });
      expect(up.code, up.stderr).toBe(0);
      const ips = up.ips;
      const ip6 = ips.find((x) => x.includes(":")) ?? "";
      expect(ip6.startsWith(`${subnetsOf(n)[1]}::`)).toBe(true);
      pod6.push(ip6);
    }
    await until("pod A reaches pod B over IPv6", () => ping6(a.pod!, pod6[1] ?? "").code === 0);
    expect(ping6(b.pod!, pod6[0] ?? "").code).toBe(0);
    // the MTU over the IPv6 overlay: a 1430-byte IPv6 packet (1382 of ICMP payload) crosses unfragmented;
    // one byte more gets a Packet Too Big from node A naming flannel-v6's 1430
    expect(ping6(a.pod!, pod6[1] ?? "", "-M", "do", "-s", "1382").code).toBe(0);
    const big = ping6(a.pod!, pod6[1] ?? "", "-M", "do", "-s", "1383");
    expect(big.code).not.toBe(0);
    expect(big.stdout + big.stderr).toMatch(/mtu[= ]1430/i);

    for (const n of nodes) expect(await stopDaemon(n)).toBe(0);
    // a clean stop: both masquerade tables gone, the overlay stays
    expect(a.ns.run(["nft", "list", "table", "ip6", "flannel-ipv6"]).code).not.toBe(0);
    expect(ping6(a.pod!, pod6[1] ?? "").code).toBe(0);
  }, 120_000);
});
