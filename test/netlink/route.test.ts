import { afterEach, describe, expect, test } from "bun:test";
import { addrAdd, SCOPE } from "../../src/netlink/addr.ts";
import {
  RTN,
  RTNH_F_ONLINK,
  RTPROT,
  routeAdd,
  routeAppend,
  routeDel,
  routeList,
  routeReplace,
} from "../../src/netlink/route.ts";
import { SysError } from "../../src/sys/errno.ts";
import { cleanupTestNetns, makeTestNetns, type TestNetns, vethPair } from "./_util.ts";

afterEach(cleanupTestNetns);

function setup(): { t: TestNetns; v0: number; v1: number } {
  const t = makeTestNetns();
  const { v0, v1 } = vethPair(t);
  addrAdd(t.sock, { index: v0, address: "10.0.0.1/24" });
  addrAdd(t.sock, { index: v0, address: "fd00::1/64", flags: { nodad: true } });
  return { t, v0, v1 };
}

function caught(fn: () => void): SysError {
  try {
    fn();
  } catch (err) {
    if (err instanceof SysError) return err;
    throw err;
  }
  throw new Error("expected a SysError");
}

describe("routes", () => {
  test("append adds a second default route where add says EEXIST", () => {
    const { t, v0, v1 } = setup();
    addrAdd(t.sock, { index: v1, address: "10.0.1.1/24" });
    routeAdd(t.sock, { dst: "default", gw: "10.0.0.254", index: v0 });
    expect(caught(() => routeAdd(t.sock, { dst: "default", gw: "10.0.1.254", index: v1 })).code).toBe(
      "EEXIST",
    );
    routeAppend(t.sock, { dst: "default", gw: "10.0.1.254", index: v1 });
    const defaults = t.ip("-4", "route", "show", "default");
    expect(defaults.map((r: { gateway: string }) => r.gateway).sort()).toEqual(["10.0.0.254", "10.0.1.254"]);
  });

  test("in table 100 with gateway, metric, mtu, advmss and src", () => {
    const { t, v0 } = setup();
    routeAdd(t.sock, {
      dst: "192.168.5.0/24",
      gw: "10.0.0.254",
      index: v0,
      table: 100,
      priority: 50,
      mtu: 1400,
      advmss: 1360,
      src: "10.0.0.1",
    });
    const o = t.ip("route", "show", "table", "100");
    expect(o).toHaveLength(1);
    expect(o[0]).toMatchObject({
      dst: "192.168.5.0/24",
      gateway: "10.0.0.254",
      dev: "v0",
      metric: 50,
      prefsrc: "10.0.0.1",
      metrics: [{ mtu: 1400, advmss: 1360 }],
    });

    expect(routeList(t.sock, { table: 100 })).toEqual([
      {
        version: 4,
        dst: "192.168.5.0/24",
        gw: "10.0.0.254",
        index: v0,
        table: 100,
        scope: SCOPE.universe,
        protocol: RTPROT.boot,
        type: RTN.unicast,
        priority: 50,
        src: "10.0.0.1",
        mtu: 1400,
        advmss: 1360,
        flags: 0,
        onlink: false,
      },
    ]);
    // the main table does not have it
    expect(routeList(t.sock).some((r) => r.dst === "192.168.5.0/24")).toBe(false);
  });

  test("tables above 255 go through RTA_TABLE", () => {
    const { t, v0 } = setup();
    routeAdd(t.sock, { dst: "192.168.6.0/24", index: v0, scope: "link", table: 1000 });
    expect(t.ip("route", "show", "table", "1000")[0]).toMatchObject({ dst: "192.168.6.0/24", scope: "link" });
    const r = routeList(t.sock, { table: 1000 });
    expect(r.map((x) => [x.dst, x.table, x.scope])).toEqual([["192.168.6.0/24", 1000, SCOPE.link]]);
  });

  test("default routes, v4 and v6, parse as 0.0.0.0/0 and ::/0", () => {
    const { t, v0 } = setup();
    routeAdd(t.sock, { dst: "default", gw: "10.0.0.254" });
    routeAdd(t.sock, { dst: "::/0", gw: "fd00::fe", index: v0 });
    expect(t.ip("-4", "route", "show", "default")[0]).toMatchObject({
      dst: "default",
      gateway: "10.0.0.254",
    });
    expect(t.ip("-6", "route", "show", "default")[0]).toMatchObject({ dst: "default", gateway: "fd00::fe" });
    const v4 = routeList(t.sock, { version: 4 }).find((r) => r.dst === "0.0.0.0/0");
    expect(v4).toMatchObject({ gw: "10.0.0.254", index: v0 });
    const v6 = routeList(t.sock, { version: 6 }).find((r) => r.dst === "::/0");
    expect(v6).toMatchObject({ gw: "fd00::fe", index: v0, version: 6 });
    routeDel(t.sock, { dst: "default", version: 6 });
    expect(t.ip("-6", "route", "show", "default")).toEqual([]);
  });

  test("scope link, onlink gateway, host bits cleared, list by link", () => {
    const { t, v0, v1 } = setup();
    routeAdd(t.sock, { dst: "172.16.0.7/16", index: v1, scope: "link" });
    // 203.0.113.1 is on no prefix of v1: only onlink makes it acceptable
    routeAdd(t.sock, { dst: "198.51.100.0/24", gw: "203.0.113.1", index: v1, onlink: true });
    const o = t.ip("route", "show", "dev", "v1");
    expect(o).toContainEqual(expect.objectContaining({ dst: "172.16.0.0/16", scope: "link" }));
    expect(o).toContainEqual(
      expect.objectContaining({ dst: "198.51.100.0/24", gateway: "203.0.113.1", flags: ["onlink"] }),
    );
    const mine = routeList(t.sock, { index: v1 });
    expect(mine.every((r) => r.index === v1)).toBe(true);
    expect(mine.find((r) => r.dst === "172.16.0.0/16")?.scope).toBe(SCOPE.link);
    const onlink = mine.find((r) => r.dst === "198.51.100.0/24");
    expect(onlink?.onlink).toBe(true);
    expect((onlink?.flags ?? 0) & RTNH_F_ONLINK).toBe(RTNH_F_ONLINK);
    expect(routeList(t.sock, { index: v0 }).some((r) => r.index !== v0)).toBe(false);
  });

  test("replace changes a route, add of an existing one is EEXIST, del removes it", () => {
    const { t, v0 } = setup();
    routeAdd(t.sock, { dst: "192.168.7.0/24", gw: "10.0.0.2", index: v0 });
    expect(caught(() => routeAdd(t.sock, { dst: "192.168.7.0/24", gw: "10.0.0.3" })).code).toBe("EEXIST");
    routeReplace(t.sock, { dst: "192.168.7.0/24", gw: "10.0.0.3", index: v0, mtu: 1300 });
    expect(t.ip("route", "show", "192.168.7.0/24")[0]).toMatchObject({
      gateway: "10.0.0.3",
      metrics: [{ mtu: 1300 }],
    });
    routeDel(t.sock, { dst: "192.168.7.0/24" });
    expect(t.ip("route", "show", "192.168.7.0/24")).toEqual([]);
    const err = caught(() => routeDel(t.sock, { dst: "192.168.7.0/24", devName: "v0", index: v0 }));
    expect(err.code).toBe("ESRCH");
    expect(err.message).toStartWith("deleting route 192.168.7.0/24 dev v0: ESRCH");
  });

  test("blackhole type and static protocol", () => {
    const { t } = setup();
    routeAdd(t.sock, { dst: "192.0.2.0/24", type: "blackhole", protocol: "static" });
    expect(t.ip("route", "show", "192.0.2.0/24")[0]).toMatchObject({ type: "blackhole", protocol: "static" });
    expect(routeList(t.sock).find((r) => r.dst === "192.0.2.0/24")).toMatchObject({
      type: RTN.blackhole,
      protocol: RTPROT.static,
    });
  });

  test("a gateway that is not reachable is ENETUNREACH; an empty table lists as []", () => {
    const { t, v0 } = setup();
    const err = caught(() =>
      routeAdd(t.sock, { dst: "10.9.0.0/24", gw: "192.168.77.1", index: v0, devName: "v0" }),
    );
    expect(err.code).toBe("ENETUNREACH");
    expect(err.message).toStartWith("adding route 10.9.0.0/24 via 192.168.77.1 dev v0: ENETUNREACH");
    expect(routeList(t.sock, { table: 4242 })).toEqual([]);
    expect(() => routeAdd(t.sock, { dst: "10.9.0.0/24", gw: "fd00::1" })).toThrow(/EINVAL.*families differ/);
  });
});
