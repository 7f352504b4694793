/**
 * The bridge plugin under concurrency and failure, and side by side with upstream's Go plugin.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { cleanupAll, makeNetns, type TempNetns } from "../../helpers/netns.ts";
import { UPSTREAM_DIR } from "../_run.ts";
import {
  add,
  bridgeConf,
  call,
  globalAddrs,
  linkNames,
  makeWorld,
  portsOf,
  reservations,
  subnet,
  type World,
} from "./bridge-helpers.ts";

afterEach(() => cleanupAll());

describe("bridge concurrency", () => {
  test("32 concurrent ADDs on a bridge that does not exist yet: all succeed, distinct IPs, one bridge", async () => {
    const w = makeWorld();
    const ctrs = Array.from({ length: 32 }, () => makeNetns("c"));
    const conf = bridgeConf(w, { isGateway: true }, [[{ subnet: subnet().cidr }]]);
    const results = await Promise.all(
      ctrs.map((c, i) => call(w, "ADD", c, conf, { containerID: `ctr${i}` })),
    );
    const failed = results.filter((r) => r.code !== 0).map((r) => r.stdout);
    expect(failed).toEqual([]);
    const ips = new Set(results.map((r) => r.json.ips[0].address));
    expect(ips.size).toBe(32);
    const bridges = linkNames(w.host, "type", "bridge");
    expect(bridges).toEqual(["br0"]);
    expect(portsOf(w.host)).toHaveLength(32);
    expect(reservations(w)).toHaveLength(32);
  }, 120_000);
});

describe("bridge failure half-way leaves nothing behind", () => {
  function expectClean(w: World, ctr: TempNetns, ports: number, reserved: number): void {
    expect(portsOf(w.host)).toHaveLength(ports);
    expect(linkNames(w.host).filter((n) => n.startsWith("veth"))).toHaveLength(ports);
    expect(linkNames(ctr)).toEqual(["lo"]);
    expect(reservations(w)).toHaveLength(reserved);
  }

  test("IPAM exhausted: the second container gets nothing, the first keeps its address", async () => {
    const w = makeWorld();
    const [c1, c2] = [makeNetns("c"), makeNetns("c")];
    const net = subnet();
    const conf = bridgeConf(w, {}, [
      [{ subnet: net.cidr, rangeStart: `${net.prefix}.5`, rangeEnd: `${net.prefix}.5` }],
    ]);
    await add(w, c1, conf, { containerID: "a" });
    const r = await call(w, "ADD", c2, conf, { containerID: "b" });
    expect(r.code).toBe(1);
    expect(r.json.msg).toContain("no IP addresses available");
    expectClean(w, c2, 1, 1);
  }, 30_000);

  test("a route IPAM returns that cannot be added: veth, rules and reservation are rolled back", async () => {
    const w = makeWorld();
    const c1 = makeNetns("c");
    const conf = bridgeConf(w, { ipMasq: true, macspoofchk: true }, undefined, {
      routes: [{ dst: "10.250.0.0/16", gw: "192.168.254.1" }],
    });
    const r = await call(w, "ADD", c1, conf, { containerID: "bad" });
    expect(r.code).toBe(1);
    expect(r.json.msg).toContain("10.250.0.0/16");
    expectClean(w, c1, 0, 0);
    const nat = w.host.run(["nft", "-j", "list", "table", "bridge", "nat"]);
    const leftovers =
      nat.code === 0 ? JSON.parse(nat.stdout).nftables.filter((o: { rule?: unknown }) => o.rule) : [];
    expect(leftovers).toEqual([]);
  }, 30_000);
});

describe("bridge vs upstream", () => {
  function addrs(ns: TempNetns): string[] {
    return globalAddrs(ns, "eth0").map((a) => `${a.family} ${a.local}/${a.prefixlen}`);
  }

  interface RouteJson {
    dst: string;
    gateway?: string;
    dev?: string;
    protocol?: string;
    scope?: string;
  }

  function routes(ns: TempNetns): RouteJson[] {
    const all: RouteJson[] = [...ns.ip("-4", "route", "show"), ...ns.ip("-6", "route", "show")];
    return all
      .filter((r) => !r.dst.startsWith("fe80"))
      .map((r) => ({ dst: r.dst, gateway: r.gateway, dev: r.dev, protocol: r.protocol, scope: r.scope }));
  }

  /** The result with MACs, veth names and the netns path blanked. */
  function shape(r: { interfaces: { name: string; mac?: string; sandbox?: string }[] }): unknown {
    const out = structuredClone(r);
    for (const i of out.interfaces) {
      i.mac = "<mac>";
      if (i.name.startsWith("veth")) i.name = "<veth>";
      if (i.sandbox) i.sandbox = "<netns>";
    }
    return out;
  }

  test("same config through /usr/lib/cni/bridge: same result shape, container addresses and routes", async () => {
    const ours = makeWorld();
    const theirs = makeWorld();
    const [c1, c2] = [makeNetns("c"), makeNetns("c")];
    const net = subnet();
    const conf = (w: World) => ({
      ...bridgeConf(
        w,
        { isDefaultGateway: true, ipMasq: true, ipMasqBackend: "iptables", hairpinMode: true, mtu: 1450 },
        [[{ subnet: net.cidr }], [{ subnet: "fd66::/64" }]],
      ),
      // Upstream 1.1.1 speaks up to 1.0.0.
      cniVersion: "1.0.0",
    });
    const a = await add(ours, c1, conf(ours), { containerID: "same" });
    const b = await add(theirs, c2, conf(theirs), {
      containerID: "same",
      plugin: `${UPSTREAM_DIR}/bridge`,
      cniPath: UPSTREAM_DIR,
    });
    expect(shape(a)).toEqual(shape(b));
    expect(addrs(c1)).toEqual(addrs(c2));
    expect(routes(c1)).toEqual(routes(c2));
    expect(c1.ip("link", "show", "eth0")[0].mtu).toBe(c2.ip("link", "show", "eth0")[0].mtu);
    const brAddrs = (w: World) => globalAddrs(w.host, "br0").map((x) => `${x.local}/${x.prefixlen}`);
    expect(brAddrs(ours)).toEqual(brAddrs(theirs));
  }, 30_000);
});
