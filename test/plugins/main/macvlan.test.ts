/**
 * macvlan as a process in a throwaway host netns whose master is a veth; containers in other throwaway
 * netns. Kernel state with `ip -j -d link`, `ip -j addr`, `ip -j route`; traffic with ping; side by side
 * with upstream's /usr/lib/cni/macvlan on the same configs.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { cleanupAll, makeNetns, type TempNetns } from "../../helpers/netns.ts";
import {
  addrs,
  haveUpstream,
  ipLink,
  type LinkNet,
  linkNet,
  links,
  ping,
  pluginUnderTest,
  type RunOpts,
  reservations,
  routes,
  upVeth,
} from "./link-helpers.ts";

afterEach(() => cleanupAll());

const NET = "mvnet";

function net(): LinkNet {
  const n = linkNet("mvh");
  upVeth(n.host, "up0");
  return n;
}

const { conf, run, add } = pluginUnderTest({
  type: "macvlan",
  network: NET,
  base: { master: "up0" },
  ipam: { subnet: "10.71.0.0/24", gateway: "10.71.0.1", routes: [{ dst: "0.0.0.0/0" }] },
  noIpam: "empty",
});

const MAC = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/;

describe("macvlan ADD", () => {
  test("result, kind, mode, master, address and routes in the container", async () => {
    const n = net();
    const c = makeNetns("mvc");
    const r = await add(n, c, conf(n));
    expect(r).toEqual({
      cniVersion: "1.0.0",
      interfaces: [{ name: "eth0", mac: expect.stringMatching(MAC), sandbox: c.path }],
      ips: [{ interface: 0, address: "10.71.0.2/24", gateway: "10.71.0.1" }],
      routes: [{ dst: "0.0.0.0/0" }],
      dns: {},
    });
    const l = ipLink(c, "eth0");
    expect(l.linkinfo.info_kind).toBe("macvlan");
    expect(l.linkinfo.info_data.mode).toBe("bridge");
    expect(l.address).toBe(r.interfaces[0].mac);
    expect(l.mtu).toBe(1500);
    expect(l.link_netnsid).toBeNumber();
    expect(l.flags).toContain("UP");
    expect(addrs(c, "eth0")).toEqual(["10.71.0.2/24"]);
    expect(routes(c, "-4")).toEqual([
      { dst: "10.71.0.0/24", dev: "eth0", scope: "link", prefsrc: "10.71.0.2" },
      { dst: "default", gateway: "10.71.0.1", dev: "eth0" },
    ]);
    expect(c.run(["sysctl", "-n", "net.ipv4.conf.eth0.arp_notify"]).stdout.trim()).toBe("1");
    expect(reservations(n, NET)).toEqual(["10.71.0.2"]);
    // the host netns gains nothing
    expect(links(n.host).sort()).toEqual(["up0", "up0p"]);
  });

  test("the container interface may share its name with a host interface", async () => {
    const n = net();
    upVeth(n.host, "eth0");
    const c = makeNetns("mvc");
    await add(n, c, conf(n, { ipam: null }));
    expect(ipLink(c, "eth0").linkinfo.info_kind).toBe("macvlan");
    expect(ipLink(n.host, "eth0").linkinfo.info_kind).toBe("veth");
  });

  for (const mode of ["private", "vepa", "passthru", "source"] as const) {
    test(`mode ${mode}`, async () => {
      const n = net();
      const c = makeNetns("mvc");
      const config = conf(n, { mode, ipam: null });
      const r = await add(n, c, config);
      expect(ipLink(c, "eth0").linkinfo.info_data.mode).toBe(mode);
      const chk = await run(n, "CHECK", c, { ...config, prevResult: r });
      expect(chk.stdout + chk.stderr).toBe("");
      expect(chk.code).toBe(0);
    });
  }

  test("an unknown mode is code 7 and nothing is made", async () => {
    const n = net();
    const c = makeNetns("mvc");
    const r = await run(n, "ADD", c, conf(n, { mode: "bogus" }));
    expect(r.code).toBe(1);
    expect(r.json).toEqual({ cniVersion: "1.0.0", code: 7, msg: 'unknown macvlan mode: "bogus"' });
    expect(links(c)).toEqual([]);
    expect(reservations(n, NET)).toEqual([]);
  });

  test("mtu: below the master's is applied; above it is refused before anything is made", async () => {
    const n = net();
    const c = makeNetns("mvc");
    await add(n, c, conf(n, { mtu: 1400 }));
    expect(ipLink(c, "eth0").mtu).toBe(1400);
    const d = makeNetns("mvc");
    const big = await run(n, "ADD", d, conf(n, { mtu: 9000 }), { id: "ctr2" });
    expect(big.code).toBe(1);
    expect(big.json.code).toBe(7);
    expect(big.json.msg).toBe("invalid MTU 9000, must be [0, master MTU(1500)]");
    expect(links(d)).toEqual([]);
    expect(reservations(n, NET)).toEqual(["10.71.0.2"]);
  });

  test("mac: the config's, overridden by CNI_ARGS MAC, overridden by runtimeConfig.mac", async () => {
    const n = net();
    const cases: [object, string, string][] = [
      [{ mac: "02:00:00:00:aa:01" }, "", "02:00:00:00:aa:01"],
      [{ mac: "02:00:00:00:aa:01" }, "IgnoreUnknown=1;MAC=02:00:00:00:aa:02", "02:00:00:00:aa:02"],
      [
        { mac: "02:00:00:00:aa:01", runtimeConfig: { mac: "02-00-00-00-AA-03" } },
        "MAC=02:00:00:00:aa:02",
        "02:00:00:00:aa:03",
      ],
    ];
    for (const [extra, cniArgs, want] of cases) {
      const c = makeNetns("mvc");
      const r = await add(n, c, conf(n, { ...extra, ipam: null }), { cniArgs });
      expect(r.interfaces[0].mac).toBe(want);
      expect(ipLink(c, "eth0").address).toBe(want);
    }
    const bad = await run(n, "ADD", makeNetns("mvc"), conf(n, { ipam: null }), { cniArgs: "MAC=zz" });
    expect(bad.json.code).toBe(4);
  });

  test("bcqueuelen sets the broadcast queue length", async () => {
    const n = net();
    const c = makeNetns("mvc");
    await add(n, c, conf(n, { bcqueuelen: 321, ipam: null }));
    expect(ipLink(c, "eth0").linkinfo.info_data.bcqueuelen).toBe(321);
  });

  test("layer 2 only (empty ipam): up, no addresses, no routes, no ips in the result", async () => {
    const n = net();
    const c = makeNetns("mvc");
    const r = await add(n, c, conf(n, { ipam: null, dns: { nameservers: ["10.71.0.53"] } }));
    expect(r).toEqual({
      cniVersion: "1.0.0",
      interfaces: [{ name: "eth0", mac: expect.stringMatching(MAC), sandbox: c.path }],
      dns: { nameservers: ["10.71.0.53"] },
    });
    expect(ipLink(c, "eth0").flags).toContain("UP");
    expect(addrs(c, "eth0")).toEqual([]);
    expect(routes(c, "-4")).toEqual([]);
  });

  test("no master: the host's default route interface", async () => {
    const n = net();
    upVeth(n.host, "wan0");
    n.host.run(["ip", "addr", "add", "192.0.2.2/24", "dev", "wan0"]);
    n.host.run(["ip", "route", "add", "default", "via", "192.0.2.1"]);
    const c = makeNetns("mvc");
    const { master: _, ...noMaster } = conf(n, { ipam: null });
    await add(n, c, noMaster);
    const wan = ipLink(n.host, "wan0");
    expect(ipLink(c, "eth0").link_index).toBe(wan.ifindex);
  });

  test("no master and no default route: a clear error, nothing made", async () => {
    const n = net();
    const c = makeNetns("mvc");
    const { master: _, ...noMaster } = conf(n);
    const r = await run(n, "ADD", c, noMaster);
    expect(r.code).toBe(1);
    expect(r.json.msg).toContain("no default route interface found");
    expect(links(c)).toEqual([]);
    expect(reservations(n, NET)).toEqual([]);
  });

  test("linkInContainer: the master is in the container netns, by name or by default route", async () => {
    const n = net();
    const c = makeNetns("mvc");
    upVeth(c, "cup0");
    const r = await add(n, c, conf(n, { master: "cup0", linkInContainer: true, ipam: null }), {
      ifName: "net1",
    });
    const l = ipLink(c, "net1");
    expect(l.link).toBe("cup0");
    expect(l.link_netnsid).toBeUndefined();
    const chk = await run(
      n,
      "CHECK",
      c,
      { ...conf(n, { master: "cup0", linkInContainer: true, ipam: null }), prevResult: r },
      { ifName: "net1" },
    );
    expect(chk.stdout).toBe("");
    expect(chk.code).toBe(0);
    // default route in the container: its interface is the master
    c.run(["ip", "addr", "add", "198.51.100.2/24", "dev", "cup0"]);
    c.run(["ip", "route", "add", "default", "via", "198.51.100.1"]);
    const { master: _, ...noMaster } = conf(n, { linkInContainer: true, ipam: null });
    await add(n, c, noMaster, { ifName: "net2", id: "ctr2" });
    expect(ipLink(c, "net2").link).toBe("cup0");
    // the host's up0 is not visible from inside
    const miss = await run(n, "ADD", c, conf(n, { linkInContainer: true, ipam: null }), {
      ifName: "net3",
      id: "ctr3",
    });
    expect(miss.code).toBe(1);
    expect(miss.json.msg).toContain('failed to lookup master "up0" in the container netns');
  });

  test("two containers on one bridge-mode master ping each other", async () => {
    const n = net();
    const a = makeNetns("mvc");
    const b = makeNetns("mvc");
    const ra = await add(n, a, conf(n), { id: "ctrA" });
    const rb = await add(n, b, conf(n), { id: "ctrB" });
    const ipA = ra.ips[0].address.split("/")[0];
    const ipB = rb.ips[0].address.split("/")[0];
    expect(ipA).not.toBe(ipB);
    expect(ping(a, ipB)).toBe(true);
    expect(ping(b, ipA)).toBe(true);
  });

  test("private mode: two containers on one master cannot reach each other", async () => {
    const n = net();
    const a = makeNetns("mvc");
    const b = makeNetns("mvc");
    await add(n, a, conf(n, { mode: "private" }), { id: "ctrA" });
    const rb = await add(n, b, conf(n, { mode: "private" }), { id: "ctrB" });
    const one = a.run(["ping", "-c", "1", "-w", "1", rb.ips[0].address.split("/")[0]]);
    expect(one.code).not.toBe(0);
  });
});

describe("macvlan failures leave nothing behind", () => {
  test("a missing master: no link, no reservation", async () => {
    const n = net();
    const c = makeNetns("mvc");
    const r = await run(n, "ADD", c, conf(n, { master: "nosuch0" }));
    expect(r.code).toBe(1);
    expect(r.json.msg).toContain('failed to lookup master "nosuch0" in the host netns');
    expect(links(c)).toEqual([]);
    expect(reservations(n, NET)).toEqual([]);
  });

  test("IPAM exhausted: the second container gets no link", async () => {
    const n = net();
    const a = makeNetns("mvc");
    const b = makeNetns("mvc");
    const tiny = conf(n, { ipam: { ranges: [[{ subnet: "10.72.0.0/30" }]] } });
    await add(n, a, tiny, { id: "ctrA" });
    const r = await run(n, "ADD", b, tiny, { id: "ctrB" });
    expect(r.code).toBe(1);
    expect(r.json.msg).toContain("no IP addresses available");
    expect(links(b)).toEqual([]);
    expect(reservations(n, NET)).toEqual(["10.72.0.2"]);
  });

  test("a route with an unreachable gateway: no link, no reservation", async () => {
    const n = net();
    const c = makeNetns("mvc");
    const r = await run(
      n,
      "ADD",
      c,
      conf(n, { ipam: { routes: [{ dst: "10.50.0.0/16", gw: "172.16.0.1" }] } }),
    );
    expect(r.code).toBe(1);
    expect(r.json.msg).toContain("10.50.0.0/16 via 172.16.0.1");
    expect(links(c)).toEqual([]);
    expect(reservations(n, NET)).toEqual([]);
  });

  test("an interface name taken in the container: the existing one stays, no reservation", async () => {
    const n = net();
    const c = makeNetns("mvc");
    upVeth(c, "eth0");
    const r = await run(n, "ADD", c, conf(n));
    expect(r.code).toBe(1);
    expect(r.json.msg).toContain("EEXIST");
    expect(ipLink(c, "eth0").linkinfo.info_kind).toBe("veth");
    expect(reservations(n, NET)).toEqual([]);
  });
});

describe("macvlan DEL, CHECK, STATUS, GC", () => {
  test("DEL removes the link and the reservation; twice is fine; after the netns is gone too", async () => {
    const n = net();
    const c = makeNetns("mvc");
    const config = conf(n);
    await add(n, c, config);
    const d = await run(n, "DEL", c, config);
    expect(d.stdout + d.stderr).toBe("");
    expect(d.code).toBe(0);
    expect(links(c)).toEqual([]);
    expect(reservations(n, NET)).toEqual([]);
    expect((await run(n, "DEL", c, config)).code).toBe(0);

    const e = makeNetns("mvc");
    await add(n, e, config, { id: "ctr2" });
    const path = e.path;
    e.cleanup();
    expect((await run(n, "DEL", path, config, { id: "ctr2" })).code).toBe(0);
    expect(reservations(n, NET)).toEqual([]);
    expect((await run(n, "DEL", "", config, { id: "ctr2" })).code).toBe(0);
  });

  test("DEL does not need the master or a valid mode", async () => {
    const n = net();
    const c = makeNetns("mvc");
    const config = conf(n);
    await add(n, c, config);
    n.host.run(["ip", "link", "del", "up0"]);
    // the macvlan went with its master; DEL still releases the address
    const d = await run(n, "DEL", c, { ...config, mode: "bogus" });
    expect(d.code).toBe(0);
    expect(reservations(n, NET)).toEqual([]);
  });

  test("CHECK passes, then fails on a wrong mode, a missing address, a wrong master, a missing link", async () => {
    const n = net();
    upVeth(n.host, "up1");
    const c = makeNetns("mvc");
    const config = conf(n);
    const r = await add(n, c, config);
    const ok = await run(n, "CHECK", c, { ...config, prevResult: r });
    expect(ok.stdout + ok.stderr).toBe("");
    expect(ok.code).toBe(0);

    const mode = await run(n, "CHECK", c, { ...config, mode: "vepa", prevResult: r });
    expect(mode.json.msg).toBe("container macvlan mode bridge does not match expected value: vepa");

    const master = await run(n, "CHECK", c, { ...config, master: "up1", prevResult: r });
    expect(master.json.msg).toBe("container macvlan eth0 is not on master up1");

    const noPrev = await run(n, "CHECK", c, config);
    expect(noPrev.json.msg).toBe("Required prevResult missing");

    c.run(["ip", "addr", "flush", "dev", "eth0"]);
    const addr = await run(n, "CHECK", c, { ...config, prevResult: r });
    expect(addr.code).toBe(1);
    expect(addr.json.msg).toContain("Failed to match addr 10.71.0.2/24 on interface eth0");

    c.run(["ip", "link", "del", "eth0"]);
    const gone = await run(n, "CHECK", c, { ...config, prevResult: r });
    expect(gone.json.msg).toBe("Container Interface name in prevResult: eth0 not found");
  });

  test("CHECK on a link of another kind fails naming the kind", async () => {
    const n = net();
    const c = makeNetns("mvc");
    const config = conf(n, { ipam: null });
    const r = await add(n, c, config);
    c.run(["ip", "link", "del", "eth0"]);
    c.run([
      "ip",
      "link",
      "add",
      "eth0",
      "address",
      r.interfaces[0].mac,
      "type",
      "veth",
      "peer",
      "name",
      "x0",
    ]);
    const chk = await run(n, "CHECK", c, { ...config, prevResult: r });
    expect(chk.json.msg).toBe("Error: Container interface eth0 not of type macvlan (it is veth)");
  });

  test("STATUS and GC forward to IPAM", async () => {
    const n = net();
    const a = makeNetns("mvc");
    const b = makeNetns("mvc");
    const config = conf(n, { cniVersion: "1.1.0" });
    await add(n, a, config, { id: "ctrA" });
    await add(n, b, config, { id: "ctrB" });
    const gc = await run(n, "GC", "", {
      ...config,
      "cni.dev/valid-attachments": [{ containerID: "ctrB", ifname: "eth0" }],
    });
    expect(gc.stdout + gc.stderr).toBe("");
    expect(reservations(n, NET)).toEqual(["10.71.0.3"]);
    const st = await run(n, "STATUS", "", config);
    expect(st.code).toBe(0);
  });
});

describe.skipIf(!haveUpstream("macvlan"))("macvlan against upstream /usr/lib/cni/macvlan", () => {
  const DUAL = {
    ranges: [[{ subnet: "10.73.0.0/24" }], [{ subnet: "fd00:73::/64" }]],
    routes: [{ dst: "0.0.0.0/0" }, { dst: "::/0" }, { dst: "10.99.0.0/16", gw: "10.73.0.254" }],
  };
  const configs: [string, (n: LinkNet) => object, RunOpts][] = [
    ["dual-stack, mtu, routes", (n) => conf(n, { mtu: 1450, ipam: DUAL }), {}],
    [
      "mode vepa, layer 2, dns",
      (n) => conf(n, { mode: "vepa", ipam: null, dns: { nameservers: ["1.1.1.1"] } }),
      {},
    ],
    [
      "mode private, runtimeConfig mac",
      (n) => conf(n, { mode: "private", runtimeConfig: { mac: "02:aa:00:00:00:07" } }),
      {},
    ],
    ["CNI_ARGS MAC", (n) => conf(n, { ipam: null }), { cniArgs: "MAC=02:aa:00:00:00:08" }],
    // passthru takes the master's MAC (random per run), with or without a requested one
    ["passthru", (n) => conf(n, { mode: "passthru", ipam: null }), {}],
  ];
  /** What must match: the result without MACs unless set, the link's kernel state, addresses, routes. */
  function state(c: TempNetns, r: { interfaces: { mac: string }[] }, fixedMac: boolean) {
    const l = ipLink(c, "eth0");
    return {
      result: JSON.stringify(r, (k, v) => (k === "mac" && !fixedMac ? "MAC" : k === "sandbox" ? "NS" : v)),
      kind: l.linkinfo.info_kind,
      data: l.linkinfo.info_data,
      mtu: l.mtu,
      flags: l.flags,
      mac: fixedMac ? l.address : "MAC",
      addrs: addrs(c, "eth0"),
      routes4: routes(c, "-4"),
      routes6: routes(c, "-6"),
    };
  }
  for (const [name, make, o] of configs) {
    test(name, async () => {
      const ours = net();
      const theirs = net();
      const a = makeNetns("mvc");
      const b = makeNetns("mvc");
      const ro = await run(ours, "ADD", a, make(ours), o);
      const ru = await run(theirs, "ADD", b, make(theirs), { ...o, upstream: true });
      expect(ru.code).toBe(0);
      expect(ro.code).toBe(0);
      const fixed = name.includes("mac") || name.includes("MAC");
      expect(state(a, ro.json, fixed)).toEqual(state(b, ru.json, fixed));
      // each CHECKs the other's attachment the same way
      const co = await run(ours, "CHECK", a, { ...make(ours), prevResult: ro.json }, o);
      const cu = await run(
        theirs,
        "CHECK",
        b,
        { ...make(theirs), prevResult: ru.json },
        { ...o, upstream: true },
      );
      expect([co.code, cu.code]).toEqual([0, 0]);
      const dov = await run(ours, "DEL", a, make(ours), o);
      const du = await run(theirs, "DEL", b, make(theirs), { ...o, upstream: true });
      expect([dov.code, du.code]).toEqual([0, 0]);
      expect(links(a)).toEqual(links(b));
      expect(reservations(ours, NET)).toEqual(reservations(theirs, NET));
    });
  }

  test("bcqueuelen: Debian's 1.1.1 predates it (leaves the kernel's 1000), ours sets it", async () => {
    const ours = net();
    const theirs = net();
    const a = makeNetns("mvc");
    const b = makeNetns("mvc");
    expect((await run(ours, "ADD", a, conf(ours, { bcqueuelen: 777, ipam: null }))).code).toBe(0);
    const ru = await run(theirs, "ADD", b, conf(theirs, { bcqueuelen: 777, ipam: null }), { upstream: true });
    expect(ru.code).toBe(0);
    expect(ipLink(a, "eth0").linkinfo.info_data.bcqueuelen).toBe(777);
    expect(ipLink(b, "eth0").linkinfo.info_data.bcqueuelen).toBe(1000);
  });

  test("errors: unknown mode, MTU above the master's, missing master — same code class", async () => {
    const n = net();
    const c = makeNetns("mvc");
    for (const extra of [{ mtu: 9000 }, { master: "nosuch0" }]) {
      const ro = await run(n, "ADD", c, conf(n, extra));
      const ru = await run(n, "ADD", c, conf(n, extra), { upstream: true });
      expect(ro.code).toBe(1);
      expect(ru.code).toBe(1);
      expect(links(c)).toEqual([]);
    }
    expect(reservations(n, NET)).toEqual([]);
  });
});
