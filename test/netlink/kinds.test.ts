// Link kinds the host kernel may lack (ipvlan, 802.1q vlan, dummy, vrf): created with our netlink, checked
// with `ip -j -d link`, deleted. On a host without them these skip with the reason and the VM lane
// (scripts/vm test) runs them in a guest with a stock Debian kernel.
import { afterEach, describe, expect, test } from "bun:test";
import { linkAdd, linkDel, linkKindSupported, linkList, linkSetMaster } from "../../src/netlink/link.ts";
import type { Link } from "../../src/netlink/link-info.ts";
import type { IpvlanMode } from "../../src/netlink/link-kinds.ts";
import { SysError } from "../../src/sys/errno.ts";
import {
  cleanupAll,
  makeNetns,
  requiresKernel,
  skipLabel,
  skipUnlessKind,
  type TempNetns,
} from "../helpers/netns.ts";

afterEach(() => cleanupAll());

interface IpLink {
  ifname: string;
  ifindex: number;
  mtu: number;
  master?: string;
  link?: string;
  linkinfo: { info_kind: string; info_data?: Record<string, unknown>; info_slave_kind?: string };
}

/** `ip -j -d link show dev NAME` in `n`: the independent oracle. */
function ipLink(n: TempNetns, name: string): IpLink {
  const out = n.ip("-d", "link", "show", "dev", name) as IpLink[];
  expect(out).toHaveLength(1);
  return out[0] as IpLink;
}

function ipHas(n: TempNetns, name: string): boolean {
  return (n.ip("link", "show") as { ifname: string }[]).some((l) => l.ifname === name);
}

function veth(n: TempNetns, name: string): Link {
  const l = linkAdd(n.sock, { kind: "veth", name, peerName: `${name}p` });
  if (!l) throw new Error("no link returned");
  return l;
}

function made(l: Link | undefined): Link {
  if (!l) throw new Error("linkAdd returned no link");
  return l;
}

describe("ipvlan", () => {
  const k = requiresKernel("ipvlan");
  for (const mode of ["l2", "l3", "l3s"] as IpvlanMode[]) {
    test.skipIf(!!k.why)(k.name(`ipvlan ${mode} on a veth: create, check, delete`), () => {
      const n = makeNetns();
      const parent = veth(n, "up0");
      const l = made(
        linkAdd(n.sock, { kind: "ipvlan", name: `ipv${mode}`, parentIndex: parent.index, mode, mtu: 1400 }),
      );
      const ip = ipLink(n, l.name);
      expect(ip.linkinfo.info_kind).toBe("ipvlan");
      expect(ip.linkinfo.info_data?.mode).toBe(mode);
      expect(ip.link).toBe("up0");
      expect(ip.mtu).toBe(1400);
      expect(l.kind).toBe("ipvlan");
      linkDel(n.sock, l.index);
      expect(ipHas(n, l.name)).toBe(false);
      expect(ipHas(n, "up0")).toBe(true);
    });
  }

  test.skipIf(!!k.why)(k.name("ipvlan private flag; a second ipvlan on the same parent"), () => {
    const n = makeNetns();
    const parent = veth(n, "up0");
    linkAdd(n.sock, { kind: "ipvlan", name: "ipa", parentIndex: parent.index, mode: "l2", flags: "private" });
    linkAdd(n.sock, { kind: "ipvlan", name: "ipb", parentIndex: parent.index, mode: "l2" });
    expect(ipLink(n, "ipa").linkinfo.info_data?.private).toBe(true);
    expect(ipLink(n, "ipb").link).toBe("up0");
  });
});

