/**
 * Set and map elements between nft's text ("10.0.0.5 . 10.0.0.0/16", "tcp . 8080", "10.0.0.5 . 80")
 * and the kernel's bytes, for the types the backends use. The backends plan in text — the same text
 * their `nft -f` scripts carry — and src/netlink/nftables.ts moves the bytes.
 *
 * Layout (what nft sends): a single-field key is the field's bytes; a concatenation pads every field
 * to 4 bytes (one 32-bit register each). Addresses and ports are big-endian, marks host-endian,
 * interface names NUL-padded to 16 bytes (written "br0" with the quotes, as nft prints them).
 * Interval maps of concatenations carry each element as a range: key = every field's first value,
 * keyEnd = every field's last ("10.0.0.0/16" → 10.0.0.0 … 10.0.255.255).
 */
import type { NftElemChange, NftSetElem } from "../netlink/nftables.ts";
import { CniError, ErrCode } from "../spec/errors.ts";
import { formatIP, parseIP } from "../spec/ipaddr.ts";

export type NftFieldType = "ipv4_addr" | "ipv6_addr" | "inet_proto" | "inet_service" | "mark" | "ifname";

export interface NftMapSchema {
  key: readonly NftFieldType[];
  /** Maps: the value's fields; absent for sets. */
  data?: readonly NftFieldType[];
  /** `flags interval`. */
  interval?: boolean;
}

/** An element in nft's text form. */
export interface TextElem {
  key: string;
  value?: string;
  comment?: string;
}

const SIZE: Record<NftFieldType, number> = {
  ipv4_addr: 4,
  ipv6_addr: 16,
  inet_proto: 1,
  inet_service: 2,
  mark: 4,
  ifname: 16,
};

const PROTOCOLS: Record<string, number> = { tcp: 6, udp: 17, sctp: 132 };
const PROTOCOL_NAMES: Record<number, string> = { 6: "tcp", 17: "udp", 132: "sctp" };

function bad(what: string): CniError {
  return new CniError(ErrCode.Internal, `nft element: ${what}`);
}

/** The first and last value of one field's text ("10.0.0.0/16", "10.0.0.1-10.0.0.9", "tcp", "80"). */
function fieldRange(type: NftFieldType, text: string): [Uint8Array, Uint8Array] {
  const size = SIZE[type];
  if (type === "ipv4_addr" || type === "ipv6_addr") {
    const [lo, hi] = ipRange(text, size);
    return [lo, hi];
  }
  if (type === "ifname") {
    // nft's text quotes names ("br0"); the kernel holds them NUL-padded to IFNAMSIZ.
    const name = text.startsWith('"') && text.endsWith('"') ? text.slice(1, -1) : text;
    const bytes = new TextEncoder().encode(name);
    if (bytes.length === 0 || bytes.length > 15)
      throw bad(`${JSON.stringify(text)} is not an interface name`);
    const b = new Uint8Array(16);
    b.set(bytes);
    return [b, b];
  }
  let n: number;
  if (type === "inet_proto" && Object.hasOwn(PROTOCOLS, text)) n = PROTOCOLS[text]!;
  else if (/^[0-9]+$/.test(text)) n = Number(text);
  else throw bad(`${JSON.stringify(text)} is not a ${type}`);
  const b = new Uint8Array(size);
  const v = new DataView(b.buffer);
  if (type === "inet_proto" && n <= 0xff) b[0] = n;
  else if (type === "inet_service" && n <= 0xffff) v.setUint16(0, n, false);
  else if (type === "mark" && n <= 0xffffffff) v.setUint32(0, n, true);
  else throw bad(`${text} is out of range for ${type}`);
  return [b, b];
}

function ipRange(text: string, size: number): [Uint8Array, Uint8Array] {
  const parse = (s: string) => {
    const ip = parseIP(s);
    const bytes = ip && (size === 4 ? (ip.length === 4 ? ip : undefined) : ip.length === 16 ? ip : undefined);
    if (!bytes) throw bad(`${JSON.stringify(s)} is not an IPv${size === 4 ? 4 : 6} address`);
    return new Uint8Array(bytes);
  };
  const dash = text.indexOf("-");
  if (dash > 0) return [parse(text.slice(0, dash)), parse(text.slice(dash + 1))];
  const slash = text.indexOf("/");
  if (slash < 0) {
    const ip = parse(text);
    return [ip, ip];
  }
  const lo = parse(text.slice(0, slash));
  const len = Number(text.slice(slash + 1));
  if (!Number.isInteger(len) || len < 0 || len > size * 8) throw bad(`bad prefix in ${text}`);
  const hi = new Uint8Array(lo);
  for (let i = 0; i < size; i++) {
    const bits = Math.min(8, Math.max(0, len - i * 8));
    const mask = (0xff << (8 - bits)) & 0xff;
    lo[i] = lo[i]! & mask;
    hi[i] = (lo[i]! | ~mask) & 0xff;
  }
  return [lo, hi];
}

