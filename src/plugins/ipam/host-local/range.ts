/**
 * Ranges and range sets, canonicalized like upstream's range.go / range_set.go: defaults for gateway,
 * rangeStart and rangeEnd, and the same rejections (too small, host bits, start/end outside the subnet,
 * mixed families, overlaps) with upstream's message texts.
 */

import {
  type Addr,
  addrEqual,
  compareAddr,
  familyBits,
  formatAddr,
  formatSubnet,
  lastAddr,
  networkAddr,
  nextAddr,
  parseAddr,
  parseSubnet,
  type Subnet,
  subnetContains,
} from "../../../ipam-common/ipmath.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import type { IPRange } from "../../../spec/types.ts";

export interface Range {
  /** The subnet, host bits zero. */
  subnet: Subnet;
  rangeStart: Addr;
  rangeEnd: Addr;
  gateway: Addr;
}

export type RangeSet = Range[];

function invalid(msg: string): CniError {
  return new CniError(ErrCode.InvalidNetworkConfig, msg);
}

function parseField(value: string | undefined, field: string): Addr | undefined {
  if (value === undefined || value === "") return undefined;
  const a = parseAddr(value);
  if (!a) throw invalid(`invalid ${field} "${value}": not an IP address`);
  return a;
}

/** Whether `a` lies in the subnet and between rangeStart and rangeEnd (inclusive). */
export function rangeContains(r: Range, a: Addr): boolean {
  return subnetContains(r.subnet, a) && compareAddr(a, r.rangeStart) >= 0 && compareAddr(a, r.rangeEnd) <= 0;
}

/**
 * Whether the allocator may hand out `a` from this range: inside it, not the gateway, not the network
 * address and (IPv4) not the broadcast — the last two only matter when rangeStart/rangeEnd name them.
 */
export function isAllocatable(r: Range, a: Addr): boolean {
  if (!rangeContains(r, a) || addrEqual(a, r.gateway)) return false;
  if (addrEqual(a, networkAddr(r.subnet))) return false;
  return !(a.family === 4 && addrEqual(a, lastAddr(r.subnet)));
}

/** How many addresses isAllocatable accepts. */
export function allocatableCount(r: Range): bigint {
  let n = r.rangeEnd.value - r.rangeStart.value + 1n;
  const excluded = [r.gateway, networkAddr(r.subnet)];
  if (r.subnet.ip.family === 4) excluded.push(lastAddr(r.subnet));
  const seen = new Set<bigint>();
  for (const e of excluded) {
    if (!seen.has(e.value) && rangeContains(r, e)) n--;
    seen.add(e.value);
  }
  return n;
}

export function rangeString(r: Range): string {
  return `${formatAddr(r.rangeStart)}-${formatAddr(r.rangeEnd)}`;
}

export function rangeSetString(s: RangeSet): string {
  return s.map(rangeString).join(",");
}

export function rangeSetContains(s: RangeSet, a: Addr): boolean {
  return s.some((r) => rangeContains(r, a));
}

/** The range of the set holding `a`, if any. */
export function rangeFor(s: RangeSet, a: Addr): Range | undefined {
  return s.find((r) => rangeContains(r, a));
}

function rangesOverlap(a: Range, b: Range): boolean {
  if (a.subnet.ip.family !== b.subnet.ip.family) return false;
  return (
    rangeContains(a, b.rangeStart) ||
    rangeContains(a, b.rangeEnd) ||
    rangeContains(b, a.rangeStart) ||
    rangeContains(b, a.rangeEnd)
  );
}

export function rangeSetsOverlap(a: RangeSet, b: RangeSet): boolean {
  return a.some((r) => b.some((r1) => rangesOverlap(r, r1)));
}

/** Range.Canonicalize: validates one range and fills in the defaults. */
export function canonicalizeRange(raw: IPRange): Range {
  if (typeof raw.subnet !== "string" || raw.subnet === "") throw invalid("range is missing 'subnet'");
  const written = parseSubnet(raw.subnet);
  if (!written) throw invalid(`invalid CIDR address: ${raw.subnet}`);
  const family = written.ip.family;
  const bits = familyBits(family);
  // No allocatable addresses in a /31 or /32 (/127, /128).
  if (written.prefix > bits - 2) {
    throw invalid(`Network ${formatSubnet(written)} too small to allocate from`);
  }
  const network = networkAddr(written);
  if (network.value !== written.ip.value) {
    throw invalid(
      `Network has host bits set. For a subnet mask of length ${written.prefix} the network address is ${formatAddr(network)}`,
    );
  }
  const subnet: Subnet = { ip: network, prefix: written.prefix };
  const sameFamily = (a: Addr | undefined, field: string): Addr | undefined => {
    if (a && a.family !== family) {
      throw invalid(
        `${field} ${formatAddr(a)} is not in the address family of network ${formatSubnet(subnet)}`,
      );
    }
    return a;
  };
  const gateway = sameFamily(parseField(raw.gateway, "gateway"), "gateway") ?? nextAddr(network);
  const start = sameFamily(parseField(raw.rangeStart, "rangeStart"), "RangeStart");
  if (start && !subnetContains(subnet, start)) {
    throw invalid(`RangeStart ${formatAddr(start)} not in network ${formatSubnet(subnet)}`);
  }
  const end = sameFamily(parseField(raw.rangeEnd, "rangeEnd"), "RangeEnd");
  if (end && !subnetContains(subnet, end)) {
    throw invalid(`RangeEnd ${formatAddr(end)} not in network ${formatSubnet(subnet)}`);
  }
  // Upstream: start defaults to .1 (the gateway is skipped while allocating); end to the broadcast − 1
  // for IPv4 and the last address for IPv6.
  const rangeStart = start ?? nextAddr(network);
  const last = lastAddr(subnet);
  const rangeEnd = end ?? (family === 4 ? { family, value: last.value - 1n } : last);
  if (compareAddr(rangeStart, rangeEnd) > 0) {
    throw invalid(`RangeStart ${formatAddr(rangeStart)} is after RangeEnd ${formatAddr(rangeEnd)}`);
  }
  return { subnet, rangeStart, rangeEnd, gateway };
}

/** RangeSet.Canonicalize: every range valid, one family, no overlaps inside the set. */
export function canonicalizeRangeSet(raw: IPRange[]): RangeSet {
  if (raw.length === 0) throw invalid("empty range set");
  const set = raw.map(canonicalizeRange);
  const family = set[0]!.subnet.ip.family;
  if (set.some((r) => r.subnet.ip.family !== family)) throw invalid("mixed address families");
  for (let i = 0; i < set.length; i++) {
    for (let j = i + 1; j < set.length; j++) {
      if (rangesOverlap(set[i]!, set[j]!)) {
        throw invalid(`subnets ${rangeString(set[i]!)} and ${rangeString(set[j]!)} overlap`);
      }
    }
  }
  return set;
}