describe("802.1q vlan", () => {
  const k = requiresKernel("vlan");
  test.skipIf(!!k.why)(k.name("vlan 42 on a veth: create, check, delete"), () => {
    const n = makeNetns();
    const parent = veth(n, "up0");
    const l = made(linkAdd(n.sock, { kind: "vlan", name: "up0.42", parentIndex: parent.index, vlanId: 42 }));
    const ip = ipLink(n, "up0.42");
    expect(ip.linkinfo.info_kind).toBe("vlan");
    expect(ip.linkinfo.info_data).toMatchObject({ protocol: "802.1Q", id: 42 });
    expect(ip.link).toBe("up0");
    expect(l.kind).toBe("vlan");
    linkDel(n.sock, l.index);
    expect(ipHas(n, "up0.42")).toBe(false);
  });

  test.skipIf(!!k.why)(k.name("a vlan id used twice on one parent is EEXIST"), () => {
    const n = makeNetns();
    const parent = veth(n, "up0");
    linkAdd(n.sock, { kind: "vlan", name: "va", parentIndex: parent.index, vlanId: 7 });
    const err = catchSys(() =>
      linkAdd(n.sock, { kind: "vlan", name: "vb", parentIndex: parent.index, vlanId: 7 }),
    );
    expect(err.code).toBe("EEXIST");
    expect(ipHas(n, "vb")).toBe(false);
  });
});

describe("dummy", () => {
  const k = requiresKernel("dummy");
  test.skipIf(!!k.why)(k.name("dummy: create, check, delete"), () => {
    const n = makeNetns();
    const l = made(linkAdd(n.sock, { kind: "dummy", name: "dm0", mtu: 9000 }));
    const ip = ipLink(n, "dm0");
    expect(ip.linkinfo.info_kind).toBe("dummy");
    expect(ip.mtu).toBe(9000);
    expect(l.kind).toBe("dummy");
    linkDel(n.sock, "dm0");
    expect(ipHas(n, "dm0")).toBe(false);
  });
});

describe("vrf", () => {
  const k = requiresKernel("vrf");
  test.skipIf(!!k.why)(k.name("vrf with table 100 and a veth enslaved: create, check, delete"), () => {
    const n = makeNetns();
    const vrf = made(linkAdd(n.sock, { kind: "vrf", name: "vrf0", table: 100 }));
    const port = veth(n, "p0");
    linkSetMaster(n.sock, port.index, vrf.index);
    const ip = ipLink(n, "vrf0");
    expect(ip.linkinfo.info_kind).toBe("vrf");
    expect(ip.linkinfo.info_data?.table).toBe(100);
    const p = ipLink(n, "p0");
    expect(p.master).toBe("vrf0");
    expect(p.linkinfo.info_slave_kind).toBe("vrf");
    linkDel(n.sock, vrf.index);
    expect(ipHas(n, "vrf0")).toBe(false);
    expect(ipLink(n, "p0").master).toBeUndefined();
  });
});

describe("the host side of the lane", () => {
  for (const kind of ["ipvlan", "vlan", "dummy", "vrf"] as const) {
    const why = skipUnlessKind(kind);
    test.skipIf(!why)(
      skipLabel(`${kind}: creating fails with EOPNOTSUPP`, why ? undefined : `kernel has ${kind}`),
      () => {
        const n = makeNetns();
        const parent = veth(n, "up0");
        const spec =
          kind === "ipvlan"
            ? ({ kind, name: "x0", parentIndex: parent.index } as const)
            : kind === "vlan"
              ? ({ kind, name: "x0", parentIndex: parent.index, vlanId: 3 } as const)
              : kind === "vrf"
                ? ({ kind, name: "x0", table: 10 } as const)
                : ({ kind, name: "x0" } as const);
        const err = catchSys(() => linkAdd(n.sock, spec));
        expect(err.code).toBe("EOPNOTSUPP");
        expect(err.message).toStartWith(`adding ${kind} `);
        expect(why).toContain("kernel lacks link kind");
        expect(requiresKernel(kind).why).toContain("runs in the VM lane");
      },
    );
  }

  test("requiresKernel tags the name and says why it skips", () => {
    const k = requiresKernel("veth", "bridge");
    expect(k.why).toBeUndefined();
    expect(k.name("x")).toBe("[kernel veth,bridge] x");
  });

  test("linkKindSupported leaves nothing behind", () => {
    const n = makeNetns();
    const before = linkList(n.sock).map((l) => l.name);
    for (const kind of ["veth", "bridge", "macvlan", "tuntap", "ipvlan", "vlan", "dummy", "vrf"] as const)
      linkKindSupported(n.sock, kind);
    expect(linkKindSupported(n.sock, "veth")).toEqual({ supported: true });
    expect(linkList(n.sock).map((l) => l.name)).toEqual(before);
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
