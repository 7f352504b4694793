/**
 * vlan: an 802.1q sub-interface of the host's up0 in the container, tagged traffic to a peer on the same
 * VLAN across the veth, kernel state through `ip -j -d`, and upstream's /usr/lib/cni/vlan side by side.
 * This kernel may lack 8021q: then these run in the VM lane.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { cleanupAll, requiresKernel } from "../../helpers/netns.ts";
import { UPSTREAM_DIR } from "../_run.ts";
import { addrs, type Bed, bed, ipam, ipLink, links, ping, reservations, run, sh } from "./sublink-fixture.ts";

afterEach(() => cleanupAll());

const k = requiresKernel("vlan");
const UPSTREAM = `${UPSTREAM_DIR}/vlan`;

function conf(b: Bed, extra: Record<string, unknown> = {}) {
  return {
    cniVersion: "1.1.0",
    name: "vlannet",
    type: "vlan",
    master: "up0",
    vlanId: 42,
    ipam: ipam(b, "10.72.0.0/24", { routes: [{ dst: "10.201.0.0/16" }] }),
    ...extra,
  };
}

/** The far side of the wire answers on VLAN 42 at 10.72.0.200, and on VLAN 200 at 10.72.0.201. */
function peerOnVlan(b: Bed): void {
  // both peers live in the wire netns: answer ARP only on the VLAN that holds the address
  b.wire.run(["sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1"]);
  for (const [id, ip] of [
    ["42", "10.72.0.200/24"],
    ["200", "10.72.0.201/24"],
  ] as const) {
    sh(b.wire, "link", "add", "link", "down0", "name", `down0.${id}`, "type", "vlan", "id", id);
    sh(b.wire, "addr", "add", ip, "dev", `down0.${id}`);
    sh(b.wire, "link", "set", `down0.${id}`, "up");
  }
}

