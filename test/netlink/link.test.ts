import { afterEach, describe, expect, test } from "bun:test";
import {
  linkAdd,
  linkByIndex,
  linkByName,
  linkDel,
  linkList,
  linkSet,
  linkSetAlias,
  linkSetAllmulti,
  linkSetDown,
  linkSetMac,
  linkSetMaster,
  linkSetMtu,
  linkSetName,
  linkSetNetns,
  linkSetNoMaster,
  linkSetPromisc,
  linkSetTxqlen,
  linkSetUp,
} from "../../src/netlink/link.ts";
import {
  bridgePortSet,
  bridgeSetOptions,
  bridgeVlanAdd,
  bridgeVlanDel,
  bridgeVlanList,
} from "../../src/netlink/link-bridge.ts";
import type { Link } from "../../src/netlink/link-info.ts";
import { SysError } from "../../src/sys/errno.ts";
import { cleanupAll, makeNetns, skipLabel, skipUnlessBridgeVlan, type TempNetns } from "../helpers/netns.ts";

afterEach(() => cleanupAll());

/** `ip -j -d link show NAME` in `n`, one object. */
function ipLink(n: TempNetns, name: string) {
  const out = n.ip("-d", "link", "show", "dev", name);
  expect(out).toHaveLength(1);
  return out[0];
}

function ipHas(n: TempNetns, name: string): boolean {
  return (n.ip("link", "show") as { ifname: string }[]).some((l) => l.ifname === name);
}

/** A veth pair in `n`; returns the first end. */
function veth(n: TempNetns, name: string, peerName = `${name}p`): Link {
  const l = linkAdd(n.sock, { kind: "veth", name, peerName });
  if (!l) throw new Error("no link returned");
  return l;
}

describe("veth", () => {
  test("creates the peer straight in another netns", () => {
    const a = makeNetns();
    const b = makeNetns();
    const l = linkAdd(a.sock, {
      kind: "veth",
      name: "eth0",
      peerName: "peer0",
      peerNetnsFd: b.ns.fd,
      mtu: 1400,
      mac: "02:00:00:00:00:0a",
      peerMac: "02:00:00:00:00:0b",
      txqlen: 500,
    });
    expect(l).toBeDefined();
    const ia = ipLink(a, "eth0");
    expect(ia.linkinfo.info_kind).toBe("veth");
    expect(ia.mtu).toBe(1400);
    expect(ia.address).toBe("02:00:00:00:00:0a");
    expect(ia.txqlen).toBe(500);
    expect(ia.link_netnsid).toBeNumber();
    expect(ipHas(a, "peer0")).toBe(false);
    const ib = ipLink(b, "peer0");
    expect(ib.mtu).toBe(1400);
    expect(ib.address).toBe("02:00:00:00:00:0b");
    // each end points at the other's index
    expect(ia.link_index).toBe(ib.ifindex);
    expect(ib.link_index).toBe(ia.ifindex);
    expect(l?.index).toBe(ia.ifindex);
    expect(l?.kind).toBe("veth");
    expect(l?.parentIndex).toBe(ib.ifindex);
    expect(l?.netnsId).toBe(ia.link_netnsid);
  });

  test("both ends in the same netns, created up", () => {
    const n = makeNetns();
    const l = linkAdd(n.sock, { kind: "veth", name: "v0", peerName: "v1", up: true });
    const v0 = ipLink(n, "v0");
    const v1 = ipLink(n, "v1");
    expect(v0.flags).toContain("UP");
    expect(v1.flags).not.toContain("UP");
    expect(l?.up).toBe(true);
    expect(l?.parentIndex).toBe(v1.ifindex);
    expect(l?.netnsId).toBeUndefined();
  });
});

