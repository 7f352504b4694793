/**
 * Neighbour (ARP / NDP) entries (vishvananda/netlink neigh_linux.go): add, replace, delete, list; and
 * the bridge/vxlan forwarding database (AF_BRIDGE entries, `bridge fdb`).
 */

import { afOf, type IpVersion, invalid, linkName, parseIp, versionOfAf } from "./addr.ts";
import {
  type Attr,
  attr,
  bytesToIp,
  bytesToMac,
  macToBytes,
  NLM_F_CREATE,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  parseAttrs,
  struct,
  structView,
} from "./codec.ts";
import type { NetlinkSocket } from "./socket.ts";

export const RTM_NEWNEIGH = 28;
export const RTM_DELNEIGH = 29;
export const RTM_GETNEIGH = 30;

const NDA_DST = 1;
const NDA_LLADDR = 2;

/** Neighbour states (NUD_*). */
export const NUD = {
  none: 0x00,
  incomplete: 0x01,
  reachable: 0x02,
  stale: 0x04,
  delay: 0x08,
  probe: 0x10,
  failed: 0x20,
  noarp: 0x40,
  permanent: 0x80,
} as const;
export type NeighStateName = keyof typeof NUD;

/** Neighbour flags (NTF_*). */
export const NTF = {
  use: 0x01,
  self: 0x02,
  master: 0x04,
  proxy: 0x08,
  extLearned: 0x10,
  offloaded: 0x20,
  router: 0x80,
} as const;

export interface NeighOptions {
  index: number;
  /** Name of the link, used only in error messages. */
  devName?: string;
  ip: string;
  /** Link-layer address; needed for add/replace of a resolved entry. */
  mac?: string;
  /** Default "permanent" (what `ip neigh add` does). */
  state?: NeighStateName | number;
  /** NTF_* bits. */
  flags?: number;
}

export interface NeighInfo {
  index: number;
  version: IpVersion;
  ip: string;
  mac?: string;
  /** NUD_* bits. */
  state: number;
  /** NTF_* bits. */
  flags: number;
  type: number;
}

function ndmsg(af: number, index: number, state: number, flags: number): Uint8Array {
  return struct(12, (v) => {
    v.setUint8(0, af);
    v.setInt32(4, index, true);
    v.setUint16(8, state, true);
    v.setUint8(10, flags);
  });
}

function neighOp(verb: string, o: NeighOptions): string {
  const prep = verb === "deleting" ? "from" : "on";
  return `${verb} neighbour ${o.ip}${o.mac ? ` lladdr ${o.mac}` : ""} ${prep} ${linkName(o.index, o.devName)}`;
}

function neighMessage(o: NeighOptions, op: string, del: boolean): { header: Uint8Array; attrs: Attr[] } {
  const ip = parseIp(o.ip, op);
  let state = 0;
  if (!del) {
    const s = o.state ?? "permanent";
    if (typeof s === "number") state = s;
    else {
      const n = NUD[s];
      if (n === undefined) throw invalid(op, `unknown neighbour state ${JSON.stringify(s)}`);
      state = n;
    }
  }
  const attrs: Attr[] = [attr.bytes(NDA_DST, ip.bytes)];
  if (o.mac !== undefined && !del) {
    let mac: Uint8Array;
    try {
      mac = macToBytes(o.mac);
    } catch {
      throw invalid(op, `invalid MAC address ${JSON.stringify(o.mac)}`);
    }
    attrs.push(attr.bytes(NDA_LLADDR, mac));
  }
  return { header: ndmsg(afOf(ip.version), o.index, state, o.flags ?? 0), attrs };
}

/** `ip neigh add`: EEXIST if an entry for the address exists. */
export function neighAdd(sock: NetlinkSocket, o: NeighOptions): void {
  const op = neighOp("adding", o);
  const { header, attrs } = neighMessage(o, op, false);
  sock.request(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_EXCL, header, attrs, op);
}

/** `ip neigh replace`. */
export function neighReplace(sock: NetlinkSocket, o: NeighOptions): void {
  const op = neighOp("replacing", o);
  const { header, attrs } = neighMessage(o, op, false);
  sock.request(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, header, attrs, op);
}

/** `ip neigh del`: ENOENT if there is no such entry. */
export function neighDel(sock: NetlinkSocket, o: NeighOptions): void {
  const op = neighOp("deleting", o);
  const { header, attrs } = neighMessage(o, op, true);
  sock.request(RTM_DELNEIGH, 0, header, attrs, op);
}

export interface NeighListOptions {
  index?: number;
  version?: IpVersion;
}

