import { afterEach, describe, expect, test } from "bun:test";
import {
  addrAdd,
  addrDel,
  addrList,
  addrReplace,
  IFA_F,
  parseCidr,
  waitForDad,
} from "../../src/netlink/addr.ts";
import { SysError } from "../../src/sys/errno.ts";
import { cleanupTestNetns, makeTestNetns, type TestNetns, vethPair } from "./_util.ts";

afterEach(cleanupTestNetns);

// biome-ignore lint/suspicious/noExplicitAny: `ip -j addr` output
function oracleAddrs(t: TestNetns, dev: string): any[] {
  return t.ip("addr", "show", "dev", dev)[0].addr_info;
}

describe("addresses", () => {
  test("adds IPv4 with computed broadcast and label, lists and deletes it", () => {
    const t = makeTestNetns();
    const { v0 } = vethPair(t);
    addrAdd(t.sock, { index: v0, address: "10.1.2.3/24", label: "v0:web" });
    const o = oracleAddrs(t, "v0").find((a) => a.family === "inet");
    expect(o).toMatchObject({ local: "10.1.2.3", prefixlen: 24, broadcast: "10.1.2.255", label: "v0:web" });

    const mine = addrList(t.sock, { index: v0, version: 4 });
    expect(mine).toHaveLength(1);
    expect(mine[0]).toMatchObject({
      index: v0,
      version: 4,
      address: "10.1.2.3/24",
      ip: "10.1.2.3",
      prefixLen: 24,
      broadcast: "10.1.2.255",
      label: "v0:web",
      scope: 0,
      tentative: false,
    });
    expect((mine[0]?.flags ?? 0) & IFA_F.PERMANENT).toBe(IFA_F.PERMANENT);

    addrDel(t.sock, { index: v0, address: "10.1.2.3/24" });
    expect(oracleAddrs(t, "v0").filter((a) => a.family === "inet")).toEqual([]);
    expect(addrList(t.sock, { index: v0, version: 4 })).toEqual([]);
  });

  test("/31 gets no broadcast; an explicit peer is reported", () => {
    const t = makeTestNetns();
    const { v0 } = vethPair(t);
    addrAdd(t.sock, { index: v0, address: "10.9.0.0/31" });
    addrAdd(t.sock, { index: v0, address: "10.8.0.1", peer: "10.8.0.2/32" });
    const o = oracleAddrs(t, "v0").filter((a) => a.family === "inet");
    expect(o.find((a) => a.local === "10.9.0.0")?.broadcast).toBeUndefined();
    expect(o.find((a) => a.local === "10.8.0.1")).toMatchObject({ address: "10.8.0.2", prefixlen: 32 });
    const p = addrList(t.sock, { index: v0, version: 4 }).find((a) => a.ip === "10.8.0.1");
    expect(p?.peer).toBe("10.8.0.2/32");
  });

  test("IPv6 with nodad and noprefixroute flags", () => {
    const t = makeTestNetns();
    const { v0 } = vethPair(t);
    addrAdd(t.sock, { index: v0, address: "fd00::2/64", flags: { nodad: true, noprefixroute: true } });
    const o = oracleAddrs(t, "v0").find((a) => a.local === "fd00::2");
    expect(o).toMatchObject({ family: "inet6", prefixlen: 64, nodad: true, noprefixroute: true });
    expect(o.tentative).toBeUndefined();
    // noprefixroute: the kernel added no fd00::/64 route
    expect(t.ip("-6", "route", "show", "fd00::/64")).toEqual([]);

    const a = addrList(t.sock, { index: v0, version: 6 }).find((x) => x.ip === "fd00::2");
    expect(a?.address).toBe("fd00::2/64");
    expect((a?.flags ?? 0) & IFA_F.NODAD).toBe(IFA_F.NODAD);
    expect((a?.flags ?? 0) & IFA_F.NOPREFIXROUTE).toBe(IFA_F.NOPREFIXROUTE);
    expect(a?.tentative).toBe(false);
  });

  test("adding the same address twice fails with EEXIST naming what was done", () => {
    const t = makeTestNetns();
    const { v0 } = vethPair(t);
    addrAdd(t.sock, { index: v0, address: "10.1.2.3/24" });
    let err: unknown;
    try {
      addrAdd(t.sock, { index: v0, devName: "v0", address: "10.1.2.3/24" });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SysError);
    expect((err as SysError).code).toBe("EEXIST");
    expect((err as SysError).message).toStartWith("adding address 10.1.2.3/24 to v0: EEXIST (file exists)");
  });

  test("replace updates lifetimes of an existing address", () => {
    const t = makeTestNetns();
    const { v0 } = vethPair(t);
    addrAdd(t.sock, { index: v0, address: "10.1.2.3/24" });
    addrReplace(t.sock, { index: v0, address: "10.1.2.3/24", validLft: 300, preferredLft: 200 });
    const o = oracleAddrs(t, "v0").find((a) => a.local === "10.1.2.3");
    expect(o.valid_life_time).toBeLessThanOrEqual(300);
    expect(o.valid_life_time).toBeGreaterThan(250);
    const a = addrList(t.sock, { index: v0, version: 4 })[0];
    expect(a?.validLft).toBeLessThanOrEqual(300);
    expect(a?.preferredLft).toBeLessThanOrEqual(200);
  });

  test("deleting a missing address fails with EADDRNOTAVAIL", () => {
    const t = makeTestNetns();
    const { v0 } = vethPair(t);
    expect(() => addrDel(t.sock, { index: v0, address: "10.7.7.7/24" })).toThrow(/EADDRNOTAVAIL/);
  });

  test("bad input is EINVAL before reaching the kernel", () => {
    const t = makeTestNetns();
    expect(() => addrAdd(t.sock, { index: 1, address: "10.1.2.300/24" })).toThrow(/EINVAL.*invalid IP/);
    expect(() => addrAdd(t.sock, { index: 1, address: "10.1.2.3/33" })).toThrow(/invalid prefix length/);
    expect(() =>
      addrAdd(t.sock, { index: 1, devName: "v0", address: "10.1.2.3/24", label: "eth0:1" }),
    ).toThrow(/must begin with the interface name/);
    expect(parseCidr("fd00::1", "x")).toMatchObject({ version: 6, prefixLen: 128 });
  });

  test("list without filters includes every link's addresses", () => {
    const t = makeTestNetns();
    const { v0, v1 } = vethPair(t);
    addrAdd(t.sock, { index: v0, address: "10.1.0.1/24" });
    addrAdd(t.sock, { index: v1, address: "10.2.0.1/24" });
    const all = addrList(t.sock).filter((a) => a.version === 4);
    expect(all.map((a) => [a.index, a.address]).sort()).toEqual(
      [
        [v0, "10.1.0.1/24"],
        [v1, "10.2.0.1/24"],
      ].sort(),
    );
  });
});

