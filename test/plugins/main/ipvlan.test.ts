/**
 * ipvlan: a sub-interface of the host's up0 in the container (l2, l3, l3s), traffic to a peer across the
 * veth, the master from prevResult in a chain or from the default route, layer-2 only without IPAM, and
 * upstream's /usr/lib/cni/ipvlan side by side. This kernel may lack ipvlan: then these run in the VM lane.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { cleanupAll, makeNetns, requiresKernel } from "../../helpers/netns.ts";
import { UPSTREAM_DIR } from "../_run.ts";
import { addrs, type Bed, bed, ipam, ipLink, links, ping, reservations, run, sh } from "./sublink-fixture.ts";

afterEach(() => cleanupAll());

const k = requiresKernel("ipvlan");
const UPSTREAM = `${UPSTREAM_DIR}/ipvlan`;

function conf(b: Bed, extra: Record<string, unknown> = {}) {
  return {
    cniVersion: "1.1.0",
    name: "ipvnet",
    type: "ipvlan",
    master: "up0",
    ipam: ipam(b, "10.73.0.0/24"),
    ...extra,
  };
}

describe("ipvlan", () => {
  test.skipIf(!!k.why)(k.name("l2 ADD: ping the peer across the wire; CHECK; DEL twice"), async () => {
    const b = bed("iv");
    sh(b.wire, "addr", "add", "10.73.0.200/24", "dev", "down0");
    const add = await run(b, "ipvlan", "ADD", conf(b));
    expect(add.stderr).toBe("");
    expect(add.code).toBe(0);
    const l = ipLink(b.cont, "net1");
    expect(l?.linkinfo?.info_kind).toBe("ipvlan");
    expect(l?.linkinfo?.info_data?.mode).toBe("l2");
    expect(l?.flags).toContain("UP");
    expect(add.json.interfaces).toEqual([{ name: "net1", mac: l?.address, sandbox: b.cont.path }]);
    expect(addrs(b.cont, "net1")).toEqual(["10.73.0.2/24"]);
    expect(b.cont.run(["sysctl", "-n", "net.ipv4.conf.net1.arp_notify"]).stdout.trim()).toBe("1");
    expect(ping(b.cont, "10.73.0.200")).toBe(true);

    expect((await run(b, "ipvlan", "CHECK", { ...conf(b), prevResult: add.json })).code).toBe(0);
    const mode = await run(b, "ipvlan", "CHECK", { ...conf(b, { mode: "l3" }), prevResult: add.json });
    expect(mode.code).toBe(1);
    expect(mode.json.msg).toContain("mode l2 does not match expected value: l3");

    expect((await run(b, "ipvlan", "DEL", conf(b))).code).toBe(0);
    expect(links(b.cont)).toEqual([]);
    expect(reservations(b, "ipvnet")).toEqual([]);
    expect((await run(b, "ipvlan", "DEL", conf(b))).code).toBe(0);
    expect((await run(b, "ipvlan", "DEL", conf(b), { netns: "/var/run/netns/tscni-gone-ipv" })).code).toBe(0);
  });

  test.skipIf(!!k.why)(k.name("two l2 containers on one master ping each other"), async () => {
    const b = bed("iv");
    const other = makeNetns("ivc2");
    expect((await run(b, "ipvlan", "ADD", conf(b))).code).toBe(0);
    const second = await run(b, "ipvlan", "ADD", conf(b), { netns: other.path, id: "ctr2" });
    expect(second.code).toBe(0);
    const ip2 = (second.json.ips[0].address as string).split("/")[0] ?? "";
    expect(ip2).toBe("10.73.0.3");
    expect(ping(b.cont, ip2)).toBe(true);
    expect(ping(other, "10.73.0.2")).toBe(true);
  });

  test.skipIf(!!k.why)(k.name("l3 and l3s modes with an MTU"), async () => {
    const b = bed("iv");
    for (const [i, mode] of (["l3", "l3s"] as const).entries()) {
      const ifName = `net${i + 1}`;
      const c = conf(b, { mode, mtu: 1300 });
      const r = await run(b, "ipvlan", "ADD", c, { ifName });
      expect(r.code).toBe(0);
      expect(ipLink(b.cont, ifName)?.linkinfo?.info_data?.mode).toBe(mode);
      expect(ipLink(b.cont, ifName)?.mtu).toBe(1300);
    }
    expect(links(b.cont).sort()).toEqual(["net1", "net2"]);
  });

  test.skipIf(!!k.why)(k.name("chained: the master and the IPs come from prevResult, no IPAM"), async () => {
    const b = bed("iv");
    const prevResult = {
      cniVersion: "1.0.0",
      interfaces: [{ name: "up0" }],
      ips: [{ address: "10.74.0.9/24", gateway: "10.74.0.1", interface: 0 }],
    };
    const c = { cniVersion: "1.0.0", name: "ipvnet", type: "ipvlan", prevResult };
    const r = await run(b, "ipvlan", "ADD", c);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(addrs(b.cont, "net1")).toEqual(["10.74.0.9/24"]);
    expect(r.json.interfaces).toHaveLength(1);
    expect(r.json.ips).toEqual([{ address: "10.74.0.9/24", gateway: "10.74.0.1", interface: 0 }]);
    const two = await run(
      b,
      "ipvlan",
      "ADD",
      {
        ...c,
        prevResult: { ...prevResult, interfaces: [{ name: "a" }, { name: "b" }] },
      },
      { ifName: "net2" },
    );
    expect(two.json).toMatchObject({
      code: 7,
      msg: "chained master failure. PrevResult lacks a single named interface",
    });
  });

  test.skipIf(!!k.why)(
    k.name("no master: the default route's interface; no IPAM: layer 2 only, up"),
    async () => {
      const b = bed("iv");
      sh(b.host, "addr", "add", "10.75.0.1/24", "dev", "up0");
      sh(b.host, "route", "add", "default", "via", "10.75.0.254", "dev", "up0");
      const r = await run(b, "ipvlan", "ADD", { cniVersion: "1.0.0", name: "ipvnet", type: "ipvlan" });
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      const l = ipLink(b.cont, "net1");
      expect(l?.linkinfo?.info_kind).toBe("ipvlan");
      expect(l?.flags).toContain("UP");
      expect(addrs(b.cont, "net1")).toEqual([]);
      expect(r.json.ips ?? []).toEqual([]);
    },
  );

  test.skipIf(!!k.why)(k.name("a missing master and a failing IPAM leave nothing"), async () => {
    const b = bed("iv");
    const none = await run(b, "ipvlan", "ADD", conf(b, { master: "nosuch0" }));
    expect(none.code).toBe(1);
    expect(none.json.msg).toContain('failed to lookup master "nosuch0"');
    const badIpam = await run(b, "ipvlan", "ADD", conf(b, { ipam: { type: "no-such-ipam" } }));
    expect(badIpam.code).toBe(1);
    expect(links(b.cont)).toEqual([]);
    expect(links(b.host)).toEqual(["up0"]);
  });

  test.skipIf(!!k.why || !existsSync(UPSTREAM))(
    k.name("the same result and link as upstream's ipvlan"),
    async () => {
      const ours = bed("iv");
      const theirs = bed("iu");
      const a = await run(ours, "ipvlan", "ADD", conf(ours, { mode: "l3", mtu: 1400, cniVersion: "1.0.0" }));
      const u = await run(theirs, UPSTREAM, "ADD", {
        ...conf(theirs, { mode: "l3", mtu: 1400 }),
        cniVersion: "1.0.0",
      });
      expect(u.stderr).toBe("");
      expect(u.code).toBe(0);
      expect(a.code).toBe(0);
      const strip = (r: { interfaces: { mac: string; sandbox: string }[] }) => ({
        ...r,
        cniVersion: "-",
        interfaces: r.interfaces.map((i) => ({ ...i, mac: "-", sandbox: "-" })),
      });
      expect(strip(a.json)).toEqual(strip(u.json));
      const pick = (l: ReturnType<typeof ipLink>) => ({
        mtu: l?.mtu,
        data: l?.linkinfo?.info_data,
        flags: l?.flags,
      });
      expect(pick(ipLink(ours.cont, "net1"))).toEqual(pick(ipLink(theirs.cont, "net1")));
      expect((await run(ours, UPSTREAM, "DEL", conf(ours, { cniVersion: "1.0.0" }))).code).toBe(0);
      expect((await run(theirs, "ipvlan", "DEL", conf(theirs))).code).toBe(0);
      expect(links(ours.cont)).toEqual([]);
      expect(links(theirs.cont)).toEqual([]);
    },
  );
});

describe("ipvlan config (no kernel needed)", () => {
  test("an unknown mode and a bad master are code 7", async () => {
    const b = bed("iv");
    const mode = await run(b, "ipvlan", "ADD", conf(b, { mode: "l4" }));
    expect(mode.json).toMatchObject({ code: 7, msg: 'unknown ipvlan mode: "l4"' });
    const master = await run(b, "ipvlan", "ADD", conf(b, { master: "a/b" }));
    expect(master.json.code).toBe(7);
    expect(links(b.cont)).toEqual([]);
  });
});
