/**
 * IP arithmetic on bigint, shared by every allocator (host-local, whereabouts on etcd, the overlay's
 * subnet leases): an address is its family plus its value, so next/prev, comparisons and subnet bounds
 * are plain integer operations. Parsing and printing go through src/spec/ipaddr.ts (Go's net
 * semantics); IPv4-mapped IPv6 counts as IPv4, like upstream's canonicalizeIP.
 */
import { formatIP, type IPBytes, parseCIDR, parseIP, toIPv4 } from "../spec/ipaddr.ts";

export interface Addr {
  family: 4 | 6;
  value: bigint;
}

/** A subnet as written: `ip` keeps its host bits (Canonicalize rejects those separately). */
export interface Subnet {
  ip: Addr;
  prefix: number;
}

export function familyBits(family: 4 | 6): number {
  return family === 4 ? 32 : 128;
}

export function addrFromBytes(bytes: IPBytes): Addr {
  const v4 = toIPv4(bytes);
  const b = v4 ?? bytes;
  let value = 0n;
  for (const byte of b) value = (value << 8n) | BigInt(byte);
  return { family: v4 ? 4 : 6, value };
}

export function addrToBytes(a: Addr): IPBytes {
  const len = a.family === 4 ? 4 : 16;
  const out = new Uint8Array(len);
  let v = a.value;
  for (let i = len - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

/** Parses an address ("10.0.0.1", "fd00::1"); undefined when it is not one. */
export function parseAddr(s: string): Addr | undefined {
  const bytes = parseIP(s);
  return bytes ? addrFromBytes(bytes) : undefined;
}

/** Go's net.IP.String(): dotted IPv4, compressed lowercase IPv6. */
export function formatAddr(a: Addr): string {
  return formatIP(addrToBytes(a));
}

/** Parses "addr/prefix" keeping the host bits; undefined when invalid. */
export function parseSubnet(s: string): Subnet | undefined {
  const c = parseCIDR(s);
  if (!c) return undefined;
  return { ip: addrFromBytes(c.ip), prefix: c.prefix };
}

/**
 * Parses a CIDR as a network: the subnet with host bits cleared, the address as written, and whether
 * it had host bits (a range's implicit start). A mapped IPv4 CIDR ("::ffff:10.0.0.0/120") is IPv4 /24.
 */
export function parseNetwork(s: string): { net: Subnet; ip: Addr; hostBits: boolean } | undefined {
  const c = parseCIDR(s);
  if (!c) return undefined;
  const ip = addrFromBytes(c.ip);
  const prefix = ip.family === 4 && c.ip.length === 16 && c.prefix > 32 ? c.prefix - 96 : c.prefix;
  const mask = hostMask(ip.family, prefix);
  const net = { ip: { family: ip.family, value: ip.value & ~mask }, prefix };
  return { net, ip, hostBits: (ip.value & mask) !== 0n };
}

export function formatSubnet(s: Subnet): string {
  return `${formatAddr(s.ip)}/${s.prefix}`;
}

function hostMask(family: 4 | 6, prefix: number): bigint {
  return (1n << BigInt(familyBits(family) - prefix)) - 1n;
}

/** The network address (host bits cleared). */
export function networkAddr(s: Subnet): Addr {
  return { family: s.ip.family, value: s.ip.value & ~hostMask(s.ip.family, s.prefix) };
}

/** The all-ones host address (the broadcast for IPv4). */
export function lastAddr(s: Subnet): Addr {
  return { family: s.ip.family, value: s.ip.value | hostMask(s.ip.family, s.prefix) };
}

/** The number of addresses in the subnet. */
export function subnetSize(s: Subnet): bigint {
  return 1n << BigInt(familyBits(s.ip.family) - s.prefix);
}

export function subnetContains(s: Subnet, a: Addr): boolean {
  return a.family === s.ip.family && networkAddr(s).value === (a.value & ~hostMask(a.family, s.prefix));
}

/** next/prev wrap around the family's address space, like upstream's ip.NextIP/PrevIP. */
export function nextAddr(a: Addr): Addr {
  const max = (1n << BigInt(familyBits(a.family))) - 1n;
  return { family: a.family, value: a.value === max ? 0n : a.value + 1n };
}

export function prevAddr(a: Addr): Addr {
  const max = (1n << BigInt(familyBits(a.family))) - 1n;
  return { family: a.family, value: a.value === 0n ? max : a.value - 1n };
}

export function addrEqual(a: Addr, b: Addr | undefined): boolean {
  return b !== undefined && a.family === b.family && a.value === b.value;
}

/** Orders by family (IPv4 first), then value. */
export function compareAddr(a: Addr, b: Addr): number {
  if (a.family !== b.family) return a.family - b.family;
  return a.value < b.value ? -1 : a.value > b.value ? 1 : 0;
}

/** Fixed-width hex of the address: etcd keys that sort in address order. */
export function addrHex(a: Addr): string {
  return a.value.toString(16).padStart(a.family === 4 ? 8 : 32, "0");
}

export function hexAddr(hex: string, family: 4 | 6): Addr {
  return { family, value: BigInt(`0x${hex}`) };
}
