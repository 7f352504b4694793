/**
 * The VXLAN dataplane of the node network (issue 21), laid out as flannel's vxlan backend does it so a
 * node run by flanneld and one run by us reach each other:
 *
 *   flannel.<VNI>   vxlan id VNI, local = this node's public IP, dev = the underlay link, nolearning,
 *                   MTU = underlay − 50 (flannel-v6: − 70), address <subnet network>/32 (10.244.1.0/32)
 *   per peer node   route   <its subnet> via <its subnet network> dev flannel.<VNI> onlink
 *                   neigh   <its subnet network> lladdr <its VTEP MAC> PERMANENT
 *                   fdb     <its VTEP MAC> dst <its public IP> self permanent
 *
 * IPv6 (dual stack) has its own device, as in flannel: flannel-v6.<VNI>, local = the node's public IPv6
 * address, address <v6 subnet network>/128, and per peer the same three entries with the peer's IPv6
 * subnet, flannel-v6 MAC and public IPv6 address (VXLAN over the IPv6 underlay).
 *
 * syncPeers makes the device's routes, neighbours and fdb entries exactly the given peers': what a
 * lease watch delivers is applied by reconciling, so a missed event or a restart converges.
 */
import { addrDel, addrList, addrReplace } from "../netlink/addr.ts";
import { linkAdd, linkByName, linkSetUp } from "../netlink/link.ts";
import type { Link } from "../netlink/link-info.ts";
import { fdbDel, fdbList, fdbReplace, NUD, neighDel, neighList, neighReplace } from "../netlink/neigh.ts";
import { routeDel, routeList, routeReplace } from "../netlink/route.ts";
import type { NetlinkSocket } from "../netlink/socket.ts";

/** flannel's default VXLAN UDP port (the kernel's default too; IANA's is 4789). */
export const FLANNEL_VXLAN_PORT = 8472;
/**
 * What VXLAN adds to a packet: outer Ethernet 14 + IP + UDP 8 + VXLAN 8, so 50 over IPv4 (20) and 70
 * over IPv6 (40), the kernel's VXLAN_HEADROOM and VXLAN6_HEADROOM. flanneld asks for underlay − 50 on
 * both devices (device.go: `MTU: devAttrs.MTU - 50`); the kernel clamps flannel-v6's to underlay − 70,
 * so asking for that directly gives the same device.
 */
export const VXLAN_OVERHEAD = { 4: 50, 6: 70 } as const;

export interface VtepOptions {
  vni: number;
  port?: number;
  /** This node's public (underlay) IP: the tunnel's source. */
  publicIP: string;
  /** The underlay link that holds publicIP. */
  underlay: Link;
  /** This node's leased subnet ("10.244.1.0/24"); absent: the device is made (its MAC goes into the
   * lease) and gets its address once the lease is taken. */
  subnet?: string;
}

export interface Peer {
  /** The peer node's subnet ("10.244.2.0/24"). */
  subnet: string;
  publicIP: string;
  /** The MAC of the peer's flannel.<VNI> device (its lease's BackendData.VtepMAC). */
  vtepMAC: string;
}

export function vtepName(vni: number, family: 4 | 6 = 4): string {
  return family === 4 ? `flannel.${vni}` : `flannel-v6.${vni}`;
}

function familyOf(ip: string): 4 | 6 {
  return ip.includes(":") ? 6 : 4;
}

/** The network address of a subnet: "10.244.2.0/24" → "10.244.2.0". */
function networkOf(subnet: string): string {
  return subnet.split("/")[0] ?? subnet;
}

/** Makes (or finds) flannel.<VNI> (flannel-v6.<VNI> for an IPv6 publicIP) with this node's address, up. */
export function ensureVtep(sock: NetlinkSocket, o: VtepOptions): Link {
  const family = familyOf(o.publicIP);
  const name = vtepName(o.vni, family);
  let dev = linkByName(sock, name);
  if (!dev) {
    linkAdd(sock, {
      kind: "vxlan",
      name,
      vni: o.vni,
      port: o.port ?? FLANNEL_VXLAN_PORT,
      local: o.publicIP,
      parentIndex: o.underlay.index,
      learning: false,
      mtu: o.underlay.mtu - VXLAN_OVERHEAD[family],
    });
    dev = linkByName(sock, name);
    if (!dev) throw new Error(`creating ${name}: not found after creating it`);
  }
  if (o.subnet) setVtepSubnet(sock, dev, o.subnet);
  linkSetUp(sock, dev.index);
  return dev;
}

/**
 * The device's only address of the subnet's family becomes <subnet network>/32 (/128; IPv6 without
 * DAD, its link-local address kept): a changed lease leaves no old one.
 */
export function setVtepSubnet(sock: NetlinkSocket, dev: Link, subnet: string): void {
  const family = familyOf(subnet);
  const own = `${networkOf(subnet)}/${family === 4 ? 32 : 128}`;
  const stale = addrList(sock, { index: dev.index, version: family }).filter(
    (a) => a.address !== own && !a.ip.toLowerCase().startsWith("fe80:"),
  );
  addrReplace(sock, {
    index: dev.index,
    devName: dev.name,
    address: own,
    ...(family === 6 && { flags: { nodad: true } }),
  });
  for (const a of stale) addrDel(sock, { index: dev.index, devName: dev.name, address: a.address });
}

/**
 * Makes the device's peer state exactly `peers`: a route, a neighbour and an fdb entry per peer;
 * entries of nodes no longer listed (an expired or deleted lease) are removed. Returns what changed.
 */
export function syncPeers(
  sock: NetlinkSocket,
  dev: Link,
  peers: readonly Peer[],
  family: 4 | 6 = 4,
): { added: number; removed: number } {
  const want = new Map(peers.map((p) => [networkOf(p.subnet), p]));
  let added = 0;
  let removed = 0;
  for (const p of peers) {
    const gw = networkOf(p.subnet);
    neighReplace(sock, { index: dev.index, devName: dev.name, ip: gw, mac: p.vtepMAC, state: "permanent" });
    fdbReplace(sock, { index: dev.index, devName: dev.name, mac: p.vtepMAC, dst: p.publicIP });
    routeReplace(sock, { dst: p.subnet, gw, index: dev.index, devName: dev.name, onlink: true });
    added++;
  }
  const macs = new Set(peers.map((p) => p.vtepMAC.toLowerCase()));
  for (const r of routeList(sock, { index: dev.index, version: family })) {
    if (r.gw && !want.has(r.gw)) {
      routeDel(sock, { dst: r.dst, gw: r.gw, index: dev.index, devName: dev.name });
      removed++;
    }
  }
  for (const n of neighList(sock, { index: dev.index, version: family })) {
    if (n.state & NUD.permanent && !want.has(n.ip))
      neighDel(sock, { index: dev.index, devName: dev.name, ip: n.ip });
  }
  for (const f of fdbList(sock, dev.index)) {
    if (f.dst && !macs.has(f.mac.toLowerCase())) {
      fdbDel(sock, { index: dev.index, devName: dev.name, mac: f.mac, dst: f.dst });
    }
  }
  return { added, removed };
}