describe("bridge", () => {
  test("two ports: master at creation and by linkSetMaster, then nomaster", () => {
    const n = makeNetns();
    const br = linkAdd(n.sock, { kind: "bridge", name: "br0", up: true });
    expect(br?.kind).toBe("bridge");
    expect(br?.info).toMatchObject({ kind: "bridge", vlanFiltering: false });
    const p1 = linkAdd(n.sock, { kind: "veth", name: "p1", peerName: "p1x", masterIndex: br?.index });
    const p2 = veth(n, "p2");
    linkSetMaster(n.sock, p2.index, br?.index ?? 0);
    expect(ipLink(n, "p1").master).toBe("br0");
    expect(ipLink(n, "p2").master).toBe("br0");
    expect(p1?.masterIndex).toBe(br?.index);
    expect(linkByName(n.sock, "p2")?.bridgePort).toBeDefined();
    linkSetNoMaster(n.sock, "p2");
    expect(ipLink(n, "p2").master).toBeUndefined();
    const after = linkByName(n.sock, "p2");
    expect(after?.masterIndex).toBeUndefined();
    expect(after?.bridgePort).toBeUndefined();
  });

  test("port options: hairpin, isolated, learning, neigh_suppress", () => {
    const n = makeNetns();
    const br = linkAdd(n.sock, { kind: "bridge", name: "br0" });
    const p = linkAdd(n.sock, { kind: "veth", name: "p0", peerName: "p0x", masterIndex: br?.index });
    const idx = p?.index ?? 0;
    expect(p?.bridgePort).toMatchObject({
      hairpin: false,
      isolated: false,
      learning: true,
      neighSuppress: false,
    });
    bridgePortSet(n.sock, idx, { hairpin: true, isolated: true, learning: false, neighSuppress: true });
    const slave = ipLink(n, "p0").linkinfo.info_slave_data;
    expect(slave).toMatchObject({ hairpin: true, isolated: true, learning: false, neigh_suppress: true });
    expect(linkByIndex(n.sock, idx)?.bridgePort).toMatchObject({
      hairpin: true,
      isolated: true,
      learning: false,
      neighSuppress: true,
    });
    bridgePortSet(n.sock, idx, { hairpin: false, learning: true });
    expect(ipLink(n, "p0").linkinfo.info_slave_data).toMatchObject({
      hairpin: false,
      learning: true,
      isolated: true,
    });
  });

  test("port options on a link that is not a port fail with the op named", () => {
    const n = makeNetns();
    const p = veth(n, "lonely");
    expect(() => bridgePortSet(n.sock, p.index, { hairpin: true })).toThrow(
      /setting bridge port options on link/,
    );
  });

  const noVlan = skipUnlessBridgeVlan();

  test.skipIf(!!noVlan)(skipLabel("vlan_filtering and default pvid", noVlan), () => {
    const n = makeNetns();
    const br = linkAdd(n.sock, { kind: "bridge", name: "br0", vlanFiltering: true, defaultPvid: 10 });
    let data = ipLink(n, "br0").linkinfo.info_data;
    expect(data.vlan_filtering).toBe(1);
    expect(data.vlan_default_pvid).toBe(10);
    expect(br?.info).toMatchObject({ vlanFiltering: true, defaultPvid: 10 });
    bridgeSetOptions(n.sock, br?.index ?? 0, { vlanFiltering: false, defaultPvid: 20 });
    data = ipLink(n, "br0").linkinfo.info_data;
    expect(data.vlan_filtering).toBe(0);
    expect(data.vlan_default_pvid).toBe(20);
  });

  test.skipIf(!!noVlan)(skipLabel("vlan add/del on a port", noVlan), () => {
    const n = makeNetns();
    const br = linkAdd(n.sock, { kind: "bridge", name: "br0", vlanFiltering: true });
    const p = linkAdd(n.sock, { kind: "veth", name: "p0", peerName: "p0x", masterIndex: br?.index });
    const idx = p?.index ?? 0;
    bridgeVlanAdd(n.sock, idx, { vid: 100, pvid: true, untagged: true });
    bridgeVlanAdd(n.sock, idx, { vid: 200 });
    const ports = n.bridge("vlan", "show") as {
      ifname: string;
      vlans: { vlan: number; flags?: string[] }[];
    }[];
    const vlans = ports.find((x) => x.ifname === "p0")?.vlans ?? [];
    expect(vlans.find((v) => v.vlan === 100)?.flags).toEqual(
      expect.arrayContaining(["PVID", "Egress Untagged"]),
    );
    expect(vlans.some((v) => v.vlan === 200)).toBe(true);
    expect(bridgeVlanList(n.sock).get(idx)).toEqual(
      expect.arrayContaining([
        { vid: 100, pvid: true, untagged: true },
        { vid: 200, pvid: false, untagged: false },
      ]),
    );
    bridgeVlanDel(n.sock, idx, { vid: 200 });
    const after = (n.bridge("vlan", "show") as { ifname: string; vlans: { vlan: number }[] }[]).find(
      (x) => x.ifname === "p0",
    );
    expect(after?.vlans.some((v) => v.vlan === 200)).toBe(false);
  });

  test.skipIf(!noVlan)(
    skipLabel(
      "vlan calls fail with EOPNOTSUPP when the kernel lacks vlan filtering",
      noVlan ? undefined : "kernel has vlan filtering",
    ),
    () => {
      const n = makeNetns();
      const br = linkAdd(n.sock, { kind: "bridge", name: "br0" });
      const p = linkAdd(n.sock, { kind: "veth", name: "p0", peerName: "p0x", masterIndex: br?.index });
      const err = catchSys(() => bridgeVlanAdd(n.sock, p?.index ?? 0, { vid: 100 }));
      expect(err.code).toBe("EOPNOTSUPP");
      expect(err.message).toContain("adding vlan 100 to bridge port");
    },
  );
});

