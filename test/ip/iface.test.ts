import { afterEach, describe, expect, test } from "bun:test";
import { checkIface, configureIface, ipsForIface, parseNet } from "../../src/ip/iface.ts";
import { setupVeth } from "../../src/ip/veth.ts";
import type { Result } from "../../src/spec/types.ts";
import { cleanupAll, makeNetns, type TempNetns } from "../helpers/netns.ts";

afterEach(() => cleanupAll());

function containerWithVeth(): { host: TempNetns; cont: TempNetns } {
  const host = makeNetns("ih");
  const cont = makeNetns("ic");
  setupVeth({
    hostSock: host.sock,
    hostNs: host.ns,
    contNs: cont.ns,
    contSock: cont.sock,
    contIfName: "eth0",
  });
  return { host, cont };
}

function dualStack(): Result {
  return {
    cniVersion: "1.1.0",
    interfaces: [{ name: "vethhost" }, { name: "eth0", sandbox: "/x" }],
    ips: [
      { interface: 1, address: "10.9.0.5/24", gateway: "10.9.0.1" },
      { interface: 1, address: "fd00:9::5/64", gateway: "fd00:9::1" },
      // for another interface: left alone
      { interface: 0, address: "10.8.0.1/24" },
    ],
    routes: [
      { dst: "0.0.0.0/0" },
      { dst: "192.168.7.0/24", gw: "10.9.0.254" },
      { dst: "::/0" },
      { dst: "10.77.0.0/16", priority: 50, table: 100 },
    ],
  };
}

interface IpAddr {
  ifname: string;
  addr_info: { family: string; local: string; prefixlen: number; tentative?: boolean }[];
}
interface IpRoute {
  dst: string;
  gateway?: string;
  dev?: string;
  metric?: number;
}

function addrsOf(n: TempNetns, dev: string): string[] {
  const out = n.ip("addr", "show", "dev", dev) as IpAddr[];
  return (out[0]?.addr_info ?? [])
    .filter((a) => !a.local.startsWith("fe80"))
    .map((a) => `${a.local}/${a.prefixlen}`)
    .sort();
}

describe("parseNet / ipsForIface", () => {
  test("parseNet canonicalises and masks", () => {
    expect(parseNet("10.1.2.3/24")).toEqual({
      family: 4,
      ip: "10.1.2.3",
      prefix: 24,
      network: "10.1.2.0/24",
    });
    expect(parseNet("FD00:0::0005/64")?.network).toBe("fd00::/64");
    expect(parseNet("nope")).toBeUndefined();
  });

  test("ipsForIface picks the IPs whose interface index names ifName", () => {
    expect(ipsForIface(dualStack(), "eth0").map((i) => i.address)).toEqual(["10.9.0.5/24", "fd00:9::5/64"]);
  });
});

