import { afterEach, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import {
  classAddHtb,
  classDel,
  formatHandle,
  parseHandle,
  qdiscAdd,
  qdiscDel,
  qdiscList,
  qdiscReplace,
  TC_H_INGRESS,
  TC_H_ROOT,
  tbfParams,
} from "../../src/netlink/tc.ts";
import {
  ETH_P,
  filterAddU32MatchAllMirred,
  filterDel,
  filterList,
  MIRRED,
  TC_ACT,
} from "../../src/netlink/tc-filter.ts";
import { cleanupTestNetns, ifindex, makeTestNetns, type TestNetns, vethPair } from "./_util.ts";

afterEach(cleanupTestNetns);

// biome-ignore lint/suspicious/noExplicitAny: `tc -j` output
function qdiscOf(t: TestNetns, dev: string, kind: string): any {
  // biome-ignore lint/suspicious/noExplicitAny: `tc -j` output
  return t.tc("qdisc", "show", "dev", dev).find((q: any) => q.kind === kind);
}

describe("handles and tbf arithmetic", () => {
  test("parse and format like tc", () => {
    expect(parseHandle("1:")).toBe(0x10000);
    expect(parseHandle("1:10")).toBe(0x10010);
    expect(parseHandle("ffff:")).toBe(0xffff0000);
    expect(parseHandle("root")).toBe(TC_H_ROOT);
    expect(parseHandle("ingress")).toBe(TC_H_INGRESS);
    expect(formatHandle(0x10000)).toBe("1:");
    expect(formatHandle(0x1000a)).toBe("1:a");
    expect(formatHandle(TC_H_INGRESS)).toBe("ffff:fff1");
    expect(() => parseHandle("1")).toThrow(/EINVAL/);
  });

  test("tbfParams reproduces upstream bandwidth's createTBF numbers", () => {
    // 8 Mbit/s, 80000 bit burst: 1e6 B/s; 10000 B burst = 10 ms = 156250 ticks of 64 ns; 25 ms latency.
    expect(tbfParams({ rateBits: 8_000_000, burstBits: 80_000 })).toEqual({
      rate: 1_000_000,
      buffer: 156_250,
      limit: 35_000,
    });
    expect(() => tbfParams({ rateBits: 0, burstBits: 8 })).toThrow(/invalid rate/);
    expect(() => tbfParams({ rateBits: 8, burstBits: 7 })).toThrow(/invalid burst/);
  });
});

describe("qdiscs", () => {
  test("tbf: add, list, replace, delete", () => {
    const t = makeTestNetns();
    const { v0 } = vethPair(t);
    qdiscAdd(t.sock, {
      index: v0,
      handle: "1:",
      kind: "tbf",
      ...tbfParams({ rateBits: 8e6, burstBits: 80_000 }),
    });
    expect(qdiscOf(t, "v0", "tbf")).toMatchObject({
      handle: "1:",
      root: true,
      options: { rate: 1_000_000, burst: 10_000, lat: 25_000 },
    });
    const [q] = qdiscList(t.sock, v0).filter((x) => x.kind === "tbf");
    expect(q).toEqual({
      index: v0,
      kind: "tbf",
      handle: 0x10000,
      parent: TC_H_ROOT,
      tbf: { rate: 1_000_000, buffer: 156_250, limit: 35_000 },
    });

    expect(() =>
      qdiscAdd(t.sock, { index: v0, devName: "v0", handle: "1:", kind: "tbf", rate: 1, buffer: 1, limit: 1 }),
    ).toThrow(/^adding tbf qdisc 1: on v0: EEXIST/);
    qdiscReplace(t.sock, {
      index: v0,
      handle: "1:",
      kind: "tbf",
      ...tbfParams({ rateBits: 16e6, burstBits: 80_000 }),
    });
    expect(qdiscOf(t, "v0", "tbf").options.rate).toBe(2_000_000);

    qdiscDel(t.sock, { index: v0, handle: "1:" });
    expect(qdiscOf(t, "v0", "tbf")).toBeUndefined();
    expect(() => qdiscDel(t.sock, { index: v0 })).toThrow(/ENOENT/); // the default qdisc stays
  });

  test("htb root with default class, and an htb class", () => {
    const t = makeTestNetns();
    const { v0 } = vethPair(t);
    qdiscAdd(t.sock, { index: v0, handle: "1:", kind: "htb", defcls: 0x10 });
    expect(qdiscOf(t, "v0", "htb")).toMatchObject({ handle: "1:", root: true, options: { default: "0x10" } });
    expect(qdiscList(t.sock, v0).find((q) => q.kind === "htb")?.htb).toEqual({
      version: 0x30011,
      r2q: 10,
      defcls: 0x10,
    });

    classAddHtb(t.sock, { index: v0, parent: "1:", classid: "1:10", rate: 125_000, ceil: 250_000, prio: 2 });
    // tc 6.1 has no JSON for htb classes: read its text.
    const show = () => t.run(["tc", "class", "show", "dev", "v0"]).stdout.trim();
    expect(show()).toBe("class htb 1:10 root prio 2 rate 1Mbit ceil 2Mbit burst 1600b cburst 1600b");
    classDel(t.sock, { index: v0, classid: "1:10" });
    expect(show()).toBe("");
  });
});

describe("ingress redirect to an ifb", () => {
  test("ingress qdisc + u32 match-all mirred filter, listed and deleted", () => {
    const t = makeTestNetns();
    const { v0 } = vethPair(t);
    t.ip("link", "add", "ifb0", "type", "ifb");
    const ifb = ifindex(t, "ifb0");

    qdiscAdd(t.sock, { index: v0, kind: "ingress" });
    expect(qdiscOf(t, "v0", "ingress")).toMatchObject({ handle: "ffff:", parent: "ffff:fff1" });
    filterAddU32MatchAllMirred(t.sock, { index: v0, parent: "ffff:", redirectToIndex: ifb });

    const o = t.tc("filter", "show", "dev", "v0", "parent", "ffff:");
    // biome-ignore lint/suspicious/noExplicitAny: `tc -j` output
    const rule = o.find((f: any) => f.options?.actions);
    expect(rule).toMatchObject({
      protocol: "all",
      pref: 1,
      kind: "u32",
      options: {
        flowid: "1:1",
        match: { value: "0", mask: "0" },
        actions: [
          {
            kind: "mirred",
            mirred_action: "redirect",
            direction: "egress",
            to_dev: "ifb0",
            control_action: { type: "stolen" },
          },
        ],
      },
    });

    const mine = filterList(t.sock, v0, "ffff:").filter((f) => f.u32);
    expect(mine).toHaveLength(1);
    expect(mine[0]).toMatchObject({
      index: v0,
      parent: 0xffff0000,
      priority: 1,
      protocol: ETH_P.all,
      kind: "u32",
      u32: { classId: 0x10001, flags: 1, keys: [{ mask: 0, val: 0, off: 0 }] },
      actions: [
        {
          kind: "mirred",
          mirred: { direction: MIRRED.egressRedirect, ifindex: ifb, control: TC_ACT.stolen },
        },
      ],
    });

    filterDel(t.sock, { index: v0, parent: "ffff:", priority: 1, protocol: "all" });
    expect(t.tc("filter", "show", "dev", "v0", "parent", "ffff:")).toEqual([]);
    qdiscDel(t.sock, { index: v0, parent: "ingress" });
    expect(qdiscOf(t, "v0", "ingress")).toBeUndefined();
  });

  const upstream = "/usr/lib/cni/bandwidth";
  test.skipIf(!existsSync(upstream))(
    "leaves the same qdiscs and filter as upstream's bandwidth plugin",
    () => {
      const host = makeTestNetns();
      const cont = makeTestNetns();
      host.ip("link", "add", "h0", "type", "veth", "peer", "name", "eth0", "netns", cont.path);
      host.ip("link", "set", "h0", "up");
      cont.ip("link", "set", "eth0", "up");
      const conf = {
        cniVersion: "1.0.0",
        name: "n",
        type: "bandwidth",
        ingressRate: 8_000_000,
        ingressBurst: 80_000,
        egressRate: 16_000_000,
        egressBurst: 160_000,
        prevResult: {
          cniVersion: "1.0.0",
          interfaces: [{ name: "h0" }, { name: "eth0", sandbox: cont.path }],
          ips: [],
        },
      };
      const p = Bun.spawnSync(["nsenter", `--net=${host.path}`, upstream], {
        stdin: Buffer.from(JSON.stringify(conf)),
        env: {
          CNI_COMMAND: "ADD",
          CNI_CONTAINERID: "c1",
          CNI_NETNS: cont.path,
          CNI_IFNAME: "eth0",
          CNI_PATH: "/x",
        },
      });
      expect(p.exitCode).toBe(0);
      const ifbName: string = JSON.parse(p.stdout.toString()).interfaces[2].name;
      const theirHost = ifindex(host, "h0");
      const theirIfb = ifindex(host, ifbName);

      // Ours, built the way a port of ifb_creator.go would, on a second pair + ifb in the same netns.
      host.ip("link", "add", "h1", "type", "veth", "peer", "name", "p1");
      host.ip("link", "add", "ifb1", "type", "ifb");
      host.ip("link", "set", "h1", "up");
      host.ip("link", "set", "ifb1", "up");
      const h1 = ifindex(host, "h1");
      const ifb1 = ifindex(host, "ifb1");
      qdiscAdd(host.sock, {
        index: h1,
        handle: "1:",
        kind: "tbf",
        ...tbfParams({ rateBits: 8e6, burstBits: 80_000 }),
      });
      qdiscAdd(host.sock, { index: h1, kind: "ingress" });
      filterAddU32MatchAllMirred(host.sock, {
        index: h1,
        parent: "ffff:",
        redirectToIndex: ifb1,
        controls: ["stolen", "pass"],
      });
      qdiscAdd(host.sock, {
        index: ifb1,
        handle: "1:",
        kind: "tbf",
        ...tbfParams({ rateBits: 16e6, burstBits: 160_000 }),
      });

      const strip = (index: number, rename: Record<number, number>) =>
        qdiscList(host.sock, index).map((q) => ({ ...q, index: rename[q.index] ?? q.index }));
      expect(strip(h1, { [h1]: 0 })).toEqual(strip(theirHost, { [theirHost]: 0 }));
      expect(strip(ifb1, { [ifb1]: 0 })).toEqual(strip(theirIfb, { [theirIfb]: 0 }));
      const filters = (index: number, ifb: number) =>
        filterList(host.sock, index, "ffff:").map((f) => ({
          ...f,
          index: 0,
          actions: f.actions.map((a) => ({
            ...a,
            mirred: a.mirred && { ...a.mirred, ifindex: a.mirred.ifindex === ifb },
          })),
        }));
      const theirs = filters(theirHost, theirIfb);
      expect(theirs.some((f) => f.actions.length === 2)).toBe(true);
      expect(filters(h1, ifb1)).toEqual(theirs);
    },
  );
});
