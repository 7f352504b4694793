/**
 * Routes (vishvananda/netlink route_linux.go): add, replace, delete, list. Single-path routes only.
 * Defaults follow vishvananda, so ported plugins leave the same kernel state as upstream: table main,
 * scope universe, protocol boot, type unicast (unlike `ip route`, no automatic scope link for routes
 * without a gateway: pass `scope: "link"`).
 */
import { isErrno } from "../sys/errno.ts";
import {
  afOf,
  formatCidr,
  type IpVersion,
  invalid,
  linkName,
  maskBytes,
  parseCidr,
  parseIp,
  parseScope,
  SCOPE,
  type ScopeName,
  versionOfAf,
} from "./addr.ts";
import {
  type Attr,
  attr,
  bytesToIp,
  NLM_F_APPEND,
  NLM_F_CREATE,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  type NlMsg,
  parseAttrs,
  read,
  struct,
  structView,
} from "./codec.ts";
import type { NetlinkSocket } from "./socket.ts";

export const RTM_NEWROUTE = 24;
export const RTM_DELROUTE = 25;
export const RTM_GETROUTE = 26;

const RTA_DST = 1;
const RTA_OIF = 4;
const RTA_GATEWAY = 5;
const RTA_PRIORITY = 6;
const RTA_PREFSRC = 7;
const RTA_METRICS = 8;
const RTA_TABLE = 15;
const RTAX_MTU = 2;
const RTAX_ADVMSS = 8;

export const RTNH_F_ONLINK = 0x4;
const RTM_F_CLONED = 0x200;

export const RT_TABLE = { unspec: 0, default: 253, main: 254, local: 255 } as const;

export const RTN = {
  unspec: 0,
  unicast: 1,
  local: 2,
  broadcast: 3,
  anycast: 4,
  multicast: 5,
  blackhole: 6,
  unreachable: 7,
  prohibit: 8,
  throw: 9,
  nat: 10,
} as const;
export type RouteTypeName = keyof typeof RTN;

export const RTPROT = { unspec: 0, redirect: 1, kernel: 2, boot: 3, static: 4, dhcp: 16 } as const;
export type RouteProtocolName = keyof typeof RTPROT;

export interface RouteOptions {
  /** "10.0.0.0/8", "fd00::/64", "default" or "0.0.0.0/0"; host bits are cleared like Go's ParseCIDR. */
  dst: string;
  /** IP version, needed only for "default" without a gateway (defaults to 4). */
  version?: IpVersion;
  gw?: string;
  /** Output link index. */
  index?: number;
  /** Name of the link, used only in error messages. */
  devName?: string;
  /** Routing table, default main (254). */
  table?: number;
  scope?: ScopeName | number;
  protocol?: RouteProtocolName | number;
  type?: RouteTypeName | number;
  /** Metric (RTA_PRIORITY). */
  priority?: number;
  /** Preferred source address (RTA_PREFSRC). */
  src?: string;
  mtu?: number;
  advmss?: number;
  /** The gateway is on the link even if no prefix covers it. */
  onlink?: boolean;
}

export interface RouteInfo {
  version: IpVersion;
  /** Destination prefix; default routes are "0.0.0.0/0" and "::/0". */
  dst: string;
  gw?: string;
  index?: number;
  table: number;
  scope: number;
  protocol: number;
  type: number;
  /** Metric; 0 when the kernel sent none. */
  priority: number;
  src?: string;
  mtu?: number;
  advmss?: number;
  /** rtm_flags (RTNH_F_ONLINK…). */
  flags: number;
  onlink: boolean;
}

function named<T extends Record<string, number>>(
  map: T,
  v: keyof T | number,
  what: string,
  op: string,
): number {
  if (typeof v === "number") return v;
  const n = map[v];
  if (n === undefined) throw invalid(op, `unknown ${what} ${JSON.stringify(v)}`);
  return n;
}

