/**
 * Address allocation for one range set (upstream allocator.go): round robin from the set's
 * last_reserved_ip + 1, wrapping across the set's ranges, skipping the gateway (and a network or
 * broadcast address that rangeStart/rangeEnd happen to name); an exclusive file create decides.
 *
 * Error codes (upstream returns plain errors, i.e. 999): a requested address that cannot be given
 * (the gateway, the network address) → 7; a requested address someone holds and an exhausted range
 * set → 11 (try again later: both clear up when containers go away, and the message names the IP or
 * the range set).
 */

import { type Addr, addrEqual, formatAddr, nextAddr } from "../../../ipam-common/ipmath.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import {
  isAllocatable,
  type Range,
  type RangeSet,
  rangeContains,
  rangeFor,
  rangeSetContains,
  rangeSetString,
} from "./range.ts";
import type { LockedStore } from "./store.ts";

export interface Allocation {
  ip: Addr;
  range: Range;
}

/**
 * Every address of the set once, in allocation order: starting after `last` when the set holds it
 * (so `last` itself comes at the very end), else at the first range's rangeStart.
 */
export function* candidates(set: RangeSet, last: Addr | undefined): Generator<Allocation> {
  let idx = 0;
  let cur: Addr;
  const advance = () => {
    const r = set[idx]!;
    if (addrEqual(cur, r.rangeEnd)) {
      idx = (idx + 1) % set.length;
      cur = set[idx]!.rangeStart;
    } else {
      cur = nextAddr(cur);
    }
  };
  if (last && rangeSetContains(set, last)) {
    idx = set.findIndex((r) => rangeContains(r, last));
    cur = last;
    advance();
  } else {
    cur = set[0]!.rangeStart;
  }
  const start = cur;
  do {
    const r = set[idx]!;
    if (isAllocatable(r, cur)) yield { ip: cur, range: r };
    advance();
  } while (!addrEqual(cur, start));
}

/** Reserves an address of range set `rangeID` for (containerID, ifname): `requested` or the next free one. */
export function allocate(
  store: LockedStore,
  set: RangeSet,
  rangeID: number,
  containerID: string,
  ifname: string,
  requested?: Addr,
): Allocation {
  if (requested) {
    const range = rangeFor(set, requested);
    const text = formatAddr(requested);
    if (!range) {
      throw new CniError(ErrCode.InvalidNetworkConfig, `${text} not in range set ${rangeSetString(set)}`);
    }
    if (addrEqual(requested, range.gateway)) {
      throw new CniError(ErrCode.InvalidNetworkConfig, `requested ip ${text} is subnet's gateway`);
    }
    if (!isAllocatable(range, requested)) {
      throw new CniError(
        ErrCode.InvalidNetworkConfig,
        `requested ip ${text} is not a host address of its subnet`,
      );
    }
    if (!store.reserve(containerID, ifname, requested, rangeID)) {
      throw new CniError(
        ErrCode.TryAgainLater,
        `requested IP address ${text} is not available in range set ${rangeSetString(set)}`,
      );
    }
    return { ip: requested, range };
  }

  // The spec forbids a second ADD for the same attachment without a DEL in between.
  for (const r of store.findByID(containerID, ifname)) {
    if (rangeSetContains(set, r.ip)) {
      throw new CniError(
        ErrCode.Internal,
        `${r.name} has been allocated to ${containerID}, duplicate allocation is not allowed`,
      );
    }
  }
  for (const c of candidates(set, store.lastReservedIP(rangeID))) {
    if (store.reserve(containerID, ifname, c.ip, rangeID)) return c;
  }
  throw new CniError(ErrCode.TryAgainLater, `no IP addresses available in range set: ${rangeSetString(set)}`);
}
