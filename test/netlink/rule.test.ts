import { afterEach, describe, expect, test } from "bun:test";
import { ruleAdd, ruleDel, ruleList } from "../../src/netlink/rule.ts";
import { cleanupTestNetns, makeTestNetns } from "./_util.ts";

afterEach(cleanupTestNetns);

describe("rules", () => {
  test("add, list and delete IPv4 rules with priority, table, src, iif/oif, fwmark", () => {
    const t = makeTestNetns();
    ruleAdd(t.sock, { version: 4, priority: 100, table: 100, src: "10.1.0.5/24" });
    ruleAdd(t.sock, {
      version: 4,
      priority: 101,
      table: 1000,
      dst: "10.2.0.0/16",
      iifname: "v0",
      oifname: "v1",
    });
    ruleAdd(t.sock, { version: 4, priority: 102, table: 102, mark: 0x10, mask: 0xff, invert: true });

    const o = t.ip("-4", "rule", "show");
    expect(o).toContainEqual(
      expect.objectContaining({ priority: 100, src: "10.1.0.0", srclen: 24, table: "100" }),
    );
    expect(o).toContainEqual(
      expect.objectContaining({
        priority: 101,
        dst: "10.2.0.0",
        dstlen: 16,
        iif: "v0",
        oif: "v1",
        table: "1000",
      }),
    );
    expect(o).toContainEqual(
      expect.objectContaining({ priority: 102, not: null, fwmark: "0x10", fwmask: "0xff", table: "102" }),
    );

    const mine = ruleList(t.sock, 4);
    expect(mine.find((r) => r.priority === 100)).toMatchObject({
      table: 100,
      src: "10.1.0.0/24",
      invert: false,
    });
    expect(mine.find((r) => r.priority === 101)).toMatchObject({
      table: 1000,
      dst: "10.2.0.0/16",
      iifname: "v0",
      oifname: "v1",
    });
    expect(mine.find((r) => r.priority === 102)).toMatchObject({
      table: 102,
      mark: 0x10,
      mask: 0xff,
      invert: true,
    });
    // the kernel's default rules are listed too
    expect(mine.find((r) => r.priority === 32766)?.table).toBe(254);

    expect(() => ruleAdd(t.sock, { version: 4, priority: 100, table: 100, src: "10.1.0.0/24" })).toThrow(
      /^adding IPv4 rule priority 100 from 10.1.0.0\/24 table 100: EEXIST/,
    );
    ruleDel(t.sock, { version: 4, priority: 100, table: 100 });
    expect(ruleList(t.sock, 4).some((r) => r.priority === 100)).toBe(false);
    expect(t.ip("-4", "rule", "show").some((r: { priority: number }) => r.priority === 100)).toBe(false);
    expect(() => ruleDel(t.sock, { version: 4, priority: 100 })).toThrow(/ENOENT/);
  });

  test("IPv6 rules are listed per family", () => {
    const t = makeTestNetns();
    ruleAdd(t.sock, { version: 6, priority: 200, table: 200, src: "fd00:1::/64" });
    expect(t.ip("-6", "rule", "show")).toContainEqual(
      expect.objectContaining({ priority: 200, src: "fd00:1::", srclen: 64, table: "200" }),
    );
    expect(ruleList(t.sock, 6).find((r) => r.priority === 200)).toMatchObject({
      version: 6,
      src: "fd00:1::/64",
    });
    expect(ruleList(t.sock, 4).some((r) => r.priority === 200)).toBe(false);
    expect(() => ruleAdd(t.sock, { version: 6, table: 200, src: "10.0.0.0/8" })).toThrow(
      /not an IPv6 prefix/,
    );
    expect(() => ruleAdd(t.sock, { version: 6, priority: 5 })).toThrow(/needs a table/);
  });
});
