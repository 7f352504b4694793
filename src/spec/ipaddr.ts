/**
 * IP address and CIDR parsing/printing with the semantics of Go's net package, which every other CNI
 * tool uses: IPv4 octets without leading zeros, no zones, IPv4-mapped IPv6 (::ffff:a.b.c.d) counts
 * as IPv4 and prints dotted, IPv6 prints in RFC 5952 form. Results round-trip through these so that
 * "2001:DB8::0001/64" comes back as "2001:db8::1/64", like upstream.
 */

/** 4 bytes for IPv4, 16 for IPv6 (IPv4-mapped addresses keep their 16 bytes, as in Go). */
export type IPBytes = Uint8Array;

export interface ParsedCIDR {
  /** The address as written (host bits kept), e.g. 10.1.2.3 of "10.1.2.3/24". */
  ip: IPBytes;
  /** Prefix length, counted in the printed family's bits (see formatCIDR). */
  prefix: number;
}

function parseIPv4(s: string): IPBytes | undefined {
  const parts = s.split(".");
  if (parts.length !== 4) return undefined;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    // Go rejects leading zeros since 1.17 (ambiguous octal).
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return undefined;
    const n = Number(p);
    if (n > 255) return undefined;
    out[i] = n;
  }
  return out;
}

function parseIPv6(s: string): IPBytes | undefined {
  const out = new Uint8Array(16);
  let head = s;
  let tail = "";
  const dbl = s.indexOf("::");
  if (dbl >= 0) {
    head = s.slice(0, dbl);
    tail = s.slice(dbl + 2);
    if (tail.includes("::")) return undefined;
  }
  const groups = (part: string): number[] | undefined => {
    if (part === "") return [];
    const words: number[] = [];
    const items = part.split(":");
    for (let i = 0; i < items.length; i++) {
      const item = items[i]!;
      if (i === items.length - 1 && item.includes(".")) {
        const v4 = parseIPv4(item);
        if (!v4) return undefined;
        words.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
        continue;
      }
      if (!/^[0-9a-fA-F]{1,4}$/.test(item)) return undefined;
      words.push(Number.parseInt(item, 16));
    }
    return words;
  };
  const h = groups(head);
  const t = groups(tail);
  if (!h || !t) return undefined;
  // An embedded IPv4 is only allowed at the very end.
  if (dbl >= 0 && head.includes(".")) return undefined;
  const total = h.length + t.length;
  if (dbl >= 0 ? total > 7 : total !== 8) return undefined;
  const words = [...h, ...new Array<number>(8 - total).fill(0), ...t];
  for (let i = 0; i < 8; i++) {
    out[i * 2] = words[i]! >> 8;
    out[i * 2 + 1] = words[i]! & 0xff;
  }
  return out;
}

/** Parses an IPv4 or IPv6 address like Go's net.ParseIP; undefined when invalid. */
export function parseIP(s: string): IPBytes | undefined {
  return s.includes(":") ? parseIPv6(s) : parseIPv4(s);
}

/** The 4-byte form of an IPv4 or IPv4-mapped address (Go's IP.To4), else undefined. */
export function toIPv4(ip: IPBytes): IPBytes | undefined {
  if (ip.length === 4) return ip;
  for (let i = 0; i < 10; i++) if (ip[i] !== 0) return undefined;
  if (ip[10] !== 0xff || ip[11] !== 0xff) return undefined;
  return ip.subarray(12);
}

/** 4 or 6, with IPv4-mapped IPv6 counting as 4 (as upstream's result conversions decide it). */
export function ipFamily(ip: IPBytes): 4 | 6 {
  return toIPv4(ip) ? 4 : 6;
}

/** Prints like Go's IP.String: dotted IPv4 (also for IPv4-mapped), RFC 5952 IPv6. */
export function formatIP(ip: IPBytes): string {
  const v4 = toIPv4(ip);
  if (v4) return `${v4[0]}.${v4[1]}.${v4[2]}.${v4[3]}`;
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push((ip[i]! << 8) | ip[i + 1]!);
  // Longest run of zero words (first one wins a tie), only when at least two long.
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (ws: number[]) => ws.map((w) => w.toString(16)).join(":");
  if (bestLen < 2) return hex(words);
  return `${hex(words.slice(0, bestStart))}::${hex(words.slice(bestStart + bestLen))}`;
}

/** Parses "addr/prefix" like Go's net.ParseCIDR (keeping the host address); undefined when invalid. */
export function parseCIDR(s: string): ParsedCIDR | undefined {
  const slash = s.indexOf("/");
  if (slash < 0) return undefined;
  const addr = s.slice(0, slash);
  const len = s.slice(slash + 1);
  const ip = parseIP(addr);
  if (!ip || !/^[0-9]{1,3}$/.test(len)) return undefined;
  const bits = addr.includes(":") ? 128 : 32;
  const prefix = Number(len);
  if (prefix > bits) return undefined;
  if (bits === 128 && toIPv4(ip)) {
    // Go prints an IPv4-mapped CIDR in IPv4 form with the mask's last 32 bits.
    return { ip, prefix: Math.max(0, prefix - 96) };
  }
  return { ip, prefix };
}

/** Prints a parsed CIDR the way Go's IPNet.String does. */
export function formatCIDR(c: ParsedCIDR): string {
  return `${formatIP(c.ip)}/${c.prefix}`;
}

/** The canonical text of an address, or undefined when it is not one. */
export function canonicalIP(s: string): string | undefined {
  const ip = parseIP(s);
  return ip ? formatIP(ip) : undefined;
}

/** The canonical text of a CIDR, or undefined when it is not one. */
export function canonicalCIDR(s: string): string | undefined {
  const c = parseCIDR(s);
  return c ? formatCIDR(c) : undefined;
}