function rtmsg(f: {
  af: number;
  dstLen: number;
  table: number;
  protocol: number;
  scope: number;
  type: number;
  flags: number;
}): Uint8Array {
  return struct(12, (v) => {
    v.setUint8(0, f.af);
    v.setUint8(1, f.dstLen);
    v.setUint8(4, f.table);
    v.setUint8(5, f.protocol);
    v.setUint8(6, f.scope);
    v.setUint8(7, f.type);
    v.setUint32(8, f.flags, true);
  });
}

function routeOp(verb: string, o: RouteOptions): string {
  let s = `${verb} route ${o.dst}`;
  if (o.gw) s += ` via ${o.gw}`;
  if (o.index !== undefined) s += ` dev ${linkName(o.index, o.devName)}`;
  if (o.table !== undefined && o.table !== RT_TABLE.main) s += ` table ${o.table}`;
  return s;
}

function routeMessage(o: RouteOptions, op: string, del: boolean): { header: Uint8Array; attrs: Attr[] } {
  const gw = o.gw === undefined ? undefined : parseIp(o.gw, op);
  let version: IpVersion = o.version ?? gw?.version ?? 4;
  let dstBytes: Uint8Array | undefined;
  let dstLen = 0;
  if (o.dst !== "default") {
    const d = parseCidr(o.dst, op);
    version = d.version;
    dstLen = d.prefixLen;
    // A zero-length prefix is the default route: the kernel wants no RTA_DST for it.
    if (dstLen > 0) dstBytes = maskBytes(d.bytes, dstLen);
  }
  if (gw && gw.version !== version) throw invalid(op, "gateway and destination families differ");
  const attrs: Attr[] = [];
  if (dstBytes) attrs.push(attr.bytes(RTA_DST, dstBytes));
  if (o.src !== undefined) {
    const src = parseIp(o.src, op);
    if (src.version !== version) throw invalid(op, "source and destination families differ");
    attrs.push(attr.bytes(RTA_PREFSRC, src.bytes));
  }
  if (gw) attrs.push(attr.bytes(RTA_GATEWAY, gw.bytes));
  if (o.index !== undefined) attrs.push(attr.u32(RTA_OIF, o.index));
  if (o.priority !== undefined) attrs.push(attr.u32(RTA_PRIORITY, o.priority));
  const metrics: Attr[] = [];
  if (o.mtu !== undefined) metrics.push(attr.u32(RTAX_MTU, o.mtu));
  if (o.advmss !== undefined) metrics.push(attr.u32(RTAX_ADVMSS, o.advmss));
  if (metrics.length) attrs.push(attr.nested(RTA_METRICS, metrics));
  // Tables above 255 only fit in RTA_TABLE; rtm_table is then RT_TABLE_UNSPEC.
  const table = o.table ?? RT_TABLE.main;
  if (table > 255) attrs.push(attr.u32(RTA_TABLE, table));
  // A delete matches on what is given: scope nowhere, protocol and type unspec mean "any" (as iproute2).
  const header = rtmsg({
    af: afOf(version),
    dstLen,
    table: table > 255 ? RT_TABLE.unspec : table,
    protocol:
      o.protocol !== undefined
        ? named(RTPROT, o.protocol, "protocol", op)
        : del
          ? RTPROT.unspec
          : RTPROT.boot,
    scope: o.scope !== undefined ? parseScope(o.scope, op) : del ? SCOPE.nowhere : SCOPE.universe,
    type: o.type !== undefined ? named(RTN, o.type, "route type", op) : del ? RTN.unspec : RTN.unicast,
    flags: o.onlink ? RTNH_F_ONLINK : 0,
  });
  return { header, attrs };
}

/** `ip route add`: EEXIST if the route exists, ENETUNREACH if the gateway is not reachable. */
export function routeAdd(sock: NetlinkSocket, o: RouteOptions): void {
  const op = routeOp("adding", o);
  const { header, attrs } = routeMessage(o, op, false);
  sock.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, header, attrs, op);
}

/**
 * `ip route append` (vishvananda's RouteAddEcmp): adds the route even when one with the same key
 * exists, as upstream's ConfigureIface does — a container on two networks gets two default routes.
 */
export function routeAppend(sock: NetlinkSocket, o: RouteOptions): void {
  const op = routeOp("adding", o);
  const { header, attrs } = routeMessage(o, op, false);
  sock.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_APPEND, header, attrs, op);
}

