/**
 * IP addresses on links (vishvananda/netlink addr_linux.go): add, replace, delete, list, and waiting
 * for IPv6 duplicate address detection to finish (upstream ip.SettleAddresses).
 * Also home of the small address helpers the route, rule and neighbour modules share.
 */
import { SysError } from "../sys/errno.ts";
import { AF_INET, AF_INET6 } from "../sys/libc.ts";
import {
  type Attr,
  attr,
  bytesToIp,
  ipToBytes,
  NLM_F_CREATE,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  parseAttrs,
  read,
  struct,
  structView,
} from "./codec.ts";
import type { NetlinkSocket } from "./socket.ts";

export const RTM_NEWADDR = 20;
export const RTM_DELADDR = 21;
export const RTM_GETADDR = 22;

const IFA_ADDRESS = 1;
const IFA_LOCAL = 2;
const IFA_LABEL = 3;
const IFA_BROADCAST = 4;
const IFA_CACHEINFO = 6;
const IFA_FLAGS = 8;

/** Address flags (IFA_F_*), as in `AddrInfo.flags`. */
export const IFA_F = {
  SECONDARY: 0x01,
  NODAD: 0x02,
  OPTIMISTIC: 0x04,
  DADFAILED: 0x08,
  HOMEADDRESS: 0x10,
  DEPRECATED: 0x20,
  TENTATIVE: 0x40,
  PERMANENT: 0x80,
  MANAGETEMPADDR: 0x100,
  NOPREFIXROUTE: 0x200,
  MCAUTOJOIN: 0x400,
  STABLE_PRIVACY: 0x800,
} as const;

/** Route/address scopes (RT_SCOPE_*). */
export const SCOPE = { universe: 0, site: 200, link: 253, host: 254, nowhere: 255 } as const;
export type ScopeName = keyof typeof SCOPE;

/** An IP version: 4 or 6 (rather than AF_INET/AF_INET6 numbers). */
export type IpVersion = 4 | 6;

const EINVAL = 22;
const INFINITY_LIFE_TIME = 0xffffffff;

// ---- helpers shared by route.ts, rule.ts, neigh.ts ----

/** An EINVAL SysError: bad input is reported like a kernel refusal, with what was being done. */
export function invalid(op: string, detail: string): SysError {
  return new SysError(op, EINVAL, detail);
}

export function afOf(version: IpVersion): number {
  return version === 4 ? AF_INET : AF_INET6;
}

/** 4 or 6 for AF_INET/AF_INET6; undefined for other families (bridge fdb, multicast routing…). */
export function versionOfAf(af: number): IpVersion | undefined {
  return af === AF_INET ? 4 : af === AF_INET6 ? 6 : undefined;
}

/** Names the link in messages: the caller's name for it, or its index. */
export function linkName(index: number, devName?: string): string {
  return devName ?? `ifindex ${index}`;
}

export interface ParsedIp {
  version: IpVersion;
  bytes: Uint8Array;
}

export function parseIp(address: string, op: string): ParsedIp {
  try {
    const bytes = ipToBytes(address);
    return { version: bytes.length === 4 ? 4 : 6, bytes };
  } catch {
    throw invalid(op, `invalid IP address ${JSON.stringify(address)}`);
  }
}

export interface ParsedCidr extends ParsedIp {
  prefixLen: number;
}

/** "10.1.2.3/24" → bytes + prefix length. A bare address gets the full-length prefix. */
export function parseCidr(cidr: string, op: string): ParsedCidr {
  const slash = cidr.indexOf("/");
  const ip = parseIp(slash < 0 ? cidr : cidr.slice(0, slash), op);
  const max = ip.version === 4 ? 32 : 128;
  if (slash < 0) return { ...ip, prefixLen: max };
  const p = cidr.slice(slash + 1);
  const prefixLen = Number(p);
  if (!/^\d{1,3}$/.test(p) || prefixLen > max) throw invalid(op, `invalid prefix length in ${cidr}`);
  return { ...ip, prefixLen };
}

/** The bytes with host bits cleared (Go's net.ParseCIDR network). */
export function maskBytes(bytes: Uint8Array, prefixLen: number): Uint8Array {
  const out = new Uint8Array(bytes);
  for (let i = 0; i < out.length; i++) {
    const keep = Math.max(0, Math.min(8, prefixLen - i * 8));
    out[i] = (out[i] ?? 0) & ((0xff << (8 - keep)) & 0xff);
  }
  return out;
}

export function formatCidr(bytes: Uint8Array, prefixLen: number): string {
  return `${bytesToIp(bytes)}/${prefixLen}`;
}

export function parseScope(scope: ScopeName | number, op: string): number {
  if (typeof scope === "number") return scope;
  const n = SCOPE[scope];
  if (n === undefined) throw invalid(op, `unknown scope ${JSON.stringify(scope)}`);
  return n;
}

