/**
 * The bridge plugin on the real kernel: host side in a throwaway host netns, containers in throwaway
 * netns, the plugin and our host-local run as processes; ip -j / bridge -j are the oracles.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { cleanupAll, forwardingOff, makeNetns } from "../../helpers/netns.ts";
import {
  add,
  addrOf,
  bridgeConf,
  call,
  globalAddrs,
  linkNames,
  makeWorld,
  ping,
  portInfo,
  portsOf,
  reservations,
  subnet,
} from "./bridge-helpers.ts";

afterEach(() => cleanupAll());

const T = 30_000;

describe("bridge ADD", () => {
  test(
    "two containers on one bridge ping each other; result shape like upstream",
    async () => {
      const w = makeWorld();
      const [c1, c2] = [makeNetns("c"), makeNetns("c")];
      const conf = bridgeConf(w);
      const r1 = await add(w, c1, conf, { containerID: "a" });
      // Without isGateway the bridge's MAC is not pinned (as upstream): it follows its lowest port's MAC,
      // so compare before the second port can change it.
      const bridgeMacAfterFirst = w.host.ip("link", "show", "br0")[0].address;
      await add(w, c2, conf, { containerID: "b" });

      expect(r1.interfaces.map((i: { name: string }) => i.name)).toEqual([
        "br0",
        expect.stringMatching(/^veth/),
        "eth0",
      ]);
      expect(r1.interfaces[2].sandbox).toBe(c1.path);
      expect(r1.interfaces[2].mac).toBe(c1.ip("link", "show", "eth0")[0].address);
      expect(r1.interfaces[0].mac).toBe(bridgeMacAfterFirst);
      expect(r1.ips).toHaveLength(1);
      expect(r1.ips[0].interface).toBe(2);
      expect(r1.ips[0].address).toBe(`${addrOf(c1, 4)}/24`);

      const br = w.host.ip("-d", "link", "show", "br0")[0];
      expect(br.linkinfo.info_kind).toBe("bridge");
      expect(br.flags).toContain("UP");
      expect(portsOf(w.host)).toContain(r1.interfaces[1].name);
      expect(portsOf(w.host)).toHaveLength(2);
      // Not a gateway network: no address on the bridge.
      expect(w.host.ip("-4", "addr", "show", "br0")[0]?.addr_info ?? []).toHaveLength(0);
      expect(ping(c1, addrOf(c2, 4))).toBe(true);
      expect(ping(c2, addrOf(c1, 4))).toBe(true);
    },
    T,
  );

  test(
    "isGateway puts the gateway on the bridge, turns forwarding on, containers reach it",
    async () => {
      const w = makeWorld();
      const c1 = makeNetns("c");
      const net = subnet();
      forwardingOff(w.host);
      const r = await add(w, c1, bridgeConf(w, { isGateway: true }, [[{ subnet: net.cidr }]]));
      expect(r.ips[0].gateway).toBe(`${net.prefix}.1`);
      const brAddrs = globalAddrs(w.host, "br0", 4).map((a) => `${a.local}/${a.prefixlen}`);
      expect(brAddrs).toEqual([`${net.prefix}.1/24`]);
      expect(w.host.run(["sysctl", "-n", "net.ipv4.ip_forward"]).stdout.trim()).toBe("1");
      expect(ping(c1, `${net.prefix}.1`)).toBe(true);
      // isGateway alone adds no default route.
      expect(c1.ip("-4", "route", "show", "default")).toEqual([]);
    },
    T,
  );

  test(
    "isDefaultGateway adds a default route via the gateway per family",
    async () => {
      const w = makeWorld();
      const c1 = makeNetns("c");
      const net = subnet();
      const r = await add(
        w,
        c1,
        bridgeConf(w, { isDefaultGateway: true }, [[{ subnet: net.cidr }], [{ subnet: "fd77::/64" }]]),
      );
      expect(r.routes).toEqual([
        { dst: "0.0.0.0/0", gw: `${net.prefix}.1` },
        { dst: "::/0", gw: "fd77::1" },
      ]);
      expect(c1.ip("-4", "route", "show", "default")[0].gateway).toBe(`${net.prefix}.1`);
      expect(c1.ip("-6", "route", "show", "default")[0].gateway).toBe("fd77::1");
      expect(ping(c1, "fd77::1")).toBe(true);
    },
    T,
  );

  test(
    "dual-stack: both families on both containers, IPv6 ping, DAD off by default",
    async () => {
      const w = makeWorld();
      const [c1, c2] = [makeNetns("c"), makeNetns("c")];
      const conf = bridgeConf(w, {}, [[{ subnet: subnet().cidr }], [{ subnet: "fd78::/64" }]]);
      const r = await add(w, c1, conf, { containerID: "a" });
      await add(w, c2, conf, { containerID: "b" });
      expect(r.ips.map((i: { address: string }) => i.address)).toEqual([
        `${addrOf(c1, 4)}/24`,
        `${addrOf(c1, 6)}/64`,
      ]);
      const v6 = globalAddrs(c1, "eth0", 6);
      expect(v6).toHaveLength(1);
      expect(v6[0]?.tentative).toBeUndefined();
      expect(c1.run(["sysctl", "-n", "net.ipv6.conf.eth0.accept_dad"]).stdout.trim()).toBe("0");
      expect(ping(c1, addrOf(c2, 6))).toBe(true);
      expect(ping(c2, addrOf(c1, 4))).toBe(true);
    },
    T,
  );

  test(
    "enabledad keeps DAD on (enhanced) in the container; the address is settled when ADD returns",
    async () => {
      const w = makeWorld();
      const c1 = makeNetns("c");
      await add(w, c1, bridgeConf(w, { enabledad: true }, [[{ subnet: "fd79::/64" }]]));
      expect(c1.run(["sysctl", "-n", "net.ipv6.conf.eth0.accept_dad"]).stdout.trim()).toBe("1");
      expect(c1.run(["sysctl", "-n", "net.ipv6.conf.eth0.enhanced_dad"]).stdout.trim()).toBe("1");
      const v6 = globalAddrs(c1, "eth0", 6);
      expect(v6.map((a) => a.local)).toEqual(["fd79::2"]);
      expect(v6[0]?.tentative).toBeUndefined();
    },
    T,
  );

  test(
    "mtu applies to the new bridge, the host veth and the container end",
    async () => {
      const w = makeWorld();
      const c1 = makeNetns("c");
      const r = await add(w, c1, bridgeConf(w, { mtu: 1400 }));
      expect(c1.ip("link", "show", "eth0")[0].mtu).toBe(1400);
      expect(w.host.ip("link", "show", r.interfaces[1].name)[0].mtu).toBe(1400);
      expect(w.host.ip("link", "show", "br0")[0].mtu).toBe(1400);
    },
    T,
  );

  test(
    "promiscMode sets the bridge promiscuous",
    async () => {
      const w = makeWorld();
      const c1 = makeNetns("c");
      await add(w, c1, bridgeConf(w, { promiscMode: true }));
      expect(w.host.ip("link", "show", "br0")[0].flags).toContain("PROMISC");
    },
    T,
  );

  test(
    "hairpinMode sets the hairpin flag on the port; off otherwise",
    async () => {
      const w = makeWorld();
      const [c1, c2] = [makeNetns("c"), makeNetns("c")];
      const on = await add(w, c1, bridgeConf(w, { hairpinMode: true }), { containerID: "a" });
      const off = await add(w, c2, bridgeConf(w), { containerID: "b" });
      expect(portInfo(w.host, on.interfaces[1].name).hairpin).toBe(true);
      expect(portInfo(w.host, off.interfaces[1].name).hairpin).toBe(false);
    },
    T,
  );

  test(
    "portIsolation: isolated ports cannot reach each other, but still reach the gateway",
    async () => {
      const w = makeWorld();
      const [c1, c2, c3] = [makeNetns("c"), makeNetns("c"), makeNetns("c")];
      const net = subnet();
      const isolated = bridgeConf(w, { portIsolation: true, isGateway: true }, [[{ subnet: net.cidr }]]);
      const r1 = await add(w, c1, isolated, { containerID: "a" });
      await add(w, c2, isolated, { containerID: "b" });
      await add(w, c3, bridgeConf(w, { isGateway: true }, [[{ subnet: net.cidr }]]), { containerID: "c" });
      expect(portInfo(w.host, r1.interfaces[1].name).isolated).toBe(true);
      expect(ping(c1, addrOf(c2, 4))).toBe(false);
      expect(ping(c1, `${net.prefix}.1`)).toBe(true);
      // An isolated port still talks to a non-isolated one.
      expect(ping(c1, addrOf(c3, 4))).toBe(true);
    },
    T,
  );

  test(
    "MAC comes from runtimeConfig, else args.cni, else CNI_ARGS",
    async () => {
      const w = makeWorld();
      const [c1, c2, c3] = [makeNetns("c"), makeNetns("c"), makeNetns("c")];
      const env = "IgnoreUnknown=1;MAC=0a:11:22:33:44:01";
      const r1 = await add(w, c1, bridgeConf(w), { containerID: "a", cniArgs: env });
      const r2 = await add(w, c2, bridgeConf(w, { args: { cni: { mac: "0a:11:22:33:44:02" } } }), {
        containerID: "b",
        cniArgs: env,
      });
      await add(
        w,
        c3,
        bridgeConf(w, {
          args: { cni: { mac: "0a:11:22:33:44:02" } },
          runtimeConfig: { mac: "0a:11:22:33:44:03" },
        }),
        { containerID: "c", cniArgs: env },
      );
      expect(c1.ip("link", "show", "eth0")[0].address).toBe("0a:11:22:33:44:01");
      expect(r1.interfaces[2].mac).toBe("0a:11:22:33:44:01");
      expect(c2.ip("link", "show", "eth0")[0].address).toBe("0a:11:22:33:44:02");
      expect(r2.interfaces[2].mac).toBe("0a:11:22:33:44:02");
      expect(c3.ip("link", "show", "eth0")[0].address).toBe("0a:11:22:33:44:03");
    },
    T,
  );

  test(
    "disableContainerInterface: layer 2 only, container interface left down",
    async () => {
      const w = makeWorld();
      const c1 = makeNetns("c");
      const { ipam: _ipam, ...conf } = bridgeConf(w, { disableContainerInterface: true });
      const r = await add(w, c1, conf);
      expect(r.ips).toBeUndefined();
      const link = c1.ip("link", "show", "eth0")[0];
      expect(link.flags).not.toContain("UP");
      expect(portsOf(w.host)).toEqual([r.interfaces[1].name]);
    },
    T,
  );

  test(
    "no IPAM: layer 2 attachment with the interface up and no addresses",
    async () => {
      const w = makeWorld();
      const c1 = makeNetns("c");
      const { ipam: _ipam, ...conf } = bridgeConf(w);
      const r = await add(w, c1, conf);
      expect(r.ips).toBeUndefined();
      expect(c1.ip("link", "show", "eth0")[0].flags).toContain("UP");
      expect(c1.ip("-4", "addr", "show", "eth0")[0]?.addr_info ?? []).toHaveLength(0);
    },
    T,
  );

  test(
    "the config's dns replaces IPAM's",
    async () => {
      const w = makeWorld();
      const c1 = makeNetns("c");
      const r = await add(
        w,
        c1,
        bridgeConf(w, { dns: { nameservers: ["10.9.9.9"], search: ["x.example"] } }),
      );
      expect(r.dns).toEqual({ nameservers: ["10.9.9.9"], search: ["x.example"] });
    },
    T,
  );

  test(
    "an existing different gateway address: error without forceAddress (nothing left), replaced with it",
    async () => {
      const w = makeWorld();
      const [c1, c2] = [makeNetns("c"), makeNetns("c")];
      const net = subnet();
      w.host.run(["ip", "link", "add", "br0", "type", "bridge"]);
      w.host.run(["ip", "addr", "add", `${net.prefix}.99/24`, "dev", "br0"]);
      const conf = bridgeConf(w, { isGateway: true }, [[{ subnet: net.cidr }]]);
      const bad = await call(w, "ADD", c1, conf, { containerID: "a" });
      expect(bad.code).toBe(1);
      expect(bad.json.msg).toContain(`"br0" already has an IP address different from ${net.prefix}.1/24`);
      expect(portsOf(w.host)).toEqual([]);
      expect(linkNames(c1)).toEqual(["lo"]);
      expect(reservations(w)).toEqual([]);

      await add(w, c2, { ...conf, forceAddress: true }, { containerID: "b" });
      const addrs = globalAddrs(w.host, "br0", 4).map((a) => a.local);
      expect(addrs).toEqual([`${net.prefix}.1`]);
    },
    T,
  );

  test(
    "a link with the bridge's name that is not a bridge is refused",
    async () => {
      const w = makeWorld();
      const c1 = makeNetns("c");
      w.host.run(["ip", "link", "add", "br0", "type", "veth", "peer", "name", "brp"]);
      const r = await call(w, "ADD", c1, bridgeConf(w));
      expect(r.code).toBe(1);
      expect(r.json.msg).toContain('"br0" already exists but is not a bridge');
      expect(reservations(w)).toEqual([]);
    },
    T,
  );
  test(
    "a repeated ADD of the same attachment fails and leaves the first one intact",
    async () => {
      const w = makeWorld();
      const c1 = makeNetns("c");
      const conf = bridgeConf(w);
      const r = await add(w, c1, conf);
      const again = await call(w, "ADD", c1, conf);
      expect(again.code).toBe(1);
      expect(again.json.msg).toContain("already exists");
      expect(reservations(w)).toEqual([r.ips[0].address.split("/")[0]]);
      expect(portsOf(w.host)).toEqual([r.interfaces[1].name]);
      expect(globalAddrs(c1, "eth0", 4).map((a) => a.local)).toEqual([r.ips[0].address.split("/")[0]]);
    },
    T,
  );
});