describe("configureIface", () => {
  test("adds addresses, brings the link up, settles IPv6 and adds the routes", async () => {
    const { cont } = containerWithVeth();
    await configureIface(cont.sock, cont.ns, "eth0", dualStack());
    expect(addrsOf(cont, "eth0")).toEqual(["10.9.0.5/24", "fd00:9::5/64"]);
    const info = (cont.ip("addr", "show", "dev", "eth0") as IpAddr[])[0]?.addr_info ?? [];
    expect(info.filter((a) => a.family === "inet6" && !a.local.startsWith("fe80") && a.tentative)).toEqual(
      [],
    );
    const link = cont.ip("link", "show", "dev", "eth0")[0];
    expect(link.flags).toContain("UP");
    const v4 = cont.ip("-4", "route", "show") as IpRoute[];
    expect(v4).toContainEqual(expect.objectContaining({ dst: "default", gateway: "10.9.0.1", dev: "eth0" }));
    expect(v4).toContainEqual(expect.objectContaining({ dst: "192.168.7.0/24", gateway: "10.9.0.254" }));
    const v6 = cont.ip("-6", "route", "show") as IpRoute[];
    expect(v6).toContainEqual(expect.objectContaining({ dst: "default", gateway: "fd00:9::1", dev: "eth0" }));
    const t100 = cont.ip("-4", "route", "show", "table", "100") as IpRoute[];
    expect(t100).toContainEqual(
      expect.objectContaining({ dst: "10.77.0.0/16", gateway: "10.9.0.1", metric: 50 }),
    );
    // the other interface's address went nowhere
    expect(JSON.stringify(cont.ip("addr", "show"))).not.toContain("10.8.0.1");
  });

  test("leaves DAD alone (upstream ConfigureIface; bridge decides it itself)", async () => {
    const { cont } = containerWithVeth();
    const r: Result = {
      cniVersion: "1.1.0",
      interfaces: [{ name: "eth0" }],
      ips: [{ interface: 0, address: "fd00:9::7/64" }],
    };
    await configureIface(cont.sock, cont.ns, "eth0", r);
    expect(cont.run(["sysctl", "-n", "net.ipv6.conf.eth0.accept_dad"]).stdout.trim()).not.toBe("0");
    expect(addrsOf(cont, "eth0")).toEqual(["fd00:9::7/64"]);
  });

  test("a route whose gateway is unreachable fails saying which route", async () => {
    const { cont } = containerWithVeth();
    const r: Result = {
      cniVersion: "1.1.0",
      interfaces: [{ name: "eth0" }],
      ips: [{ interface: 0, address: "10.9.0.5/24" }],
      routes: [{ dst: "10.50.0.0/16", gw: "172.16.0.1" }],
    };
    await expect(configureIface(cont.sock, cont.ns, "eth0", r)).rejects.toThrow(
      /configuring eth0: adding route 10\.50\.0\.0\/16 via 172\.16\.0\.1 dev eth0: ENETUNREACH/,
    );
  });

  test("a missing link or no interfaces fail", async () => {
    const { cont } = containerWithVeth();
    await expect(configureIface(cont.sock, cont.ns, "eth9", dualStack())).rejects.toThrow(/eth9/);
    await expect(configureIface(cont.sock, cont.ns, "eth0", { cniVersion: "1.1.0" })).rejects.toThrow(
      "no interfaces to configure",
    );
  });
});

describe("checkIface", () => {
  test("passes on what configureIface made, fails naming what is missing", async () => {
    const { cont } = containerWithVeth();
    const r = dualStack();
    await configureIface(cont.sock, cont.ns, "eth0", r);
    checkIface(cont.sock, "eth0", r);

    cont.run(["ip", "route", "del", "192.168.7.0/24"]);
    expect(() => checkIface(cont.sock, "eth0", r)).toThrow(
      "Expected Route 192.168.7.0/24 via 10.9.0.254 not found in routing table",
    );
    cont.run(["ip", "addr", "del", "fd00:9::5/64", "dev", "eth0"]);
    expect(() => checkIface(cont.sock, "eth0", r)).toThrow(
      "Failed to match addr fd00:9::5/64 on interface eth0",
    );
    expect(() => checkIface(cont.sock, "eth1", r)).toThrow("Cannot find container link eth1");
  });

  test("an address with a different prefix length does not match", async () => {
    const { cont } = containerWithVeth();
    cont.run(["ip", "addr", "add", "10.9.0.5/16", "dev", "eth0"]);
    const r: Result = {
      cniVersion: "1.1.0",
      interfaces: [{ name: "eth0" }],
      ips: [{ interface: 0, address: "10.9.0.5/24" }],
    };
    expect(() => checkIface(cont.sock, "eth0", r)).toThrow("Failed to match addr 10.9.0.5/24");
  });

  test("IPs without an interface index (old result versions) are checked too", async () => {
    const { cont } = containerWithVeth();
    const r: Result = {
      cniVersion: "0.2.0",
      interfaces: [{ name: "eth0" }],
      ips: [{ address: "10.9.0.6/24" }],
    };
    expect(() => checkIface(cont.sock, "eth0", r)).toThrow(
      "Failed to match addr 10.9.0.6/24 on interface eth0",
    );
    cont.run(["ip", "addr", "add", "10.9.0.6/24", "dev", "eth0"]);
    cont.run(["ip", "link", "set", "eth0", "up"]);
    checkIface(cont.sock, "eth0", r);
  });
});