// ---- addresses ----

export interface AddrFlags {
  nodad?: boolean;
  noprefixroute?: boolean;
  homeaddress?: boolean;
}

export interface AddrOptions {
  /** Link index. */
  index: number;
  /** Name of the link, used only in error messages. */
  devName?: string;
  /** "10.1.2.3/24" or "fd00::2/64"; a bare address means /32 or /128. */
  address: string;
  /** Point-to-point peer ("10.1.2.1/24"): the prefix then belongs to the peer. */
  peer?: string;
  /** IPv4 broadcast; computed from the prefix when left out (prefixes shorter than /31), like upstream. */
  broadcast?: string;
  /** IPv4 label; like upstream it must start with the link's name (checked when devName is given). */
  label?: string;
  flags?: AddrFlags;
  /** Lifetimes in seconds; both default to forever. */
  validLft?: number;
  preferredLft?: number;
  scope?: ScopeName | number;
}

export interface AddrInfo {
  index: number;
  version: IpVersion;
  /** Local address with prefix, "10.1.2.3/24". */
  address: string;
  ip: string;
  prefixLen: number;
  /** Peer address with prefix, on point-to-point addresses. */
  peer?: string;
  broadcast?: string;
  label?: string;
  /** IFA_F_* bits. */
  flags: number;
  scope: number;
  tentative: boolean;
  dadfailed: boolean;
  /** Seconds; 0xffffffff is forever. */
  validLft: number;
  preferredLft: number;
}

function addrFlagBits(f: AddrFlags | undefined): number {
  let bits = 0;
  if (f?.nodad) bits |= IFA_F.NODAD;
  if (f?.noprefixroute) bits |= IFA_F.NOPREFIXROUTE;
  if (f?.homeaddress) bits |= IFA_F.HOMEADDRESS;
  return bits;
}

function ifaddrmsg(af: number, prefixLen: number, flags: number, scope: number, index: number): Uint8Array {
  return struct(8, (v) => {
    v.setUint8(0, af);
    v.setUint8(1, prefixLen);
    v.setUint8(2, flags & 0xff);
    v.setUint8(3, scope);
    v.setUint32(4, index, true);
  });
}

function addrMessage(o: AddrOptions, op: string, withExtras: boolean): { header: Uint8Array; attrs: Attr[] } {
  if (o.label && o.devName && !o.label.startsWith(o.devName)) {
    throw invalid(op, `label ${JSON.stringify(o.label)} must begin with the interface name`);
  }
  const local = parseCidr(o.address, op);
  const peer = o.peer === undefined ? undefined : parseCidr(o.peer, op);
  if (peer && peer.version !== local.version) throw invalid(op, "peer and address families differ");
  // With a peer the prefix belongs to the peer (iproute2 semantics), as in vishvananda.
  const prefixLen = peer ? peer.prefixLen : local.prefixLen;
  const flags = addrFlagBits(o.flags);
  const scope = o.scope === undefined ? 0 : parseScope(o.scope, op);
  const attrs: Attr[] = [
    attr.bytes(IFA_LOCAL, local.bytes),
    attr.bytes(IFA_ADDRESS, peer ? peer.bytes : local.bytes),
  ];
  if (withExtras) {
    // Flags above 8 bits (noprefixroute) only fit in IFA_FLAGS; send both like iproute2.
    if (flags) attrs.push(attr.u32(IFA_FLAGS, flags));
    if (local.version === 4) {
      if (o.broadcast !== undefined) {
        attrs.push(attr.bytes(IFA_BROADCAST, parseIp(o.broadcast, op).bytes));
      } else if (prefixLen < 31) {
        // RFC 3021: /31 and /32 have no broadcast address.
        const mask = maskBytes(Uint8Array.of(255, 255, 255, 255), prefixLen);
        const brd = local.bytes.map((b, i) => b | (~(mask[i] ?? 0) & 0xff));
        attrs.push(attr.bytes(IFA_BROADCAST, brd));
      }
      if (o.label) attrs.push(attr.str(IFA_LABEL, o.label));
    }
    if (o.validLft !== undefined || o.preferredLft !== undefined) {
      const valid = o.validLft ?? INFINITY_LIFE_TIME;
      const preferred = o.preferredLft ?? valid;
      attrs.push(
        attr.bytes(
          IFA_CACHEINFO,
          struct(16, (v) => {
            v.setUint32(0, preferred >>> 0, true);
            v.setUint32(4, valid >>> 0, true);
          }),
        ),
      );
    }
  }
  return { header: ifaddrmsg(afOf(local.version), prefixLen, flags, scope, o.index), attrs };
}

function addrOp(verb: string, o: AddrOptions): string {
  const prep = verb === "deleting" ? "from" : "to";
  return `${verb} address ${o.address} ${prep} ${linkName(o.index, o.devName)}`;
}

