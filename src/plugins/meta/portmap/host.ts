/**
 * Host-side helpers of portmap, through netlink in the plugin's (host) netns:
 * - route_localnet on the interface that routes a container address (upstream getRoutableHostIF +
 *   enableLocalnetRouting), so 127.0.0.1:hostPort can be DNATed out of the host;
 * - deleting the UDP conntrack entries of the mapped host ports (upstream
 *   deletePortmapStaleConnections): an entry made before the mapping existed (or while it pointed
 *   elsewhere) would keep steering that flow's packets past the DNAT. One ctnetlink dump, filtered
 *   here, then one delete per matching entry.
 */

import { type Attr, attr, NLA_F_NESTED, parseAttrs, read, struct } from "../../../netlink/codec.ts";
import { linkByIndex } from "../../../netlink/link.ts";
import { NETLINK_NETFILTER, NetlinkSocket } from "../../../netlink/socket.ts";
import { sysctlGet, sysctlSet } from "../../../netlink/sysctl.ts";
import { SysError } from "../../../sys/errno.ts";

const RTM_GETROUTE = 26;
const RTA_DST = 1;
const RTA_OIF = 4;
const AF_INET = 2;
const AF_INET6 = 10;

/** `ip route get <ip>`: the name of the interface the host routes an IPv4 address out of. */
export function routeInterface(sock: NetlinkSocket, ip: string): string | undefined {
  const header = struct(12, (v) => {
    v.setUint8(0, AF_INET);
    v.setUint8(1, 32);
  });
  let reply: ReturnType<NetlinkSocket["get"]>;
  try {
    reply = sock.get(RTM_GETROUTE, header, [attr.ip(RTA_DST, ip)], `looking up the route to ${ip}`);
  } catch (err) {
    // No route: nothing to enable (upstream ignores RouteGet errors the same way).
    if (err instanceof SysError && (err.code === "ENETUNREACH" || err.code === "EHOSTUNREACH"))
      return undefined;
    throw err;
  }
  if (!reply) return undefined;
  const oif = parseAttrs(reply.data.subarray(12)).get(RTA_OIF);
  if (!oif) return undefined;
  return linkByIndex(sock, read.u32(oif))?.name;
}

/**
 * Sets net.ipv4.conf.<if>.route_localnet=1 on the interface routing `ip` (only writing when it is
 * not set yet); returns the interface, undefined when there is no route.
 */
export function enableLocalnetRouting(ip: string): string | undefined {
  const sock = NetlinkSocket.open();
  try {
    const ifName = routeInterface(sock, ip);
    if (ifName === undefined) return undefined;
    // Slashes: an interface name may contain dots.
    const key = `net/ipv4/conf/${ifName}/route_localnet`;
    if (sysctlGet(key) !== "1") sysctlSet(key, "1");
    return ifName;
  } finally {
    sock.close();
  }
}

// ---------------------------------------------------------------------------------------------------
// conntrack (linux/netfilter/nfnetlink_conntrack.h)

const NFNL_SUBSYS_CTNETLINK = 1;
const IPCTNL_MSG_CT_GET = 1;
const IPCTNL_MSG_CT_DELETE = 2;
const CTA_TUPLE_ORIG = 1;
const CTA_ZONE = 18;
const CTA_TUPLE_PROTO = 2;
const CTA_PROTO_NUM = 1;
const CTA_PROTO_DST_PORT = 3;
const IPPROTO_UDP = 17;

function nfgenmsg(family: number): Uint8Array {
  return struct(4, (v) => v.setUint8(0, family));
}

/**
 * Deletes the conntrack entries whose original direction is UDP to one of `ports` (per family).
 * Returns how many were deleted. Entries that vanish meanwhile are fine.
 */
export function deleteUdpConntrack(ports: { 4: readonly number[]; 6: readonly number[] }): number {
  if (ports[4].length === 0 && ports[6].length === 0) return 0;
  const sock = NetlinkSocket.open({ protocol: NETLINK_NETFILTER });
  try {
    const type = (op: number) => (NFNL_SUBSYS_CTNETLINK << 8) | op;
    // AF_UNSPEC dumps both families in one go.
    const entries = sock.dump(type(IPCTNL_MSG_CT_GET), nfgenmsg(0), [], "listing conntrack entries");
    let deleted = 0;
    for (const m of entries) {
      const family = m.data[0] === AF_INET6 ? 6 : m.data[0] === AF_INET ? 4 : 0;
      if (family === 0) continue;
      const attrs = parseAttrs(m.data.subarray(4));
      const orig = attrs.get(CTA_TUPLE_ORIG);
      const proto = orig && parseAttrs(orig).get(CTA_TUPLE_PROTO);
      if (!orig || !proto) continue;
      const p = parseAttrs(proto);
      const num = p.get(CTA_PROTO_NUM);
      const dport = p.get(CTA_PROTO_DST_PORT);
      if (!num || !dport || read.u8(num) !== IPPROTO_UDP || !ports[family].includes(read.be16(dport)))
        continue;
      const del: Attr[] = [{ type: CTA_TUPLE_ORIG | NLA_F_NESTED, value: orig }];
      const zone = attrs.get(CTA_ZONE);
      if (zone) del.push({ type: CTA_ZONE, value: zone });
      try {
        sock.request(type(IPCTNL_MSG_CT_DELETE), 0, nfgenmsg(m.data[0]!), del, "deleting a conntrack entry");
        deleted++;
      } catch (err) {
        if (!(err instanceof SysError && err.code === "ENOENT")) throw err;
      }
    }
    return deleted;
  } finally {
    sock.close();
  }
}
