/**
 * DHCPv4 messages (RFC 2131) and their options (RFC 2132, 3396, 3442, 3397): encoding, decoding and the
 * typed readers the client needs. Pure TypeScript, no I/O. Addresses are dotted-quad strings, option
 * values raw bytes keyed by code (a long option split over several instances is joined on decode and
 * split again on encode, RFC 3396).
 */

export const BOOTREQUEST = 1;
export const BOOTREPLY = 2;
const HTYPE_ETHERNET = 1;
export const MAGIC_COOKIE = 0x63825363;
/** op … file: the fixed part before the magic cookie. */
const FIXED_LEN = 236;
/** Requests are padded to BOOTP's 300 bytes: some relays and servers drop shorter ones. */
const BOOTP_MIN_LEN = 300;
export const FLAG_BROADCAST = 0x8000;

/** Option codes this client reads or writes. */
export const Opt = {
  Pad: 0,
  SubnetMask: 1,
  Router: 3,
  DomainNameServer: 6,
  HostName: 12,
  DomainName: 15,
  BroadcastAddress: 28,
  StaticRoutes: 33,
  RequestedIP: 50,
  LeaseTime: 51,
  Overload: 52,
  MessageType: 53,
  ServerIdentifier: 54,
  ParameterRequestList: 55,
  Message: 56,
  MaxMessageSize: 57,
  RenewalTime: 58,
  RebindingTime: 59,
  ClassIdentifier: 60,
  ClientIdentifier: 61,
  UserClass: 77,
  DomainSearch: 119,
  ClasslessStaticRoutes: 121,
  End: 255,
} as const;

export const MsgType = {
  Discover: 1,
  Offer: 2,
  Request: 3,
  Decline: 4,
  Ack: 5,
  Nak: 6,
  Release: 7,
  Inform: 8,
} as const;

const MSG_TYPE_NAMES: Record<number, string> = {
  1: "DHCPDISCOVER",
  2: "DHCPOFFER",
  3: "DHCPREQUEST",
  4: "DHCPDECLINE",
  5: "DHCPACK",
  6: "DHCPNAK",
  7: "DHCPRELEASE",
  8: "DHCPINFORM",
};

export function msgTypeName(t: number | undefined): string {
  return t === undefined ? "BOOTP" : (MSG_TYPE_NAMES[t] ?? `type ${t}`);
}

export interface DhcpMessage {
  op: number;
  htype: number;
  /** Hardware address, "aa:bb:cc:dd:ee:ff" (hlen bytes of chaddr). */
  chaddr: string;
  hops: number;
  xid: number;
  secs: number;
  flags: number;
  ciaddr: string;
  yiaddr: string;
  siaddr: string;
  giaddr: string;
  sname: string;
  file: string;
  /** Option code → value, in the order they are to be written (Pad and End are implicit). */
  options: Map<number, Uint8Array>;
}

export class DhcpDecodeError extends Error {
  constructor(what: string) {
    super(`malformed DHCP message: ${what}`);
    this.name = "DhcpDecodeError";
  }
}

// ---- address helpers ----

export function ipToBytes(ip: string): Uint8Array {
  const parts = ip.split(".");
  if (parts.length !== 4) throw new Error(`not an IPv4 address: ${ip}`);
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    const n = Number(p);
    if (!/^\d{1,3}$/.test(p) || n > 255) throw new Error(`not an IPv4 address: ${ip}`);
    out[i] = n;
  }
  return out;
}