describe("macvlan, macvtap", () => {
  for (const kind of ["macvlan", "macvtap"] as const) {
    test(`${kind} on a veth end, mode and parent`, () => {
      const n = makeNetns();
      const parent = veth(n, "up0");
      for (const mode of ["bridge", "private", "vepa"] as const) {
        const name = `${kind.slice(0, 4)}-${mode}`;
        const l = linkAdd(n.sock, { kind, name, parentIndex: parent.index, mode });
        const ip = ipLink(n, name);
        expect(ip.linkinfo.info_kind).toBe(kind);
        expect(ip.linkinfo.info_data.mode).toBe(mode);
        expect(ip.link).toBe("up0");
        expect(l?.info).toEqual({ kind, mode, bcQueueLen: 1000 });
        expect(l?.parentIndex).toBe(parent.index);
      }
    });
  }

  test("macvlan broadcast queue length and source mode", () => {
    const n = makeNetns();
    const parent = veth(n, "up0");
    const l = linkAdd(n.sock, { kind: "macvlan", name: "mvq", parentIndex: parent.index, bcQueueLen: 345 });
    expect(l?.info).toEqual({ kind: "macvlan", mode: "vepa", bcQueueLen: 345 });
    expect(ipLink(n, "mvq").linkinfo.info_data.bcqueuelen).toBe(345);
    linkAdd(n.sock, { kind: "macvlan", name: "mvs", parentIndex: parent.index, mode: "source" });
    expect(ipLink(n, "mvs").linkinfo.info_data.mode).toBe("source");
  });

  test("macvlan created straight into another netns", () => {
    const host = makeNetns();
    const cont = makeNetns();
    const parent = veth(host, "up0");
    const out = linkAdd(host.sock, {
      kind: "macvlan",
      name: "eth0",
      parentIndex: parent.index,
      mode: "bridge",
      netnsFd: cont.ns.fd,
      mtu: 1400,
    });
    expect(out).toBeUndefined();
    expect(ipHas(host, "eth0")).toBe(false);
    const ip = ipLink(cont, "eth0");
    expect(ip.linkinfo.info_data.mode).toBe("bridge");
    expect(ip.mtu).toBe(1400);
    expect(linkByName(cont.sock, "eth0")?.netnsId).toBeNumber();
  });
});