describe("vlan", () => {
  test.skipIf(!!k.why)(
    k.name(
      "ADD: VLAN 42 of up0 in the container reaches the peer on VLAN 42, not the one on 200; CHECK; DEL",
    ),
    async () => {
      const b = bed("vl");
      peerOnVlan(b);
      const add = await run(b, "vlan", "ADD", conf(b, { mtu: 1400, dns: { nameservers: ["10.72.0.53"] } }));
      expect(add.stderr).toBe("");
      expect(add.code).toBe(0);
      const l = ipLink(b.cont, "net1");
      expect(l?.linkinfo?.info_kind).toBe("vlan");
      expect(l?.linkinfo?.info_data).toMatchObject({ protocol: "802.1Q", id: 42 });
      expect(l?.mtu).toBe(1400);
      expect(l?.link_netnsid).toBeNumber(); // its master is in another netns
      expect(links(b.host)).toEqual(["up0"]); // never appeared on the host side
      expect(add.json.interfaces).toEqual([{ name: "net1", mac: l?.address, sandbox: b.cont.path }]);
      expect(add.json.ips).toEqual([{ address: "10.72.0.2/24", gateway: "10.72.0.1", interface: 0 }]);
      expect(add.json.dns).toEqual({ nameservers: ["10.72.0.53"] });
      expect(addrs(b.cont, "net1")).toEqual(["10.72.0.2/24"]);
      expect(ping(b.cont, "10.72.0.200")).toBe(true);
      expect(ping(b.cont, "10.72.0.201")).toBe(false); // the same subnet, but on VLAN 200

      const check = await run(b, "vlan", "CHECK", { ...conf(b, { mtu: 1400 }), prevResult: add.json });
      expect(check.stdout).toBe("");
      expect(check.code).toBe(0);
      const wrongId = await run(b, "vlan", "CHECK", {
        ...conf(b, { vlanId: 43, mtu: 1400 }),
        prevResult: add.json,
      });
      expect(wrongId.code).toBe(1);
      expect(wrongId.json.msg).toContain("configured VLAN ID is 43, current value is 42");

      expect((await run(b, "vlan", "DEL", conf(b))).code).toBe(0);
      expect(links(b.cont)).toEqual([]);
      expect(reservations(b, "vlannet")).toEqual([]);
      expect((await run(b, "vlan", "DEL", conf(b))).code).toBe(0);
      // DEL needs neither the master nor the netns
      sh(b.host, "link", "del", "up0");
      expect((await run(b, "vlan", "DEL", conf(b), { netns: "/var/run/netns/tscni-gone-vlan" })).code).toBe(
        0,
      );
    },
  );

  test.skipIf(!!k.why)(
    k.name("a missing master, a too-big MTU and a taken ifname fail and leave nothing"),
    async () => {
      const b = bed("vl");
      const noMaster = await run(b, "vlan", "ADD", conf(b, { master: "nosuch0" }));
      expect(noMaster.code).toBe(1);
      expect(noMaster.json.msg).toContain('failed to lookup master "nosuch0"');
      const big = await run(b, "vlan", "ADD", conf(b, { mtu: 9000 }));
      expect(big.json).toMatchObject({ code: 7, msg: "invalid MTU 9000, must be [0, master MTU(1500)]" });
      sh(b.cont, "link", "add", "net1", "type", "veth", "peer", "name", "net1p");
      const taken = await run(b, "vlan", "ADD", conf(b));
      expect(taken.code).toBe(1);
      expect(taken.json.msg).toContain('failed to rename vlan to "net1"');
      expect(links(b.cont).sort()).toEqual(["net1", "net1p"]);
      expect(links(b.host)).toEqual(["up0"]);
      expect(reservations(b, "vlannet")).toEqual([]);
    },
  );

  test.skipIf(!!k.why)(k.name("linkInContainer: the master is a link of the container"), async () => {
    const b = bed("vl");
    sh(b.cont, "link", "add", "cup0", "type", "veth", "peer", "name", "cup0p");
    sh(b.cont, "link", "set", "cup0", "up");
    const add = await run(b, "vlan", "ADD", conf(b, { master: "cup0", linkInContainer: true, vlanId: 7 }));
    expect(add.code).toBe(0);
    const l = ipLink(b.cont, "net1");
    expect(l?.linkinfo?.info_data?.id).toBe(7);
    expect(l?.link_netnsid).toBeUndefined(); // same netns as its master
    expect(
      (await run(b, "vlan", "DEL", conf(b, { master: "cup0", linkInContainer: true, vlanId: 7 }))).code,
    ).toBe(0);
    expect(links(b.cont).sort()).toEqual(["cup0", "cup0p"]);
  });

  test.skipIf(!!k.why || !existsSync(UPSTREAM))(
    k.name("the same result and link as upstream's vlan"),
    async () => {
      const ours = bed("vl");
      const theirs = bed("vu");
      const a = await run(ours, "vlan", "ADD", conf(ours, { mtu: 1450, cniVersion: "1.0.0" }));
      const u = await run(theirs, UPSTREAM, "ADD", { ...conf(theirs, { mtu: 1450 }), cniVersion: "1.0.0" });
      expect(u.stderr).toBe("");
      expect(u.code).toBe(0);
      expect(a.code).toBe(0);
      const strip = (r: { interfaces: { mac: string; sandbox: string }[]; cniVersion: string }) => ({
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
      expect(addrs(ours.cont, "net1")).toEqual(addrs(theirs.cont, "net1"));
      // each DELs what the other made
      expect((await run(ours, UPSTREAM, "DEL", conf(ours, { cniVersion: "1.0.0" }))).code).toBe(0);
      expect((await run(theirs, "vlan", "DEL", conf(theirs))).code).toBe(0);
      expect(links(ours.cont)).toEqual([]);
      expect(links(theirs.cont)).toEqual([]);
    },
  );
});

describe("vlan config (no kernel needed)", () => {
  test("vlanId out of range or missing, no master: code 7, nothing made", async () => {
    const b = bed("vl");
    for (const [extra, msg] of [
      [{ vlanId: 4095 }, "invalid VLAN ID 4095 (must be between 0 and 4094 inclusive)"],
      [{ vlanId: -1 }, "invalid VLAN ID -1 (must be between 0 and 4094 inclusive)"],
      [{ vlanId: undefined }, '"vlanId" field is required (0-4094)'],
      [
        { master: "" },
        '"master" field is required. It specifies the host interface name to create the VLAN for',
      ],
      [{ master: "../etc" }, "master:"],
    ] as const) {
      const r = await run(b, "vlan", "ADD", conf(b, extra));
      expect(r.code).toBe(1);
      expect(r.json.code).toBe(7);
      expect(r.json.msg).toContain(msg);
    }
    const wrongType = await run(b, "vlan", "ADD", conf(b, { vlanId: "42" }));
    expect(wrongType.json.code).toBe(6);
    expect(links(b.cont)).toEqual([]);
  });
});