export function bytesToIp(b: Uint8Array, at = 0): string {
  return `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
}

export function macToBytes(mac: string): Uint8Array {
  const parts = mac.split(":");
  if (parts.length < 1 || parts.length > 16 || parts.some((p) => !/^[0-9a-fA-F]{2}$/.test(p))) {
    throw new Error(`not a hardware address: ${mac}`);
  }
  return Uint8Array.from(parts.map((p) => Number.parseInt(p, 16)));
}

export function bytesToMac(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i++) s += (i ? ":" : "") + b[i]!.toString(16).padStart(2, "0");
  return s;
}

/** Prefix length of a contiguous netmask, or undefined when the mask has holes. */
export function maskToPrefix(mask: Uint8Array): number | undefined {
  let n = 0;
  let seenZero = false;
  for (const byte of mask) {
    for (let bit = 7; bit >= 0; bit--) {
      if (byte & (1 << bit)) {
        if (seenZero) return undefined;
        n++;
      } else seenZero = true;
    }
  }
  return n;
}

// ---- encoding ----

const enc = new TextEncoder();
const dec = new TextDecoder();

function writeFixedString(out: Uint8Array, at: number, len: number, s: string): void {
  const b = enc.encode(s);
  out.set(b.subarray(0, len), at);
}

/** Options area: each value split into ≤255-byte instances (RFC 3396), then End. */
function encodeOptions(options: Map<number, Uint8Array>): Uint8Array {
  const chunks: number[] = [];
  for (const [code, value] of options) {
    if (code === Opt.Pad || code === Opt.End) continue;
    if (value.length === 0) {
      chunks.push(code, 0);
      continue;
    }
    for (let at = 0; at < value.length; at += 255) {
      const part = value.subarray(at, at + 255);
      chunks.push(code, part.length, ...part);
    }
  }
  chunks.push(Opt.End);
  return Uint8Array.from(chunks);
}

export function encodeMessage(m: DhcpMessage): Uint8Array {
  const opts = encodeOptions(m.options);
  const len = Math.max(FIXED_LEN + 4 + opts.length, BOOTP_MIN_LEN);
  const out = new Uint8Array(len);
  const v = new DataView(out.buffer);
  const hw = macToBytes(m.chaddr);
  out[0] = m.op;
  out[1] = m.htype;
  out[2] = hw.length;
  out[3] = m.hops;
  v.setUint32(4, m.xid >>> 0);
  v.setUint16(8, m.secs);
  v.setUint16(10, m.flags);
  out.set(ipToBytes(m.ciaddr), 12);
  out.set(ipToBytes(m.yiaddr), 16);
  out.set(ipToBytes(m.siaddr), 20);
  out.set(ipToBytes(m.giaddr), 24);
  out.set(hw, 28);
  writeFixedString(out, 44, 64, m.sname);
  writeFixedString(out, 108, 128, m.file);
  v.setUint32(FIXED_LEN, MAGIC_COOKIE);
  out.set(opts, FIXED_LEN + 4);
  return out;
}

// ---- decoding ----

/** Appends the options of one area to `into` (values of repeated codes are concatenated). */
function parseOptionArea(b: Uint8Array, into: Map<number, Uint8Array>, requireEnd: boolean): void {
  let i = 0;
  while (i < b.length) {
    const code = b[i]!;
    if (code === Opt.Pad) {
      i++;
      continue;
    }
    if (code === Opt.End) return;
    if (i + 1 >= b.length) throw new DhcpDecodeError(`option ${code} has no length`);
    const len = b[i + 1]!;
    if (i + 2 + len > b.length) throw new DhcpDecodeError(`option ${code} runs past the end`);
    const value = b.subarray(i + 2, i + 2 + len);
    const prev = into.get(code);
    if (prev) {
      const joined = new Uint8Array(prev.length + value.length);
      joined.set(prev);
      joined.set(value, prev.length);
      into.set(code, joined);
    } else {
      into.set(code, value.slice());
    }
    i += 2 + len;
  }
  // Many servers pad instead of ending cleanly; only the main area must say End (RFC 2131 §4.1).
  if (requireEnd) throw new DhcpDecodeError("options do not end with option 255");
}

function readFixedString(b: Uint8Array, at: number, len: number): string {
  const area = b.subarray(at, at + len);
  const nul = area.indexOf(0);
  return dec.decode(nul < 0 ? area : area.subarray(0, nul));
}

export function decodeMessage(b: Uint8Array): DhcpMessage {
  if (b.length < FIXED_LEN + 4) throw new DhcpDecodeError(`${b.length} bytes is too short`);
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (v.getUint32(FIXED_LEN) !== MAGIC_COOKIE) throw new DhcpDecodeError("no magic cookie");
  const hlen = Math.min(b[2]!, 16);
  const options = new Map<number, Uint8Array>();
  parseOptionArea(b.subarray(FIXED_LEN + 4), options, false);
  const overload = options.get(Opt.Overload)?.[0] ?? 0;
  // Option overload (RFC 2132 §9.3): file first, then sname, both after the main area.
  if (overload & 1) parseOptionArea(b.subarray(108, 236), options, false);
  if (overload & 2) parseOptionArea(b.subarray(44, 108), options, false);
  return {
    op: b[0]!,
    htype: b[1]!,
    chaddr: bytesToMac(b.subarray(28, 28 + hlen)),
    hops: b[3]!,
    xid: v.getUint32(4),
    secs: v.getUint16(8),
    flags: v.getUint16(10),
    ciaddr: bytesToIp(b, 12),
    yiaddr: bytesToIp(b, 16),
    siaddr: bytesToIp(b, 20),
    giaddr: bytesToIp(b, 24),
    sname: overload & 2 ? "" : readFixedString(b, 44, 64),
    file: overload & 1 ? "" : readFixedString(b, 108, 128),
    options,
  };
}

// ---- building requests ----

export interface NewMessageOptions {
  xid: number;
  chaddr: string;
  type: number;
  ciaddr?: string;
  flags?: number;
  secs?: number;
  options?: [number, Uint8Array][];
}

/** A BOOTREQUEST of `type` (option 53 first, as RFC 2131 recommends). */
export function newRequest(o: NewMessageOptions): DhcpMessage {
  const options = new Map<number, Uint8Array>([[Opt.MessageType, Uint8Array.of(o.type)]]);
  for (const [code, value] of o.options ?? []) options.set(code, value);
  return {
    op: BOOTREQUEST,
    htype: HTYPE_ETHERNET,
    chaddr: o.chaddr,
    hops: 0,
    xid: o.xid >>> 0,
    secs: o.secs ?? 0,
    flags: o.flags ?? 0,
    ciaddr: o.ciaddr ?? "0.0.0.0",
    yiaddr: "0.0.0.0",
    siaddr: "0.0.0.0",
    giaddr: "0.0.0.0",
    sname: "",
    file: "",
    options,
  };
}

// ---- option value helpers ----

export function optU16(n: number): Uint8Array {
  return Uint8Array.of((n >> 8) & 0xff, n & 0xff);
}

export function optU32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n >>> 0);
  return b;
}

export function optString(s: string): Uint8Array {
  return enc.encode(s);
}

export function messageType(m: DhcpMessage): number | undefined {
  const v = m.options.get(Opt.MessageType);
  return v && v.length === 1 ? v[0] : undefined;
}

export function optIP(m: DhcpMessage, code: number): string | undefined {
  const v = m.options.get(code);
  return v && v.length >= 4 ? bytesToIp(v) : undefined;
}

export function optIPs(m: DhcpMessage, code: number): string[] {
  const v = m.options.get(code);
  const out: string[] = [];
  if (!v) return out;
  for (let i = 0; i + 4 <= v.length; i += 4) out.push(bytesToIp(v, i));
  return out;
}

export function optUint32(m: DhcpMessage, code: number): number | undefined {
  const v = m.options.get(code);
  return v && v.length === 4 ? new DataView(v.buffer, v.byteOffset, 4).getUint32(0) : undefined;
}

export function optText(m: DhcpMessage, code: number): string | undefined {
  const v = m.options.get(code);
  if (!v) return undefined;
  const nul = v.indexOf(0);
  return dec.decode(nul < 0 ? v : v.subarray(0, nul));
}

export interface StaticRoute {
  /** CIDR, e.g. "10.1.0.0/16". */
  dst: string;
  gw: string;
}

/** Option 121 (RFC 3442): width, the significant octets of the destination, the router. */
export function parseClasslessRoutes(v: Uint8Array): StaticRoute[] {
  const out: StaticRoute[] = [];
  let i = 0;
  while (i < v.length) {
    const width = v[i]!;
    if (width > 32) throw new DhcpDecodeError(`option 121: prefix length ${width}`);
    const octets = Math.ceil(width / 8);
    if (i + 1 + octets + 4 > v.length) throw new DhcpDecodeError("option 121 runs past its end");
    const dst = new Uint8Array(4);
    dst.set(v.subarray(i + 1, i + 1 + octets));
    out.push({ dst: `${bytesToIp(dst)}/${width}`, gw: bytesToIp(v, i + 1 + octets) });
    i += 1 + octets + 4;
  }
  return out;
}

export function encodeClasslessRoutes(routes: StaticRoute[]): Uint8Array {
  const out: number[] = [];
  for (const r of routes) {
    const [ip, len] = r.dst.split("/");
    const width = Number(len);
    out.push(width, ...ipToBytes(ip!).subarray(0, Math.ceil(width / 8)), ...ipToBytes(r.gw));
  }
  return Uint8Array.from(out);
}

/** The classful prefix of a destination (option 33 has no masks): A /8, B /16, C /24, else /32. */
function classfulPrefix(first: number): number {
  if (first < 128) return 8;
  if (first < 192) return 16;
  if (first < 224) return 24;
  return 32;
}

/** Option 33: destination/router pairs, destinations classful (upstream's parseRoutes). */
export function parseStaticRoutes(v: Uint8Array): StaticRoute[] {
  const out: StaticRoute[] = [];
  for (let i = 0; i + 8 <= v.length; i += 8) {
    out.push({ dst: `${bytesToIp(v, i)}/${classfulPrefix(v[i]!)}`, gw: bytesToIp(v, i + 4) });
  }
  return out;
}

/** Option 119 (RFC 3397): RFC 1035 names, with compression pointers into the option itself. */
export function parseDomainSearch(v: Uint8Array): string[] {
  const names: string[] = [];
  let i = 0;
  while (i < v.length) {
    const { name, next } = readName(v, i);
    names.push(name);
    i = next;
  }
  return names;
}

function readName(v: Uint8Array, start: number): { name: string; next: number } {
  const labels: string[] = [];
  let i = start;
  let next = -1;
  for (let hops = 0; hops < 128; hops++) {
    if (i >= v.length) throw new DhcpDecodeError("option 119: name runs past the end");
    const len = v[i]!;
    if (len === 0) {
      return { name: labels.join("."), next: next < 0 ? i + 1 : next };
    }
    if ((len & 0xc0) === 0xc0) {
      if (i + 1 >= v.length) throw new DhcpDecodeError("option 119: truncated pointer");
      if (next < 0) next = i + 2;
      i = ((len & 0x3f) << 8) | v[i + 1]!;
      continue;
    }
    if (i + 1 + len > v.length) throw new DhcpDecodeError("option 119: label runs past the end");
    labels.push(dec.decode(v.subarray(i + 1, i + 1 + len)));
    i += 1 + len;
  }
  throw new DhcpDecodeError("option 119: compression loop");
}

export function encodeDomainSearch(names: string[]): Uint8Array {
  const out: number[] = [];
  for (const n of names) {
    for (const label of n.split(".").filter((l) => l !== "")) {
      const b = enc.encode(label);
      out.push(b.length, ...b);
    }
    out.push(0);
  }
  return Uint8Array.from(out);
}