describe("tuntap, ifb, vxlan", () => {
  test("tap with owner, group and multi-queue; tun", () => {
    const n = makeNetns();
    const tap = linkAdd(n.sock, {
      kind: "tuntap",
      name: "tap0",
      mode: "tap",
      owner: 1234,
      group: 99,
      multiQueue: true,
      mtu: 1300,
    });
    const ip = ipLink(n, "tap0");
    expect(ip.linkinfo.info_kind).toBe("tun");
    expect(ip.linkinfo.info_data).toMatchObject({
      type: "tap",
      persist: true,
      multi_queue: true,
      pi: false,
      user: 1234,
      group: 99,
    });
    expect(ip.mtu).toBe(1300);
    expect(tap?.info).toMatchObject({
      kind: "tun",
      mode: "tap",
      owner: 1234,
      group: 99,
      multiQueue: true,
      persist: true,
    });
    const tun = linkAdd(n.sock, { kind: "tuntap", name: "tun0", mode: "tun", up: true });
    expect(ipLink(n, "tun0").linkinfo.info_data.type).toBe("tun");
    expect(ipLink(n, "tun0").flags).toContain("UP");
    expect(tun?.mac).toBe("");
  });

  test("tap straight into another netns; an existing name is EEXIST", () => {
    const a = makeNetns();
    const b = makeNetns();
    expect(
      linkAdd(a.sock, { kind: "tuntap", name: "tap0", mode: "tap", netnsFd: b.ns.fd, alias: "t" }),
    ).toBeUndefined();
    expect(ipHas(a, "tap0")).toBe(false);
    expect(ipLink(b, "tap0").ifalias).toBe("t");
    const err = catchSys(() => linkAdd(b.sock, { kind: "tuntap", name: "tap0", mode: "tap" }));
    expect(err.code).toBe("EEXIST");
    expect(err.message).toStartWith("adding tuntap tap0: EEXIST");
  });

  test("ifb", () => {
    const n = makeNetns();
    const l = linkAdd(n.sock, { kind: "ifb", name: "ifb0" });
    expect(ipLink(n, "ifb0").linkinfo.info_kind).toBe("ifb");
    expect(l?.kind).toBe("ifb");
  });

  test("vxlan with vni, port, local, underlay, learning off", () => {
    const n = makeNetns();
    const under = veth(n, "und0");
    const l = linkAdd(n.sock, {
      kind: "vxlan",
      name: "vx0",
      vni: 4242,
      port: 4789,
      local: "10.1.2.3",
      parentIndex: under.index,
      learning: false,
      ttl: 64,
    });
    const d = ipLink(n, "vx0").linkinfo.info_data;
    expect(d).toMatchObject({
      id: 4242,
      port: 4789,
      local: "10.1.2.3",
      link: "und0",
      learning: false,
      ttl: 64,
    });
    expect(l?.info).toMatchObject({
      kind: "vxlan",
      vni: 4242,
      port: 4789,
      local: "10.1.2.3",
      parentIndex: under.index,
    });
    expect(l?.info).toMatchObject({ learning: false, ttl: 64 });
    const g = linkAdd(n.sock, {
      kind: "vxlan",
      name: "vx6",
      vni: 7,
      group: "ff05::100",
      parentIndex: under.index,
    });
    expect(ipLink(n, "vx6").linkinfo.info_data.group6).toBe("ff05::100");
    expect(g?.info).toMatchObject({ group: "ff05::100" });
  });
});

