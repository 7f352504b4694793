import { describe, expect, test } from "bun:test";
import { formatAddr } from "../../../../src/ipam-common/ipmath.ts";
import {
  allocatableCount,
  canonicalizeRange,
  canonicalizeRangeSet,
  rangeSetString,
} from "../../../../src/plugins/ipam/host-local/range.ts";
import { CniError } from "../../../../src/spec/errors.ts";

function rejects(fn: () => unknown, msg: string): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(CniError);
  expect((err as CniError).code).toBe(7);
  expect((err as CniError).msg).toContain(msg);
}

describe("range canonicalization", () => {
  test("IPv4 defaults: gateway .1, start .1, end broadcast-1", () => {
    const r = canonicalizeRange({ subnet: "10.1.2.0/24" });
    expect(formatAddr(r.gateway)).toBe("10.1.2.1");
    expect(formatAddr(r.rangeStart)).toBe("10.1.2.1");
    expect(formatAddr(r.rangeEnd)).toBe("10.1.2.254");
    // .1 is the gateway: 253 addresses left.
    expect(allocatableCount(r)).toBe(253n);
  });

  test("IPv6 defaults: end is the all-ones address", () => {
    const r = canonicalizeRange({ subnet: "fd00::/120" });
    expect(formatAddr(r.rangeEnd)).toBe("fd00::ff");
    expect(formatAddr(r.gateway)).toBe("fd00::1");
  });

  test("explicit values are kept and printed canonically", () => {
    const r = canonicalizeRange({
      subnet: "FD00::/64",
      rangeStart: "fd00::0:10",
      rangeEnd: "fd00::20",
      gateway: "fd00::fffe",
    });
    expect(rangeSetString([r])).toBe("fd00::10-fd00::20");
    expect(formatAddr(r.gateway)).toBe("fd00::fffe");
  });

  test("rejections", () => {
    rejects(
      () => canonicalizeRange({ subnet: "10.0.0.0/31" }),
      "Network 10.0.0.0/31 too small to allocate from",
    );
    rejects(() => canonicalizeRange({ subnet: "10.0.0.1/32" }), "too small to allocate from");
    rejects(() => canonicalizeRange({ subnet: "fd00::/127" }), "too small to allocate from");
    rejects(
      () => canonicalizeRange({ subnet: "10.0.0.5/24" }),
      "Network has host bits set. For a subnet mask of length 24 the network address is 10.0.0.0",
    );
    rejects(
      () => canonicalizeRange({ subnet: "10.0.0.0/24", rangeStart: "10.0.1.5" }),
      "RangeStart 10.0.1.5 not in network 10.0.0.0/24",
    );
    rejects(
      () => canonicalizeRange({ subnet: "10.0.0.0/24", rangeEnd: "10.0.1.5" }),
      "RangeEnd 10.0.1.5 not in network 10.0.0.0/24",
    );
    rejects(
      () => canonicalizeRange({ subnet: "10.0.0.0/24", rangeStart: "10.0.0.50", rangeEnd: "10.0.0.40" }),
      "RangeStart 10.0.0.50 is after RangeEnd 10.0.0.40",
    );
    rejects(() => canonicalizeRange({ subnet: "10.0.0.0/24", gateway: "fd00::1" }), "gateway fd00::1");
    rejects(() => canonicalizeRange({ subnet: "10.0.0.0/24", gateway: "nope" }), 'invalid gateway "nope"');
    rejects(() => canonicalizeRangeSet([]), "empty range set");
    rejects(
      () => canonicalizeRangeSet([{ subnet: "10.0.0.0/24" }, { subnet: "fd00::/64" }]),
      "mixed address families",
    );
    rejects(
      () => canonicalizeRangeSet([{ subnet: "10.0.0.0/24" }, { subnet: "10.0.0.0/25" }]),
      "subnets 10.0.0.1-10.0.0.254 and 10.0.0.1-10.0.0.126 overlap",
    );
  });

  test("network and broadcast named by rangeStart/rangeEnd are not counted", () => {
    const r = canonicalizeRange({
      subnet: "10.0.0.0/30",
      rangeStart: "10.0.0.0",
      rangeEnd: "10.0.0.3",
      gateway: "10.0.0.9",
    });
    expect(allocatableCount(r)).toBe(2n);
  });
});