/** The prefix length that spans lo…hi exactly, or undefined. */
function prefixOf(lo: Uint8Array, hi: Uint8Array): number | undefined {
  let len = 0;
  let i = 0;
  for (; i < lo.length && lo[i] === hi[i]; i++) len += 8;
  if (i === lo.length) return len;
  const x = lo[i]! ^ hi[i]!;
  // The differing bits must be a run of trailing ones: lo has them 0, hi 1.
  if ((x & (x + 1)) !== 0 || (lo[i]! & x) !== 0 || (hi[i]! & x) !== x) return undefined;
  len += 8 - Math.log2(x + 1);
  for (i++; i < lo.length; i++) if (lo[i] !== 0 || hi[i] !== 0xff) return undefined;
  return len;
}

function fieldText(type: NftFieldType, lo: Uint8Array, hi: Uint8Array): string {
  const v = new DataView(lo.buffer, lo.byteOffset, lo.byteLength);
  switch (type) {
    case "ipv4_addr":
    case "ipv6_addr": {
      if (lo.every((b, i) => b === hi[i])) return formatIP(lo);
      const p = prefixOf(lo, hi);
      return p === undefined ? `${formatIP(lo)}-${formatIP(hi)}` : `${formatIP(lo)}/${p}`;
    }
    case "inet_proto":
      return PROTOCOL_NAMES[lo[0]!] ?? String(lo[0]);
    case "inet_service":
      return String(v.getUint16(0, false));
    case "mark":
      return String(v.getUint32(0, true));
    case "ifname": {
      const end = lo.indexOf(0);
      return `"${new TextDecoder().decode(end < 0 ? lo : lo.subarray(0, end))}"`;
    }
  }
}

function splitParts(text: string, n: number): string[] {
  const parts = text.split(" . ").map((p) => p.trim());
  if (parts.length !== n) throw bad(`${JSON.stringify(text)} does not have ${n} part(s)`);
  return parts;
}

function stride(types: readonly NftFieldType[], t: NftFieldType): number {
  return types.length === 1 ? SIZE[t] : (SIZE[t] + 3) & ~3;
}

/** Encodes "a . b . c" of these types as [first, last] byte strings. */
function encodeFields(types: readonly NftFieldType[], text: string): [Uint8Array, Uint8Array] {
  const parts = splitParts(text, types.length);
  let total = 0;
  for (const t of types) total += stride(types, t);
  const lo = new Uint8Array(total);
  const hi = new Uint8Array(total);
  let off = 0;
  types.forEach((t, i) => {
    const [a, b] = fieldRange(t, parts[i]!);
    lo.set(a, off);
    hi.set(b, off);
    off += stride(types, t);
  });
  return [lo, hi];
}

function decodeFields(types: readonly NftFieldType[], lo: Uint8Array, hi: Uint8Array): string {
  const out: string[] = [];
  let off = 0;
  for (const t of types) {
    const size = SIZE[t];
    if (off + size > lo.length) throw bad(`key of ${lo.length} bytes is too short for ${types.join(" . ")}`);
    out.push(fieldText(t, lo.subarray(off, off + size), hi.subarray(off, off + size)));
    off += stride(types, t);
  }
  return out.join(" . ");
}

export function encodeElem(schema: NftMapSchema, e: TextElem): NftSetElem {
  const [key, keyEnd] = encodeFields(schema.key, e.key);
  const out: NftSetElem = { key };
  if (schema.interval) out.keyEnd = keyEnd;
  else if (!key.every((b, i) => b === keyEnd[i])) throw bad(`${e.key}: ranges need an interval set`);
  if (schema.data) {
    if (e.value === undefined) throw bad(`${e.key}: a map element needs a value`);
    out.data = encodeFields(schema.data, e.value)[0];
  }
  if (e.comment !== undefined) out.comment = e.comment;
  return out;
}

export function decodeElem(schema: NftMapSchema, e: NftSetElem): TextElem {
  const out: TextElem = { key: decodeFields(schema.key, e.key, e.keyEnd ?? e.key) };
  if (schema.data && e.data) out.value = decodeFields(schema.data, e.data, e.data);
  if (e.comment !== undefined) out.comment = e.comment;
  return out;
}

/**
 * Compare-and-delete of elements as netlink changes: "add {k : v}; delete {k}" each. The add aborts the
 * whole batch (EEXIST) if anyone changed the element since we read it.
 */
export function compareAndDelete(drops: readonly { set: string; elem: NftSetElem }[]): NftElemChange[] {
  const out: NftElemChange[] = [];
  for (const d of drops) {
    out.push({ kind: "add", set: d.set, elems: [d.elem] }, { kind: "delete", set: d.set, elems: [d.elem] });
  }
  return out;
}

/**
 * The same compare-and-delete as `nft -f` script lines: "add element <table> <set> { k : v }" (fails
 * the whole script if the element now has another value), then "delete element …". Without a value
 * (a plain set) just the delete, which fails the script if the element is gone.
 */
export function compareAndDeleteLines(
  table: string,
  set: string,
  key: string,
  value?: string | number,
): string[] {
  const del = `delete element ${table} ${set} { ${key} }`;
  return value === undefined ? [del] : [`add element ${table} ${set} { ${key} : ${value} }`, del];
}
