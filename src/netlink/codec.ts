/**
 * Netlink message and attribute codec (the `nl` package of vishvananda/netlink, in TypeScript).
 * Everything is host byte order (little-endian on every platform we run on) except what the kernel
 * defines as network order (ports, some tc fields): those use the be16/be32 helpers.
 */

import { formatIP, parseIP } from "../spec/ipaddr.ts";

export const NLMSG_HDRLEN = 16;
export const NLA_HDRLEN = 4;
export const NLA_F_NESTED = 0x8000;
export const NLA_F_NET_BYTEORDER = 0x4000;
export const NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xffff;

// nlmsg types and flags
export const NLMSG_NOOP = 1;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const NLM_F_REQUEST = 0x1;
export const NLM_F_MULTI = 0x2;
export const NLM_F_ACK = 0x4;
export const NLM_F_ECHO = 0x8;
export const NLM_F_DUMP_INTR = 0x10;
export const NLM_F_ROOT = 0x100;
export const NLM_F_MATCH = 0x200;
export const NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH;
export const NLM_F_REPLACE = 0x100;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;
export const NLM_F_APPEND = 0x800;
// ack flags
export const NLM_F_CAPPED = 0x100;
export const NLM_F_ACK_TLVS = 0x200;
// extended ack attributes
export const NLMSGERR_ATTR_MSG = 1;

export function align4(n: number): number {
  return (n + 3) & ~3;
}

/** A received netlink message: header fields plus the payload after the 16-byte header. */
export interface NlMsg {
  type: number;
  flags: number;
  seq: number;
  pid: number;
  data: Uint8Array;
}

/** An attribute to encode: a leaf with bytes, or a nest of attributes. */
export interface Attr {
  type: number;
  value: Uint8Array | Attr[];
}

const enc = new TextEncoder();
const dec = new TextDecoder();

function le(size: number, write: (v: DataView) => void): Uint8Array {
  const b = new Uint8Array(size);
  write(new DataView(b.buffer));
  return b;
}

/** Attribute constructors. */
export const attr = {
  bytes: (type: number, value: Uint8Array): Attr => ({ type, value }),
  flag: (type: number): Attr => ({ type, value: new Uint8Array(0) }),
  u8: (type: number, n: number): Attr => ({ type, value: Uint8Array.of(n & 0xff) }),
  u16: (type: number, n: number): Attr => ({ type, value: le(2, (v) => v.setUint16(0, n, true)) }),
  u32: (type: number, n: number): Attr => ({ type, value: le(4, (v) => v.setUint32(0, n >>> 0, true)) }),
  s32: (type: number, n: number): Attr => ({ type, value: le(4, (v) => v.setInt32(0, n, true)) }),
  u64: (type: number, n: number | bigint): Attr => ({
    type,
    value: le(8, (v) => v.setBigUint64(0, BigInt(n), true)),
  }),
  be16: (type: number, n: number): Attr => ({ type, value: le(2, (v) => v.setUint16(0, n, false)) }),
  be32: (type: number, n: number): Attr => ({ type, value: le(4, (v) => v.setUint32(0, n >>> 0, false)) }),
  /** NUL-terminated string (IFLA_IFNAME, IFLA_INFO_KIND…). */
  str: (type: number, s: string): Attr => {
    const b = enc.encode(s);
    const v = new Uint8Array(b.length + 1);
    v.set(b);
    return { type, value: v };
  },
  ip: (type: number, address: string): Attr => ({ type, value: ipToBytes(address) }),
  mac: (type: number, mac: string): Attr => ({ type, value: macToBytes(mac) }),
  /** A nest; `flagNested` sets NLA_F_NESTED (some families, e.g. tc actions, do not want it). */
  nested: (type: number, children: Attr[], flagNested = false): Attr => ({
    type: flagNested ? type | NLA_F_NESTED : type,
    value: children,
  }),
};

function attrSize(a: Attr): number {
  if (a.value instanceof Uint8Array) return NLA_HDRLEN + a.value.byteLength;
  let n = NLA_HDRLEN;
  for (const c of a.value) n += align4(attrSize(c));
  return n;
}

function writeAttr(out: Uint8Array, view: DataView, off: number, a: Attr): number {
  const len = attrSize(a);
  view.setUint16(off, len, true);
  view.setUint16(off + 2, a.type, true);
  if (a.value instanceof Uint8Array) {
    out.set(a.value, off + NLA_HDRLEN);
  } else {
    let o = off + NLA_HDRLEN;
    for (const c of a.value) o = writeAttr(out, view, o, c);
  }
  return off + align4(len);
}

export function encodeAttrs(attrs: Attr[]): Uint8Array {
  let size = 0;
  for (const a of attrs) size += align4(attrSize(a));
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  let off = 0;
  for (const a of attrs) off = writeAttr(out, view, off, a);
  return out;
}

