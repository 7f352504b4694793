/**
 * host-device as a process in a throwaway host netns: a veth there is the "host device" moved into a
 * container netns and back. Kernel state with `ip -j -d link` / `ip -j addr` / `ip -j route`; side by
 * side with upstream's /usr/lib/cni/host-device. kernelpath and pciBusID select real hardware, which a
 * test must not move: only their validation is tested.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { cleanupAll, makeNetns, type TempNetns } from "../../helpers/netns.ts";
import {
  addrs,
  hasLink,
  haveUpstream,
  ipLink,
  type LinkNet,
  linkNet,
  links,
  pluginUnderTest,
  reservations,
  routes,
  upVeth,
} from "./link-helpers.ts";

afterEach(() => cleanupAll());

const NET = "hdnet";

function net(): LinkNet {
  const n = linkNet("hdh");
  upVeth(n.host, "dev0");
  n.host.run(["ip", "link", "set", "dev0", "mtu", "1420", "address", "02:00:00:00:d0:01"]);
  return n;
}

const { conf, run, add } = pluginUnderTest({
  type: "host-device",
  network: NET,
  ipam: { subnet: "10.74.0.0/24", gateway: "10.74.0.1", routes: [{ dst: "10.200.0.0/16" }] },
  noIpam: "omit",
});

describe("host-device ADD", () => {
  for (const [how, sel] of [
    ["device", { device: "dev0" }],
    ["hwaddr", { hwaddr: "02:00:00:00:D0:01" }],
  ] as const) {
    test(`by ${how}: moved in as CNI_IFNAME, up, its MTU and MAC kept, alias = original name`, async () => {
      const n = net();
      const c = makeNetns("hdc");
      const r = await add(n, c, conf(n, sel));
      expect(r).toEqual({
        cniVersion: "1.0.0",
        interfaces: [{ name: "eth0", mac: "02:00:00:00:d0:01", sandbox: c.path }],
        ips: [{ interface: 0, address: "10.74.0.2/24", gateway: "10.74.0.1" }],
        routes: [{ dst: "10.200.0.0/16" }],
        dns: {},
      });
      expect(hasLink(n.host, "dev0")).toBe(false);
      const l = ipLink(c, "eth0");
      expect(l.ifalias).toBe("dev0");
      expect(l.mtu).toBe(1420);
      expect(l.address).toBe("02:00:00:00:d0:01");
      expect(l.flags).toContain("UP");
      expect(addrs(c, "eth0")).toEqual(["10.74.0.2/24"]);
      expect(routes(c, "-4")).toContainEqual({ dst: "10.200.0.0/16", gateway: "10.74.0.1", dev: "eth0" });
      expect(reservations(n, NET)).toEqual(["10.74.0.2"]);
    });
  }

  test("layer 2 only: just the interface", async () => {
    const n = net();
    const c = makeNetns("hdc");
    const r = await add(n, c, conf(n, { device: "dev0", ipam: null }), { ifName: "net1" });
    expect(r).toEqual({
      cniVersion: "1.0.0",
      interfaces: [{ name: "net1", mac: "02:00:00:00:d0:01", sandbox: c.path }],
      dns: {},
    });
    expect(ipLink(c, "net1").ifalias).toBe("dev0");
  });

  test("selection errors: none given, bad hwaddr, bad kernelpath, unknown PCI and deviceID, missing device", async () => {
    const n = net();
    const c = makeNetns("hdc");
    const cases: [Record<string, unknown>, number, string][] = [
      [{}, 7, 'specify either "device", "hwaddr", "kernelpath" or "pciBusID"'],
      [{ hwaddr: "zz" }, 7, 'failed to parse MAC address "zz"'],
      [{ kernelpath: "/tmp/x" }, 7, "must be absolute and begin with /sys/devices/"],
      [{ kernelpath: "/sys/devices/../x" }, 7, "must be absolute and begin with /sys/devices/"],
      [{ pciBusID: "0000:ff:1f.7" }, 999, "no driver for PCI device 0000:ff:1f.7"],
      [
        { runtimeConfig: { deviceID: "nosuch" } },
        7,
        "runtime config DeviceID nosuch not found or unsupported",
      ],
      [{ device: "nosuch0" }, 999, "failed to find host device (device nosuch0): Link not found"],
      [{ hwaddr: "02:00:00:00:ee:ee" }, 999, "Link not found"],
    ];
    for (const [sel, code, msg] of cases) {
      const r = await run(n, "ADD", c, conf(n, sel));
      expect(r.code).toBe(1);
      expect(r.json.code).toBe(code);
      expect(r.json.msg).toContain(msg);
    }
    expect(links(c)).toEqual([]);
    expect(reservations(n, NET)).toEqual([]);
  });

  test("a name taken in the container: nothing moves, no reservation", async () => {
    const n = net();
    const c = makeNetns("hdc");
    upVeth(c, "eth0");
    const r = await run(n, "ADD", c, conf(n, { device: "dev0" }));
    expect(r.code).toBe(1);
    expect(r.json.msg).toContain("the container netns already has a link named eth0");
    expect(ipLink(n.host, "dev0").flags).toContain("UP");
    expect(reservations(n, NET)).toEqual([]);
  });

  test("a failure after the move (bad route) moves it back, up as before, and releases the address", async () => {
    const n = net();
    const c = makeNetns("hdc");
    const bad = conf(n, { device: "dev0", ipam: { routes: [{ dst: "10.50.0.0/16", gw: "172.16.0.1" }] } });
    const r = await run(n, "ADD", c, bad);
    expect(r.code).toBe(1);
    expect(links(c)).toEqual([]);
    const l = ipLink(n.host, "dev0");
    expect(l.flags).toContain("UP");
    expect(l.ifalias).toBeUndefined();
    expect(reservations(n, NET)).toEqual([]);
  });
});

describe("host-device DEL, CHECK", () => {
  test("DEL moves it back under its original name, down, without alias or addresses; twice is fine", async () => {
    const n = net();
    const c = makeNetns("hdc");
    const config = conf(n, { device: "dev0" });
    await add(n, c, config);
    const d = await run(n, "DEL", c, config);
    expect(d.stdout + d.stderr).toBe("");
    expect(d.code).toBe(0);
    expect(links(c)).toEqual([]);
    const l = ipLink(n.host, "dev0");
    expect(l.ifalias).toBeUndefined();
    expect(l.mtu).toBe(1420);
    expect(l.address).toBe("02:00:00:00:d0:01");
    expect(l.flags).not.toContain("UP");
    expect(addrs(n.host, "dev0")).toEqual([]);
    expect(reservations(n, NET)).toEqual([]);
    expect((await run(n, "DEL", c, config)).code).toBe(0);
    expect(hasLink(n.host, "dev0")).toBe(true);
  });

  test("DEL while another link took the name: fails clearly, the device and its address stay", async () => {
    const n = net();
    const c = makeNetns("hdc");
    const config = conf(n, { device: "dev0" });
    await add(n, c, config);
    n.host.run(["ip", "link", "add", "dev0", "type", "veth", "peer", "name", "other0"]);
    const d = await run(n, "DEL", c, config);
    expect(d.code).toBe(1);
    expect(d.json.msg).toBe(
      "moving eth0 to the host netns as dev0: the host netns already has a link named dev0",
    );
    expect(ipLink(c, "eth0").ifalias).toBe("dev0");
    expect(addrs(c, "eth0")).toEqual(["10.74.0.2/24"]);
    expect(reservations(n, NET)).toEqual(["10.74.0.2"]);
    // once the name is free again, DEL completes
    n.host.run(["ip", "link", "del", "dev0"]);
    expect((await run(n, "DEL", c, config)).code).toBe(0);
    expect(ipLink(n.host, "dev0").address).toBe("02:00:00:00:d0:01");
  });

  test("DEL without an alias refuses; DEL after the netns is gone succeeds", async () => {
    const n = net();
    const c = makeNetns("hdc");
    const config = conf(n, { device: "dev0" });
    await add(n, c, config);
    c.run(["ip", "link", "set", "eth0", "alias", ""]);
    const d = await run(n, "DEL", c, config);
    // `ip link set alias ""` keeps an empty alias; the kernel then reports none
    expect(d.code).toBe(1);
    expect(d.json.msg).toContain("alias is not set");
    const path = c.path;
    c.cleanup();
    expect((await run(n, "DEL", path, config)).code).toBe(0);
    expect(reservations(n, NET)).toEqual([]);
  });

  test("CHECK passes, fails on a changed MAC and a missing address", async () => {
    const n = net();
    const c = makeNetns("hdc");
    const config = conf(n, { device: "dev0" });
    const r = await add(n, c, config);
    const ok = await run(n, "CHECK", c, { ...config, prevResult: r });
    expect(ok.stdout + ok.stderr).toBe("");
    expect(ok.code).toBe(0);
    c.run(["ip", "addr", "flush", "dev", "eth0"]);
    const addr = await run(n, "CHECK", c, { ...config, prevResult: r });
    expect(addr.json.msg).toContain("Failed to match addr 10.74.0.2/24");
    c.run(["ip", "link", "set", "eth0", "address", "02:00:00:00:d0:99"]);
    const mac = await run(n, "CHECK", c, { ...config, prevResult: r });
    expect(mac.json.msg).toBe(
      "Interface eth0 Mac 02:00:00:00:d0:01 doesn't match container Mac: 02:00:00:00:d0:99",
    );
  });
});

describe.skipIf(!haveUpstream("host-device"))("host-device against upstream /usr/lib/cni/host-device", () => {
  test("same result and kernel state after ADD and after DEL", async () => {
    const ours = net();
    const theirs = net();
    const a = makeNetns("hdc");
    const b = makeNetns("hdc");
    const config = (n: LinkNet) => conf(n, { device: "dev0" });
    const ro = await run(ours, "ADD", a, config(ours));
    const ru = await run(theirs, "ADD", b, config(theirs), { upstream: true });
    expect(ru.code).toBe(0);
    expect(ro.code).toBe(0);
    const norm = (j: object) => JSON.stringify(j, (k, v) => (k === "sandbox" ? "NS" : v));
    expect(norm(ro.json)).toBe(norm(ru.json));
    const view = (c: TempNetns, dev: string) => {
      const l = ipLink(c, dev);
      return {
        alias: l.ifalias,
        mtu: l.mtu,
        mac: l.address,
        flags: l.flags,
        addrs: addrs(c, dev),
        r: routes(c, "-4"),
      };
    };
    expect(view(a, "eth0")).toEqual(view(b, "eth0"));
    expect((await run(ours, "DEL", a, config(ours))).code).toBe(0);
    expect((await run(theirs, "DEL", b, config(theirs), { upstream: true })).code).toBe(0);
    // Debian's 1.1.1 leaves the alias on the device; v1.9 (and we) clear it
    expect(ipLink(theirs.host, "dev0").ifalias).toBe("dev0");
    expect({ ...view(ours.host, "dev0"), alias: "dev0" }).toEqual(view(theirs.host, "dev0"));
    expect(reservations(ours, NET)).toEqual(reservations(theirs, NET));
  });
});
