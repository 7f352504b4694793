/**
 * The VXLAN dataplane (src/overlay/vxlan.ts) on three "nodes" (throwaway netns joined by an underlay
 * bridge in a fourth), each with a "pod" behind it: pods reach each other across flannel.1 once every
 * node knows its peers, and a peer dropped from the list loses its route, neighbour and fdb entry.
 * Kernel state checked with `ip -j` and `bridge -j`.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { linkByName } from "../../src/netlink/link.ts";
import { ensureVtep, type Peer, syncPeers, vtepName } from "../../src/overlay/vxlan.ts";
import { cleanupAll, makeNetns, type TempNetns } from "../helpers/netns.ts";

afterAll(() => cleanupAll());

function sh(n: TempNetns, ...cmd: string[]): void {
  const r = n.run(cmd);
  if (r.code !== 0) throw new Error(`${cmd.join(" ")} in ${n.name}: ${r.stderr}`);
}

interface Node {
  ns: TempNetns;
  pod: TempNetns;
  publicIP: string;
  subnet: string;
  podIP: string;
}

const VNI = 1;
const DEV = vtepName(VNI);

function makeNodes(count: number): Node[] {
  const underlay = makeNetns("ou");
  sh(underlay, "ip", "link", "add", "br0", "type", "bridge");
  sh(underlay, "ip", "link", "set", "br0", "up");
  const nodes: Node[] = [];
  for (let i = 1; i <= count; i++) {
    const ns = makeNetns(`on${i}`);
    const pod = makeNetns(`op${i}`);
    sh(underlay, "ip", "link", "add", `u${i}`, "type", "veth", "peer", "name", "eth0", "netns", ns.name);
    sh(underlay, "ip", "link", "set", `u${i}`, "master", "br0", "up");
    sh(ns, "ip", "addr", "add", `192.168.50.${i}/24`, "dev", "eth0");
    sh(ns, "ip", "link", "set", "eth0", "up");
    // the state a node is assumed to have, set here: forwarding on, no strict reverse-path filter
    for (const k of [
      "net.ipv4.ip_forward=1",
      "net.ipv4.conf.all.rp_filter=0",
      "net.ipv4.conf.default.rp_filter=0",
    ])
      sh(ns, "sysctl", "-qw", k);
    sh(ns, "ip", "link", "add", "cni0", "type", "veth", "peer", "name", "eth0", "netns", pod.name);
    sh(ns, "ip", "addr", "add", `10.244.${i}.1/24`, "dev", "cni0");
    sh(ns, "ip", "link", "set", "cni0", "up");
    sh(pod, "ip", "addr", "add", `10.244.${i}.2/24`, "dev", "eth0");
    sh(pod, "ip", "link", "set", "eth0", "up");
    sh(pod, "ip", "route", "add", "default", "via", `10.244.${i}.1`);
    nodes.push({ ns, pod, publicIP: `192.168.50.${i}`, subnet: `10.244.${i}.0/24`, podIP: `10.244.${i}.2` });
  }
  return nodes;
}

function vtep(n: Node) {
  const underlay = linkByName(n.ns.sock, "eth0");
  if (!underlay) throw new Error("no eth0");
  return ensureVtep(n.ns.sock, { vni: VNI, publicIP: n.publicIP, underlay, subnet: n.subnet });
}

function ping(from: TempNetns, ip: string): boolean {
  return from.run(["ping", "-c", "1", "-W", "1", ip]).code === 0;
}

describe("vxlan overlay dataplane", () => {
  test("three nodes: pods ping across flannel.1; a dropped peer's entries go; re-sync is idempotent", () => {
    const nodes = makeNodes(3);
    const devs = nodes.map(vtep);
    const peerOf = (i: number): Peer => ({
      subnet: nodes[i]!.subnet,
      publicIP: nodes[i]!.publicIP,
      vtepMAC: devs[i]!.mac,
    });
    for (const [i, n] of nodes.entries()) {
      const dev = devs[i]!;
      syncPeers(
        n.ns.sock,
        dev,
        nodes
          .map((_, j) => j)
          .filter((j) => j !== i)
          .map(peerOf),
      );
    }
    const n1 = nodes[0]!;
    const ip = (
      n1.ns.ip("-d", "link", "show", "dev", DEV) as {
        mtu: number;
        linkinfo: {
          info_kind: string;
          info_data: { id: number; local: string; port: number; learning: boolean };
        };
      }[]
    )[0];
    expect(ip?.linkinfo.info_kind).toBe("vxlan");
    expect(ip?.linkinfo.info_data).toMatchObject({
      id: 1,
      local: "192.168.50.1",
      port: 8472,
      learning: false,
    });
    expect(ip?.mtu).toBe(1450);
    expect(
      (
        n1.ns.ip("-4", "addr", "show", "dev", DEV) as { addr_info: { local: string; prefixlen: number }[] }[]
      )[0]?.addr_info,
    ).toEqual([expect.objectContaining({ local: "10.244.1.0", prefixlen: 32 })]);

    expect(ping(n1.pod, nodes[1]!.podIP)).toBe(true);
    expect(ping(n1.pod, nodes[2]!.podIP)).toBe(true);
    expect(ping(nodes[2]!.pod, nodes[1]!.podIP)).toBe(true);

    const routes = () =>
      (
        n1.ns.ip("-4", "route", "show", "dev", DEV) as { dst: string; gateway?: string; flags: string[] }[]
      ).map((r) => `${r.dst} via ${r.gateway} ${r.flags.join(",")}`);
    const neighs = () =>
      (n1.ns.ip("-4", "neigh", "show", "dev", DEV) as { dst: string; lladdr: string; state: string[] }[]).map(
        (x) => `${x.dst} ${x.lladdr} ${x.state.join(",")}`,
      );
    const fdb = () =>
      (
        JSON.parse(n1.ns.run(["bridge", "-j", "fdb", "show", "dev", DEV]).stdout) as {
          mac: string;
          dst?: string;
        }[]
      )
        .filter((f) => f.dst)
        .map((f) => `${f.mac} ${f.dst}`);
    expect(routes().sort()).toEqual([
      "10.244.2.0/24 via 10.244.2.0 onlink",
      "10.244.3.0/24 via 10.244.3.0 onlink",
    ]);
    expect(neighs().sort()).toEqual([
      `10.244.2.0 ${devs[1]!.mac} PERMANENT`,
      `10.244.3.0 ${devs[2]!.mac} PERMANENT`,
    ]);
    expect(fdb().sort()).toEqual([`${devs[1]!.mac} 192.168.50.2`, `${devs[2]!.mac} 192.168.50.3`].sort());

    // node 3's lease is gone: only node 2 stays
    const again = vtep(n1);
    expect(again.index).toBe(devs[0]!.index);
    expect(syncPeers(n1.ns.sock, again, [peerOf(1)])).toEqual({ added: 1, removed: 1 });
    expect(routes()).toEqual(["10.244.2.0/24 via 10.244.2.0 onlink"]);
    expect(neighs()).toEqual([`10.244.2.0 ${devs[1]!.mac} PERMANENT`]);
    expect(fdb()).toEqual([`${devs[1]!.mac} 192.168.50.2`]);
    expect(ping(n1.pod, nodes[2]!.podIP)).toBe(false);
    expect(ping(n1.pod, nodes[1]!.podIP)).toBe(true);
    // the same list again changes nothing
    expect(syncPeers(n1.ns.sock, again, [peerOf(1)])).toEqual({ added: 1, removed: 0 });
    expect(routes()).toEqual(["10.244.2.0/24 via 10.244.2.0 onlink"]);
  });

  test("a node whose lease changed keeps only its new address on flannel.1", () => {
    const [n] = makeNodes(1);
    const underlay = linkByName(n!.ns.sock, "eth0")!;
    ensureVtep(n!.ns.sock, { vni: VNI, publicIP: n!.publicIP, underlay, subnet: "10.244.7.0/24" });
    ensureVtep(n!.ns.sock, { vni: VNI, publicIP: n!.publicIP, underlay, subnet: "10.244.8.0/24" });
    const addrs = (n!.ns.ip("-4", "addr", "show", "dev", DEV) as { addr_info: { local: string }[] }[])[0]
      ?.addr_info;
    expect(addrs?.map((a) => a.local)).toEqual(["10.244.8.0"]);
  });
});