/** `ip route replace`. */
export function routeReplace(sock: NetlinkSocket, o: RouteOptions): void {
  const op = routeOp("replacing", o);
  const { header, attrs } = routeMessage(o, op, false);
  sock.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, header, attrs, op);
}

/** `ip route del`: ESRCH if no route matches. */
export function routeDel(sock: NetlinkSocket, o: RouteOptions): void {
  const op = routeOp("deleting", o);
  const { header, attrs } = routeMessage(o, op, true);
  sock.request(RTM_DELROUTE, 0, header, attrs, op);
}

export interface RouteListOptions {
  /** Table to list; default main. 0 lists every table. */
  table?: number;
  version?: IpVersion;
  /** Only routes out of this link. */
  index?: number;
}

/** `ip route show`: IPv4/IPv6 routes of one table (main by default), cache entries excluded. */
export function routeList(sock: NetlinkSocket, o: RouteListOptions = {}): RouteInfo[] {
  const table = o.table ?? RT_TABLE.main;
  const af = o.version === undefined ? 0 : afOf(o.version);
  // Strict-checking kernels filter on table and RTA_OIF; filter again for kernels without it.
  const attrs: Attr[] = [];
  if (table > 255) attrs.push(attr.u32(RTA_TABLE, table));
  if (o.index !== undefined) attrs.push(attr.u32(RTA_OIF, o.index));
  const header = rtmsg({
    af,
    dstLen: 0,
    table: table > 255 ? 0 : table,
    protocol: 0,
    scope: 0,
    type: 0,
    flags: 0,
  });
  let msgs: NlMsg[];
  try {
    msgs = sock.dump(RTM_GETROUTE, header, attrs, `listing routes of table ${table}`);
  } catch (err) {
    // Filtering on a table that does not exist yet: the kernel answers ENOENT.
    if (isErrno(err, "ENOENT")) return [];
    throw err;
  }
  const out: RouteInfo[] = [];
  for (const m of msgs) {
    if (m.type !== RTM_NEWROUTE) continue;
    const r = parseRoute(m.data);
    if (!r) continue;
    if (r.flags & RTM_F_CLONED) continue;
    if (table !== 0 && r.table !== table) continue;
    if (o.version !== undefined && r.version !== o.version) continue;
    if (o.index !== undefined && r.index !== o.index) continue;
    out.push(r);
  }
  return out;
}

function parseRoute(data: Uint8Array): RouteInfo | undefined {
  const h = structView(data);
  const version = versionOfAf(h.getUint8(0));
  if (!version) return undefined;
  const dstLen = h.getUint8(1);
  const attrs = parseAttrs(data.subarray(12));
  const flags = h.getUint32(8, true);
  const dst = attrs.get(RTA_DST);
  const tableAttr = attrs.get(RTA_TABLE);
  const r: RouteInfo = {
    version,
    dst: dst ? formatCidr(dst, dstLen) : version === 4 ? "0.0.0.0/0" : "::/0",
    table: tableAttr ? read.u32(tableAttr) : h.getUint8(4),
    protocol: h.getUint8(5),
    scope: h.getUint8(6),
    type: h.getUint8(7),
    priority: 0,
    flags,
    onlink: (flags & RTNH_F_ONLINK) !== 0,
  };
  const gw = attrs.get(RTA_GATEWAY);
  if (gw) r.gw = bytesToIp(gw);
  const oif = attrs.get(RTA_OIF);
  if (oif) r.index = read.u32(oif);
  const prio = attrs.get(RTA_PRIORITY);
  if (prio) r.priority = read.u32(prio);
  const src = attrs.get(RTA_PREFSRC);
  if (src) r.src = bytesToIp(src);
  const metrics = attrs.get(RTA_METRICS);
  if (metrics) {
    const mx = parseAttrs(metrics);
    const mtu = mx.get(RTAX_MTU);
    if (mtu) r.mtu = read.u32(mtu);
    const advmss = mx.get(RTAX_ADVMSS);
    if (advmss) r.advmss = read.u32(advmss);
  }
  return r;
}