describe("changing links", () => {
  test("up/down, mtu, mac, name, txqlen, promisc, allmulti, alias", () => {
    const n = makeNetns();
    const l = veth(n, "c0", "c1");
    linkSetUp(n.sock, l.index);
    expect(ipLink(n, "c0").flags).toContain("UP");
    linkSetDown(n.sock, "c0");
    expect(ipLink(n, "c0").flags).not.toContain("UP");
    linkSetMtu(n.sock, l.index, 1280);
    expect(ipLink(n, "c0").mtu).toBe(1280);
    linkSetMac(n.sock, "c0", "02:11:22:33:44:55");
    expect(ipLink(n, "c0").address).toBe("02:11:22:33:44:55");
    linkSetTxqlen(n.sock, l.index, 77);
    expect(ipLink(n, "c0").txqlen).toBe(77);
    linkSetPromisc(n.sock, l.index, true);
    expect(ipLink(n, "c0").flags).toContain("PROMISC");
    expect(linkByIndex(n.sock, l.index)?.promisc).toBe(true);
    linkSetPromisc(n.sock, l.index, false);
    expect(ipLink(n, "c0").flags).not.toContain("PROMISC");
    linkSetAllmulti(n.sock, l.index, true);
    expect(ipLink(n, "c0").flags).toContain("ALLMULTI");
    expect(linkByIndex(n.sock, l.index)?.allmulti).toBe(true);
    linkSetAllmulti(n.sock, "c0", false);
    expect(ipLink(n, "c0").flags).not.toContain("ALLMULTI");
    linkSetAlias(n.sock, l.index, "pod eth0");
    expect(ipLink(n, "c0").ifalias).toBe("pod eth0");
    expect(linkByIndex(n.sock, l.index)?.alias).toBe("pod eth0");
    linkSetAlias(n.sock, l.index, "");
    expect(ipLink(n, "c0").ifalias).toBeUndefined();
    linkSetName(n.sock, l.index, "renamed0");
    expect(ipHas(n, "c0")).toBe(false);
    expect(ipLink(n, "renamed0").ifindex).toBe(l.index);
  });

  test("linkSet applies several changes in one request", () => {
    const n = makeNetns();
    const l = veth(n, "m0");
    linkSet(n.sock, l.index, { mtu: 1450, txqlen: 10, up: true, alias: "x", name: "m1" });
    const ip = ipLink(n, "m1");
    expect(ip).toMatchObject({ mtu: 1450, txqlen: 10, ifalias: "x" });
    expect(ip.flags).toContain("UP");
    expect(() => linkSet(n.sock, "m1", { name: "m2" })).toThrow(/renaming needs the link's index/);
  });

  test("a bad value fails with the errno and the op", () => {
    const n = makeNetns();
    const l = veth(n, "b0");
    const err = catchSys(() => linkSetMtu(n.sock, l.index, 10));
    expect(err.code).toBe("EINVAL");
    expect(err.message).toStartWith(`setting mtu 10 on link ${l.index}: EINVAL`);
  });

  test("move to another netns by fd", () => {
    const a = makeNetns();
    const b = makeNetns();
    veth(a, "mv0");
    linkSetNetns(a.sock, "mv0", b.ns.fd);
    expect(ipHas(a, "mv0")).toBe(false);
    expect(linkByName(a.sock, "mv0")).toBeUndefined();
    expect(ipLink(b, "mv0").linkinfo.info_kind).toBe("veth");
    expect(linkByName(b.sock, "mv0")?.netnsId).toBeNumber();
  });

  test("delete by name and by index", () => {
    const n = makeNetns();
    veth(n, "d0");
    const e = veth(n, "e0");
    linkDel(n.sock, "d0");
    expect(ipHas(n, "d0")).toBe(false);
    expect(ipHas(n, "d0p")).toBe(false); // the peer goes with it
    linkDel(n.sock, e.index);
    expect(ipHas(n, "e0")).toBe(false);
    expect(linkByIndex(n.sock, e.index)).toBeUndefined();
  });
});

describe("list and get", () => {
  test("parsed fields match ip -j", () => {
    const n = makeNetns();
    const br = linkAdd(n.sock, { kind: "bridge", name: "br0", up: true });
    linkAdd(n.sock, {
      kind: "veth",
      name: "a0",
      peerName: "a1",
      masterIndex: br?.index,
      alias: "first",
      up: true,
    });
    linkAdd(n.sock, { kind: "tuntap", name: "tap0", mode: "tap", txqlen: 42 });
    linkSetPromisc(n.sock, "a1", true);
    const links = linkList(n.sock);
    const ip = n.ip("-d", "link", "show") as Record<string, unknown>[];
    expect(links.map((l) => l.name).sort()).toEqual(ip.map((l) => l.ifname as string).sort());
    const byIndex = new Map(ip.map((l) => [l.ifindex as number, l]));
    for (const l of links) {
      // biome-ignore lint/suspicious/noExplicitAny: ip -j output
      const o = byIndex.get(l.index) as any;
      expect(o).toBeDefined();
      expect(l.name).toBe(o.ifname);
      expect(l.mtu).toBe(o.mtu);
      expect(l.mac).toBe(o.address ?? "");
      expect(l.txqlen).toBe(o.txqlen);
      // An up link's operstate settles asynchronously (linkwatch); a down one is always "down".
      if (!l.up) expect(l.operstate as string).toBe(String(o.operstate).toLowerCase());
      expect(l.up).toBe(o.flags.includes("UP"));
      expect(l.promisc).toBe(o.flags.includes("PROMISC"));
      expect(l.kind).toBe(o.linkinfo?.info_kind);
      expect(l.alias).toBe(o.ifalias);
      expect(l.masterIndex === undefined ? undefined : byIndex.get(l.masterIndex)?.ifname).toBe(o.master);
      expect(l.parentIndex === undefined ? undefined : byIndex.get(l.parentIndex)?.ifname).toBe(o.link);
      expect(l.bridgePort !== undefined).toBe(o.linkinfo?.info_slave_kind === "bridge");
      const { operstate: _o, flags: _f, ...stable } = l;
      expect(linkByIndex(n.sock, l.index)).toMatchObject(stable);
      expect(linkByName(n.sock, l.name)).toMatchObject(stable);
    }
  });

  test("missing links are undefined", () => {
    const n = makeNetns();
    expect(linkByName(n.sock, "nope0")).toBeUndefined();
    expect(linkByName(n.sock, "a-name-far-too-long-for-linux")).toBeUndefined();
    expect(linkByIndex(n.sock, 999_999)).toBeUndefined();
  });
});

describe("errors carry the errno name and the op", () => {
  test("adding an existing link is EEXIST", () => {
    const n = makeNetns();
    veth(n, "x0");
    const err = catchSys(() => linkAdd(n.sock, { kind: "veth", name: "x0", peerName: "other" }));
    expect(err.code).toBe("EEXIST");
    expect(err.message).toStartWith("adding veth x0: EEXIST (file exists)");
    expect(ipHas(n, "other")).toBe(false);
  });

  test("deleting a missing link is ENODEV", () => {
    const n = makeNetns();
    const err = catchSys(() => linkDel(n.sock, "ghost0"));
    expect(err.code).toBe("ENODEV");
    expect(err.message).toStartWith("deleting link ghost0: ENODEV");
  });

  test("a macvlan on a missing parent fails, nothing is left", () => {
    const n = makeNetns();
    const err = catchSys(() =>
      linkAdd(n.sock, { kind: "macvlan", name: "mvx", parentIndex: 4242, mode: "bridge" }),
    );
    expect(err.op).toBe("adding macvlan mvx");
    expect(ipHas(n, "mvx")).toBe(false);
  });
});

function catchSys(fn: () => unknown): SysError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(SysError);
    return err as SysError;
  }
  throw new Error("expected a SysError");
}