/** `ip addr add`: EEXIST if the address is already there. */
export function addrAdd(sock: NetlinkSocket, o: AddrOptions): void {
  const op = addrOp("adding", o);
  const { header, attrs } = addrMessage(o, op, true);
  sock.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, header, attrs, op);
}

/** `ip addr replace`: adds, or updates flags/lifetimes of an existing address. */
export function addrReplace(sock: NetlinkSocket, o: AddrOptions): void {
  const op = addrOp("replacing", o);
  const { header, attrs } = addrMessage(o, op, true);
  sock.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, header, attrs, op);
}

/** `ip addr del`: EADDRNOTAVAIL if the address is not on the link. */
export function addrDel(sock: NetlinkSocket, o: AddrOptions): void {
  const op = addrOp("deleting", o);
  const { header, attrs } = addrMessage(o, op, false);
  sock.request(RTM_DELADDR, 0, header, attrs, op);
}

export interface AddrListOptions {
  index?: number;
  version?: IpVersion;
}

/** `ip addr show`: every IPv4/IPv6 address, optionally of one link and one family. */
export function addrList(sock: NetlinkSocket, o: AddrListOptions = {}): AddrInfo[] {
  const af = o.version === undefined ? 0 : afOf(o.version);
  // With strict checking the kernel filters on ifa_index; filter again for kernels without it.
  const msgs = sock.dump(RTM_GETADDR, ifaddrmsg(af, 0, 0, 0, o.index ?? 0), [], "listing addresses");
  const out: AddrInfo[] = [];
  for (const m of msgs) {
    if (m.type !== RTM_NEWADDR) continue;
    const a = parseAddr(m.data);
    if (!a) continue;
    if (o.index !== undefined && a.index !== o.index) continue;
    if (o.version !== undefined && a.version !== o.version) continue;
    out.push(a);
  }
  return out;
}

function parseAddr(data: Uint8Array): AddrInfo | undefined {
  const h = structView(data);
  const version = versionOfAf(h.getUint8(0));
  if (!version) return undefined;
  const prefixLen = h.getUint8(1);
  const attrs = parseAttrs(data.subarray(8));
  const address = attrs.get(IFA_ADDRESS);
  const local = attrs.get(IFA_LOCAL);
  let flags = h.getUint8(2);
  const fl = attrs.get(IFA_FLAGS);
  if (fl) flags = read.u32(fl);
  // IPv6 sends only IFA_ADDRESS; IPv4 sends both, IFA_ADDRESS being the peer when they differ.
  const mine = local ?? address;
  if (!mine) return undefined;
  const ip = bytesToIp(mine);
  const info: AddrInfo = {
    index: h.getUint32(4, true),
    version,
    address: `${ip}/${prefixLen}`,
    ip,
    prefixLen,
    flags,
    scope: h.getUint8(3),
    tentative: (flags & IFA_F.TENTATIVE) !== 0,
    dadfailed: (flags & IFA_F.DADFAILED) !== 0,
    validLft: INFINITY_LIFE_TIME,
    preferredLft: INFINITY_LIFE_TIME,
  };
  if (local && address && bytesToIp(address) !== ip) info.peer = `${bytesToIp(address)}/${prefixLen}`;
  const brd = attrs.get(IFA_BROADCAST);
  if (brd) info.broadcast = bytesToIp(brd);
  const label = attrs.get(IFA_LABEL);
  if (label) info.label = read.str(label);
  const ci = attrs.get(IFA_CACHEINFO);
  if (ci && ci.byteLength >= 8) {
    info.preferredLft = read.u32(ci);
    info.validLft = read.u32(ci.subarray(4));
  }
  return info;
}

const DAD_POLL_MS = 50;

/**
 * Waits until no address on the link is tentative (IPv6 DAD done), like upstream ip.SettleAddresses.
 * Fails at once when DAD failed for an address, and after `timeoutMs` when some are still tentative.
 */
export async function waitForDad(
  sock: NetlinkSocket,
  index: number,
  timeoutMs: number,
  devName?: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const name = linkName(index, devName);
  for (;;) {
    const addrs = addrList(sock, { index });
    const failed = addrs.find((a) => a.dadfailed);
    if (failed) {
      throw new SysError(
        `waiting for DAD on ${name}`,
        99 /* EADDRNOTAVAIL */,
        `duplicate address detection failed for ${failed.address}`,
      );
    }
    const tentative = addrs.filter((a) => a.tentative);
    if (tentative.length === 0) return;
    if (Date.now() >= deadline) {
      throw new SysError(
        `waiting for DAD on ${name}`,
        110 /* ETIMEDOUT */,
        `still tentative after ${timeoutMs} ms: ${tentative.map((a) => a.address).join(", ")}`,
      );
    }
    await Bun.sleep(DAD_POLL_MS);
  }
}