/** `ip neigh show`: IPv4 (ARP) and IPv6 (NDP) entries; bridge fdb entries are left out. */
export function neighList(sock: NetlinkSocket, o: NeighListOptions = {}): NeighInfo[] {
  const af = o.version === undefined ? 0 : afOf(o.version);
  const out: NeighInfo[] = [];
  for (const m of sock.dump(RTM_GETNEIGH, ndmsg(af, 0, 0, 0), [], "listing neighbours")) {
    if (m.type !== RTM_NEWNEIGH) continue;
    const h = structView(m.data);
    const version = versionOfAf(h.getUint8(0));
    if (!version) continue;
    const index = h.getInt32(4, true);
    if (o.index !== undefined && index !== o.index) continue;
    if (o.version !== undefined && version !== o.version) continue;
    const attrs = parseAttrs(m.data.subarray(12));
    const dst = attrs.get(NDA_DST);
    if (!dst) continue;
    const n: NeighInfo = {
      index,
      version,
      ip: bytesToIp(dst),
      state: h.getUint16(8, true),
      flags: h.getUint8(10),
      type: h.getUint8(11),
    };
    const ll = attrs.get(NDA_LLADDR);
    if (ll && ll.byteLength > 0) n.mac = bytesToMac(ll);
    out.push(n);
  }
  return out;
}

// ---- bridge forwarding database (AF_BRIDGE neighbours): `bridge fdb` ----

const AF_BRIDGE = 7;

export interface FdbOptions {
  /** The device the entry is on (a vxlan device for an overlay's remote VTEPs). */
  index: number;
  devName?: string;
  mac: string;
  /** Remote underlay IP (NDA_DST), for a vxlan device. */
  dst?: string;
  /** Default "permanent". */
  state?: NeighStateName;
  /** NTF_* bits; default NTF_SELF (the device's own table, as `bridge fdb … self`). */
  flags?: number;
}

export interface FdbInfo {
  index: number;
  mac: string;
  dst?: string;
  state: number;
  flags: number;
}

function fdbOp(verb: string, o: FdbOptions): string {
  return `${verb} fdb entry ${o.mac}${o.dst ? ` dst ${o.dst}` : ""} on ${linkName(o.index, o.devName)}`;
}

function fdbMessage(o: FdbOptions, op: string, del: boolean): { header: Uint8Array; attrs: Attr[] } {
  let mac: Uint8Array;
  try {
    mac = macToBytes(o.mac);
  } catch {
    throw invalid(op, `invalid MAC address ${JSON.stringify(o.mac)}`);
  }
  const attrs: Attr[] = [attr.bytes(NDA_LLADDR, mac)];
  if (o.dst !== undefined) attrs.push(attr.bytes(NDA_DST, parseIp(o.dst, op).bytes));
  const state = del ? 0 : NUD[o.state ?? "permanent"];
  return { header: ndmsg(AF_BRIDGE, o.index, state, o.flags ?? NTF.self), attrs };
}

/** `bridge fdb replace`. */
export function fdbReplace(sock: NetlinkSocket, o: FdbOptions): void {
  const op = fdbOp("replacing", o);
  const { header, attrs } = fdbMessage(o, op, false);
  sock.request(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, header, attrs, op);
}

/** `bridge fdb del`: ENOENT if there is no such entry. */
export function fdbDel(sock: NetlinkSocket, o: FdbOptions): void {
  const op = fdbOp("deleting", o);
  const { header, attrs } = fdbMessage(o, op, true);
  sock.request(RTM_DELNEIGH, 0, header, attrs, op);
}

/** `bridge fdb show dev`: the entries of one device (or all with index 0). */
export function fdbList(sock: NetlinkSocket, index = 0): FdbInfo[] {
  const out: FdbInfo[] = [];
  for (const m of sock.dump(RTM_GETNEIGH, ndmsg(AF_BRIDGE, index, 0, 0), [], "listing fdb entries")) {
    if (m.type !== RTM_NEWNEIGH) continue;
    const h = structView(m.data);
    if (h.getUint8(0) !== AF_BRIDGE) continue;
    const ifindex = h.getInt32(4, true);
    if (index && ifindex !== index) continue;
    const attrs = parseAttrs(m.data.subarray(12));
    const ll = attrs.get(NDA_LLADDR);
    if (!ll) continue;
    const e: FdbInfo = {
      index: ifindex,
      mac: bytesToMac(ll),
      state: h.getUint16(8, true),
      flags: h.getUint8(10),
    };
    const dst = attrs.get(NDA_DST);
    if (dst) e.dst = bytesToIp(dst);
    out.push(e);
  }
  return out;
}