describe("waitForDad", () => {
  test("returns at once with nodad, waits for DAD otherwise", async () => {
    const t = makeTestNetns();
    const { v0 } = vethPair(t);
    await waitForDad(t.sock, v0, 10_000); // the link-local address the kernel made on link up
    addrAdd(t.sock, { index: v0, address: "fd00::10/64", flags: { nodad: true } });
    await waitForDad(t.sock, v0, 0); // nothing tentative: no wait at all

    addrAdd(t.sock, { index: v0, address: "fd00::11/64" });
    // Right after adding, the address is tentative (the oracle agrees)…
    expect(oracleAddrs(t, "v0").find((a) => a.local === "fd00::11")?.tentative).toBe(true);
    expect(addrList(t.sock, { index: v0 }).some((a) => a.tentative)).toBe(true);
    // …and a too-short wait times out with a clear error.
    await expect(waitForDad(t.sock, v0, 0, "v0")).rejects.toThrow(
      /waiting for DAD on v0: ETIMEDOUT.*fd00::11\/64/,
    );
    await waitForDad(t.sock, v0, 10_000);
    expect(addrList(t.sock, { index: v0 }).some((a) => a.tentative)).toBe(false);
    expect(oracleAddrs(t, "v0").find((a) => a.local === "fd00::11")?.tentative).toBeUndefined();
  });

  test("fails fast when DAD finds a duplicate", async () => {
    const t = makeTestNetns();
    const { v0, v1 } = vethPair(t);
    // v1 owns the address; v0's DAD probe reaches v1 over the veth and gets answered.
    addrAdd(t.sock, { index: v1, address: "fd00::20/64", flags: { nodad: true } });
    addrAdd(t.sock, { index: v0, address: "fd00::20/64" });
    const started = Date.now();
    await expect(waitForDad(t.sock, v0, 10_000)).rejects.toThrow(
      /duplicate address detection failed for fd00::20\/64/,
    );
    expect(Date.now() - started).toBeLessThan(9_000);
    expect(oracleAddrs(t, "v0").find((a) => a.local === "fd00::20")?.dadfailed).toBe(true);
  });
});
