import { describe, expect, test } from "bun:test";
import { formatAddr, parseAddr } from "../../../../src/ipam-common/ipmath.ts";
import { candidates } from "../../../../src/plugins/ipam/host-local/allocator.ts";
import { canonicalizeRangeSet } from "../../../../src/plugins/ipam/host-local/range.ts";
import type { IPRange } from "../../../../src/spec/types.ts";

function order(ranges: IPRange[], last?: string): string[] {
  const set = canonicalizeRangeSet(ranges);
  return [...candidates(set, last ? parseAddr(last) : undefined)].map((c) => formatAddr(c.ip));
}

describe("allocation order", () => {
  test("from the range start, skipping the gateway", () => {
    expect(order([{ subnet: "10.0.0.0/29" }])).toEqual([
      "10.0.0.2",
      "10.0.0.3",
      "10.0.0.4",
      "10.0.0.5",
      "10.0.0.6",
    ]);
  });

  test("round robin: after the last reserved address, wrapping, the last one at the end", () => {
    expect(order([{ subnet: "10.0.0.0/29" }], "10.0.0.4")).toEqual([
      "10.0.0.5",
      "10.0.0.6",
      "10.0.0.2",
      "10.0.0.3",
      "10.0.0.4",
    ]);
  });

  test("wraps across the ranges of a set", () => {
    const ranges = [
      { subnet: "10.0.0.0/24", rangeStart: "10.0.0.10", rangeEnd: "10.0.0.11" },
      { subnet: "10.0.1.0/24", rangeStart: "10.0.1.20", rangeEnd: "10.0.1.21" },
    ];
    expect(order(ranges, "10.0.0.11")).toEqual(["10.0.1.20", "10.0.1.21", "10.0.0.10", "10.0.0.11"]);
    expect(order(ranges, "10.0.1.21")).toEqual(["10.0.0.10", "10.0.0.11", "10.0.1.20", "10.0.1.21"]);
  });

  test("a last reserved address outside the set starts over; a gateway inside the range is skipped", () => {
    const ranges = [
      { subnet: "10.0.0.0/24", rangeStart: "10.0.0.5", rangeEnd: "10.0.0.8", gateway: "10.0.0.6" },
    ];
    expect(order(ranges, "192.168.0.1")).toEqual(["10.0.0.5", "10.0.0.7", "10.0.0.8"]);
  });

  test("network and broadcast addresses named by the range are skipped", () => {
    expect(
      order([{ subnet: "10.0.0.0/30", rangeStart: "10.0.0.0", rangeEnd: "10.0.0.3", gateway: "10.0.0.9" }]),
    ).toEqual(["10.0.0.1", "10.0.0.2"]);
  });

  test("IPv6", () => {
    expect(order([{ subnet: "fd00::/125" }])).toEqual([
      "fd00::2",
      "fd00::3",
      "fd00::4",
      "fd00::5",
      "fd00::6",
      "fd00::7",
    ]);
  });
});
