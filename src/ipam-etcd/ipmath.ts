/** Addresses as (family, bigint) for block arithmetic; parsing and printing through src/spec/ipaddr.ts. */
import { formatIP, parseCIDR, parseIP, toIPv4 } from "../spec/ipaddr.ts";

export interface Addr {
  family: 4 | 6;
  value: bigint;
}

export interface Subnet {
  /** The network address (host bits clear). */
  ip: Addr;
  prefix: number;
}

export function bits(family: 4 | 6): number {
  return family === 4 ? 32 : 128;
}

function fromBytes(b: Uint8Array): Addr {
  const v4 = toIPv4(b);
  let value = 0n;
  for (const byte of v4 ?? b) value = (value << 8n) | BigInt(byte);
  return { family: v4 ? 4 : 6, value };
}

export function parseAddr(s: string): Addr | undefined {
  const b = parseIP(s.trim());
  return b ? fromBytes(b) : undefined;
}

export function formatAddr(a: Addr): string {
  const len = a.family === 4 ? 4 : 16;
  const out = new Uint8Array(len);
  let v = a.value;
  for (let i = len - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return formatIP(out);
}

/** Parses a CIDR: the network, the address as written and whether it had host bits. */
export function parseSubnet(s: string): { net: Subnet; ip: Addr; hostBits: boolean } | undefined {
  const c = parseCIDR(s.trim());
  if (!c) return undefined;
  const ip = fromBytes(c.ip);
  const prefix = ip.family === 4 && c.ip.length === 16 && c.prefix > 32 ? c.prefix - 96 : c.prefix;
  const mask = (1n << BigInt(bits(ip.family) - prefix)) - 1n;
  const net = { ip: { family: ip.family, value: ip.value & ~mask }, prefix };
  return { net, ip, hostBits: (ip.value & mask) !== 0n };
}

export function subnetSize(s: Subnet): bigint {
  return 1n << BigInt(bits(s.ip.family) - s.prefix);
}

export function subnetFirst(s: Subnet): Addr {
  return s.ip;
}

export function subnetLast(s: Subnet): Addr {
  return { family: s.ip.family, value: s.ip.value + subnetSize(s) - 1n };
}

export function contains(s: Subnet, a: Addr): boolean {
  return a.family === s.ip.family && a.value >= s.ip.value && a.value < s.ip.value + subnetSize(s);
}

/** Fixed-width hex of the address: etcd keys that sort in address order. */
export function addrHex(a: Addr): string {
  return a.value.toString(16).padStart(a.family === 4 ? 8 : 32, "0");
}

export function hexAddr(hex: string, family: 4 | 6): Addr {
  return { family, value: BigInt(`0x${hex}`) };
}
