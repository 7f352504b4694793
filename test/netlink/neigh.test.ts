import { afterEach, describe, expect, test } from "bun:test";
import { NUD, neighAdd, neighDel, neighList, neighReplace } from "../../src/netlink/neigh.ts";
import { cleanupTestNetns, makeTestNetns, vethPair } from "./_util.ts";

afterEach(cleanupTestNetns);

describe("neighbours", () => {
  test("permanent IPv4 and IPv6 entries: add, list, replace, delete", () => {
    const t = makeTestNetns();
    const { v0, v1 } = vethPair(t);
    neighAdd(t.sock, { index: v0, ip: "10.0.0.9", mac: "02:00:00:00:00:09" });
    neighAdd(t.sock, { index: v0, ip: "fd00::9", mac: "02:00:00:00:00:0a", state: "permanent" });
    const o = t.ip("neigh", "show", "dev", "v0");
    expect(o).toContainEqual(
      expect.objectContaining({ dst: "10.0.0.9", lladdr: "02:00:00:00:00:09", state: ["PERMANENT"] }),
    );
    expect(o).toContainEqual(expect.objectContaining({ dst: "fd00::9", lladdr: "02:00:00:00:00:0a" }));

    const mine = neighList(t.sock, { index: v0 });
    expect(mine.find((n) => n.ip === "10.0.0.9")).toMatchObject({
      index: v0,
      version: 4,
      mac: "02:00:00:00:00:09",
      state: NUD.permanent,
    });
    expect(neighList(t.sock, { version: 6, index: v0 }).map((n) => n.ip)).toContain("fd00::9");
    expect(neighList(t.sock, { index: v1 }).some((n) => n.ip === "10.0.0.9")).toBe(false);

    expect(() =>
      neighAdd(t.sock, { index: v0, devName: "v0", ip: "10.0.0.9", mac: "02:00:00:00:00:0b" }),
    ).toThrow(/^adding neighbour 10.0.0.9 lladdr 02:00:00:00:00:0b on v0: EEXIST/);
    neighReplace(t.sock, { index: v0, ip: "10.0.0.9", mac: "02:00:00:00:00:0b", state: "reachable" });
    expect(t.ip("neigh", "show", "dev", "v0", "to", "10.0.0.9")[0]).toMatchObject({
      lladdr: "02:00:00:00:00:0b",
      state: ["REACHABLE"],
    });

    neighDel(t.sock, { index: v0, ip: "10.0.0.9" });
    expect(t.ip("neigh", "show", "dev", "v0", "to", "10.0.0.9")).toEqual([]);
    expect(() => neighDel(t.sock, { index: v0, ip: "10.0.0.9" })).toThrow(/ENOENT/);
    expect(() => neighAdd(t.sock, { index: v0, ip: "10.0.0.8", mac: "zz" })).toThrow(/EINVAL.*invalid MAC/);
  });
});