/** nlmsghdr + fixed family header (e.g. ifinfomsg) + attributes. */
export function encodeMessage(
  type: number,
  flags: number,
  seq: number,
  header: Uint8Array,
  attrs: Attr[] = [],
): Uint8Array {
  const body = encodeAttrs(attrs);
  const hlen = align4(header.byteLength);
  const len = NLMSG_HDRLEN + hlen + body.byteLength;
  const out = new Uint8Array(len);
  const v = new DataView(out.buffer);
  v.setUint32(0, len, true);
  v.setUint16(4, type, true);
  v.setUint16(6, flags, true);
  v.setUint32(8, seq, true);
  v.setUint32(12, 0, true);
  out.set(header, NLMSG_HDRLEN);
  out.set(body, NLMSG_HDRLEN + hlen);
  return out;
}

/** Splits a datagram into messages. */
export function parseMessages(buf: Uint8Array): NlMsg[] {
  const msgs: NlMsg[] = [];
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let off = 0;
  while (off + NLMSG_HDRLEN <= buf.byteLength) {
    const len = v.getUint32(off, true);
    if (len < NLMSG_HDRLEN || off + len > buf.byteLength) break;
    msgs.push({
      type: v.getUint16(off + 4, true),
      flags: v.getUint16(off + 6, true),
      seq: v.getUint32(off + 8, true),
      pid: v.getUint32(off + 12, true),
      data: buf.subarray(off + NLMSG_HDRLEN, off + len),
    });
    off += align4(len);
  }
  return msgs;
}

export interface RawAttr {
  type: number;
  value: Uint8Array;
}

/** Every attribute in order, type masked of NLA_F_NESTED/NET_BYTEORDER (for repeated attributes). */
export function parseAttrList(buf: Uint8Array): RawAttr[] {
  const out: RawAttr[] = [];
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let off = 0;
  while (off + NLA_HDRLEN <= buf.byteLength) {
    const len = v.getUint16(off, true);
    if (len < NLA_HDRLEN || off + len > buf.byteLength) break;
    out.push({
      type: v.getUint16(off + 2, true) & NLA_TYPE_MASK,
      value: buf.subarray(off + NLA_HDRLEN, off + len),
    });
    off += align4(len);
  }
  return out;
}

/** Attributes by type (the last one wins if repeated). */
export function parseAttrs(buf: Uint8Array): Map<number, Uint8Array> {
  const m = new Map<number, Uint8Array>();
  for (const a of parseAttrList(buf)) m.set(a.type, a.value);
  return m;
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

export const read = {
  u8: (b: Uint8Array): number => b[0] ?? 0,
  u16: (b: Uint8Array): number => view(b).getUint16(0, true),
  u32: (b: Uint8Array): number => view(b).getUint32(0, true),
  s32: (b: Uint8Array): number => view(b).getInt32(0, true),
  u64: (b: Uint8Array): bigint => view(b).getBigUint64(0, true),
  be16: (b: Uint8Array): number => view(b).getUint16(0, false),
  be32: (b: Uint8Array): number => view(b).getUint32(0, false),
  str: (b: Uint8Array): string => {
    const nul = b.indexOf(0);
    return dec.decode(nul >= 0 ? b.subarray(0, nul) : b);
  },
  ip: (b: Uint8Array): string => bytesToIp(b),
  mac: (b: Uint8Array): string => bytesToMac(b),
};

/** Small fixed-struct writer for family headers (ifinfomsg, rtmsg, tcmsg…). */
export function struct(size: number, fill: (v: DataView) => void): Uint8Array {
  return le(size, fill);
}

export function structView(b: Uint8Array): DataView {
  return view(b);
}

// ---- addresses ----

export function isIPv6(address: string): boolean {
  return address.includes(":");
}

/** 4 bytes for IPv4, 16 for IPv6 (Go's parsing rules, see src/spec/ipaddr.ts). */
export function ipToBytes(address: string): Uint8Array {
  const ip = parseIP(address);
  if (!ip) throw new Error(`invalid IP address ${address}`);
  return ip;
}

/** Formats like Go's net.IP.String(): dotted quad, or RFC 5952 compressed lowercase IPv6. */
export function bytesToIp(b: Uint8Array): string {
  return b.byteLength === 4 || b.byteLength === 16 ? formatIP(b) : "";
}

export function macToBytes(mac: string): Uint8Array {
  const parts = mac.split(/[:-]/);
  if (parts.length !== 6 || !parts.every((p) => /^[0-9a-fA-F]{2}$/.test(p))) {
    throw new Error(`invalid MAC address ${mac}`);
  }
  const out = new Uint8Array(6);
  for (let i = 0; i < 6; i++) out[i] = Number.parseInt(parts[i]!, 16);
  return out;
}

export function bytesToMac(b: Uint8Array): string {
  // A plain loop: a plugin is a short-lived process, and each JS-implemented builtin it touches
  // (spread, map…) is compiled on first use (~50–250 µs each, see docs/architecture.md).
  let s = "";
  for (let i = 0; i < b.length; i++) s += (i ? ":" : "") + (b[i]! < 16 ? "0" : "") + b[i]!.toString(16);
  return s;
}
