import { afterEach, describe, expect, test } from "bun:test";
import { delLinkByName, hostVethPeerIndex, randomVethName, setupVeth } from "../../src/ip/veth.ts";
import { linkAdd } from "../../src/netlink/link.ts";
import { CniError } from "../../src/spec/errors.ts";
import { cleanupAll, makeNetns, type TempNetns } from "../helpers/netns.ts";

afterEach(() => cleanupAll());

function pair() {
  return { host: makeNetns("vh"), cont: makeNetns("vc") };
}

// biome-ignore lint/suspicious/noExplicitAny: ip -j output
function link(n: TempNetns, name: string): any {
  return n.ip("-d", "link", "show", "dev", name)[0];
}

function names(n: TempNetns): string[] {
  return (n.ip("link", "show") as { ifname: string }[]).map((l) => l.ifname);
}

describe("randomVethName", () => {
  test("is veth + 8 hex chars and differs between calls", () => {
    const a = randomVethName();
    expect(a).toMatch(/^veth[0-9a-f]{8}$/);
    expect(randomVethName()).not.toBe(a);
  });
});

describe("setupVeth", () => {
  test("makes the container end in the container netns, both up, with mtu and mac", () => {
    const { host, cont } = pair();
    const v = setupVeth({
      hostSock: host.sock,
      hostNs: host.ns,
      contNs: cont.ns,
      contSock: cont.sock,
      contIfName: "eth0",
      mtu: 1400,
      contMac: "0a:58:0a:01:02:03",
    });
    expect(v.host.name).toMatch(/^veth[0-9a-f]{8}$/);
    expect(v.cont.name).toBe("eth0");
    expect(v.cont.mac).toBe("0a:58:0a:01:02:03");
    const h = link(host, v.host.name);
    const c = link(cont, "eth0");
    expect(h.ifindex).toBe(v.host.index);
    expect(c.ifindex).toBe(v.cont.index);
    expect(h.address).toBe(v.host.mac);
    expect(c.address).toBe("0a:58:0a:01:02:03");
    expect(h.mtu).toBe(1400);
    expect(c.mtu).toBe(1400);
    expect(h.flags).toContain("UP");
    expect(c.flags).toContain("UP");
    expect(h.linkinfo.info_kind).toBe("veth");
    // The container end never appears in the host netns, nor the host end in the container.
    expect(names(host)).not.toContain("eth0");
    expect(names(cont)).not.toContain(v.host.name);
    expect(host.run(["sysctl", "-n", `net.ipv6.conf.${v.host.name}.accept_ra`]).stdout.trim()).toBe("0");
    expect(hostVethPeerIndex(cont.sock, "eth0")).toBe(v.host.index);
  });

  test("uses a fixed host name and enslaves the host end to a master", () => {
    const { host, cont } = pair();
    const br = linkAdd(host.sock, { kind: "bridge", name: "br0" });
    const v = setupVeth({
      hostSock: host.sock,
      hostNs: host.ns,
      contNs: cont.ns,
      contSock: cont.sock,
      contIfName: "net1",
      hostIfName: "hostside0",
      hostMasterIndex: br?.index,
    });
    expect(v.host.name).toBe("hostside0");
    const h = link(host, "hostside0");
    expect(h.master).toBe("br0");
    expect(h.flags).toContain("UP");
  });

  test("a taken container name fails with what was being done and leaves nothing", () => {
    const { host, cont } = pair();
    linkAdd(cont.sock, { kind: "veth", name: "eth0", peerName: "eth0p" });
    const before = names(host);
    let err: unknown;
    try {
      setupVeth({ hostSock: host.sock, contNs: cont.ns, contSock: cont.sock, contIfName: "eth0" });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CniError);
    expect((err as CniError).message).toMatch(
      /^adding veth eth0 → veth[0-9a-f]{8}: EEXIST \(file exists\): container veth name provided \(eth0\) already exists$/,
    );
    expect(names(host)).toEqual(before);
  });

  test("a taken fixed host name fails naming it", () => {
    const { host, cont } = pair();
    linkAdd(host.sock, { kind: "veth", name: "taken0", peerName: "taken0p" });
    expect(() =>
      setupVeth({
        hostSock: host.sock,
        contNs: cont.ns,
        contSock: cont.sock,
        contIfName: "eth0",
        hostIfName: "taken0",
      }),
    ).toThrow("adding veth eth0 → taken0: EEXIST (file exists): host veth name taken0 already exists");
    expect(names(cont)).not.toContain("eth0");
  });

  test("a bad mac fails and leaves no link on either side", () => {
    const { host, cont } = pair();
    const before = names(host);
    expect(() =>
      setupVeth({
        hostSock: host.sock,
        contNs: cont.ns,
        contSock: cont.sock,
        contIfName: "eth0",
        contMac: "01:00:00:00:00:01", // multicast: the kernel refuses it
      }),
    ).toThrow(/^adding veth eth0 → veth[0-9a-f]{8}: EADDRNOTAVAIL/);
    expect(names(host)).toEqual(before);
    expect(names(cont)).not.toContain("eth0");
  });
});

describe("delLinkByName", () => {
  test("deletes both ends, then reports false", () => {
    const { host, cont } = pair();
    const v = setupVeth({ hostSock: host.sock, contNs: cont.ns, contSock: cont.sock, contIfName: "eth0" });
    expect(delLinkByName(cont.sock, "eth0")).toBe(true);
    expect(names(cont)).not.toContain("eth0");
    expect(names(host)).not.toContain(v.host.name);
    expect(delLinkByName(cont.sock, "eth0")).toBe(false);
  });

  test("hostVethPeerIndex is undefined for a missing or non-veth link", () => {
    const { cont } = pair();
    expect(hostVethPeerIndex(cont.sock, "eth0")).toBeUndefined();
    expect(hostVethPeerIndex(cont.sock, "lo")).toBeUndefined();
  });
});
