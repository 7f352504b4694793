import { describe, expect, test } from "bun:test";
import {
  checkIPMasq,
  gcIPMasq,
  parseMasqAddr,
  type SetupIPMasqOptions,
  setupIPMasq,
  teardownIPMasq,
} from "../../src/ip/ipmasq.ts";
import { CniError, ErrCode } from "../../src/spec/errors.ts";
import { sh, type TestNetns, withNetns } from "./ipmasq-helpers.ts";

const TABLE = "tscni_masquerade";

interface OracleElem {
  key: string;
  comment: string;
}

interface NftOracle {
  maps: Record<string, OracleElem[]>;
  /** The rules of every chain of the table, as nft JSON. */
  rules: unknown[];
  chains: string[];
}

/** Independent reading of the table through `nft -j` (undefined when the table is absent). */
function nftTable(ns: TestNetns): NftOracle | undefined {
  let text: string;
  try {
    text = sh(["ip", "netns", "exec", ns.name, "nft", "-j", "list", "table", "inet", TABLE]);
  } catch {
    return undefined;
  }
  const out: NftOracle = { maps: {}, rules: [], chains: [] };
  const part = (v: unknown): string => {
    if (typeof v === "string") return v;
    const p = (v as { prefix: { addr: string; len: number } }).prefix;
    return `${p.addr}/${p.len}`;
  };
  for (const obj of JSON.parse(text).nftables as Record<string, unknown>[]) {
    if (obj.rule) out.rules.push(obj.rule);
    if (obj.chain) out.chains.push((obj.chain as { name: string }).name);
    const m = (obj.map ?? obj.set) as { name: string; elem?: unknown[] } | undefined;
    if (!m) continue;
    out.maps[m.name] = (m.elem ?? []).map((item) => {
      const [k] = item as [{ elem: { val: unknown; comment: string } }];
      const val = k.elem.val as string | { concat: unknown[] };
      const key = typeof val === "string" ? val : val.concat.map(part).join(" . ");
      return { key, comment: k.elem.comment };
    });
  }
  return out;
}

function keys(o: NftOracle | undefined, map: string): string[] {
  return (o?.maps[map] ?? []).map((e) => e.key).sort();
}

function opts(ns: TestNetns, containerID: string, ips: string[], extra: Partial<SetupIPMasqOptions> = {}) {
  return {
    backend: "nftables" as const,
    network: "mynet",
    containerID,
    ifName: "eth0",
    ips,
    netnsPath: ns.path,
    ...extra,
  };
}

describe("parseMasqAddr", () => {
  test("splits a container CIDR into family, address and subnet", () => {
    expect(parseMasqAddr("10.22.0.5/16")).toEqual({ family: 4, ip: "10.22.0.5", subnet: "10.22.0.0/16" });
    expect(parseMasqAddr("10.22.7.5/21")).toEqual({ family: 4, ip: "10.22.7.5", subnet: "10.22.0.0/21" });
    expect(parseMasqAddr("FD00:0:0:0::5/64")).toEqual({ family: 6, ip: "fd00::5", subnet: "fd00::/64" });
    expect(parseMasqAddr("::ffff:10.1.2.3/120")).toEqual({
      family: 4,
      ip: "10.1.2.3",
      subnet: "10.1.2.0/24",
    });
    expect(() => parseMasqAddr("10.22.0.5")).toThrow(CniError);
  });
});

describe("input validation", () => {
  test("names that could not be written into a rule safely are rejected before any tool runs", async () => {
    const base = {
      backend: "nftables" as const,
      ifName: "eth0",
      ips: ["10.0.0.2/24"],
      netnsPath: "/nonexistent",
    };
    const bad = [
      { ...base, network: 'x" ; flush ruleset', containerID: "c" },
      { ...base, network: "n", containerID: "c d" },
      { ...base, network: "n", containerID: "c", ifName: "eth0\nx" },
      { ...base, network: "n", containerID: "c", ips: ["10.0.0.300/24"] },
    ];
    const codes = [];
    for (const o of bad) {
      const err = await setupIPMasq(o).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CniError);
      codes.push((err as CniError).code);
    }
    expect(codes).toEqual([
      ErrCode.InvalidNetworkConfig,
      ErrCode.InvalidEnvironmentVariables,
      ErrCode.InvalidEnvironmentVariables,
      ErrCode.Internal,
    ]);
    const err = await setupIPMasq({
      ...base,
      network: "n",
      containerID: "c",
      backend: "pf" as "nftables",
    }).catch((e: unknown) => e);
    expect((err as CniError).code).toBe(ErrCode.InvalidNetworkConfig);
  });
});

describe("nftables backend", () => {
  test("two containers: elements in maps, a fixed two-rule chain, teardown of one keeps the other", () =>
    withNetns(1, async (host) => {
      // Teardown before anything exists is a success.
      await teardownIPMasq(opts(host, "c1", ["10.22.0.5/16"]));
      expect(nftTable(host)).toBeUndefined();

      await setupIPMasq(opts(host, "c1", ["10.22.0.5/16", "fd00::5/64"]));
      await setupIPMasq(opts(host, "c2", ["10.22.0.6/16"]));
      let t = nftTable(host);
      expect(keys(t, "masq4")).toEqual(["10.22.0.5", "10.22.0.6"]);
      expect(keys(t, "masq6")).toEqual(["fd00::5"]);
      expect(keys(t, "exempt4")).toEqual(["10.22.0.5 . 10.22.0.0/16", "10.22.0.6 . 10.22.0.0/16"]);
      expect(keys(t, "exempt6")).toEqual(["fd00::5 . fd00::/64"]);
      expect(t?.maps.masq4?.find((e) => e.key === "10.22.0.5")?.comment).toContain(
        "net: mynet, if: eth0, id: c1",
      );
      // Sets, not per-container rules: the chain has the same two rules for any number of containers.
      expect(t?.chains).toEqual(["postrouting"]);
      expect(t?.rules).toHaveLength(2);
      expect(JSON.stringify(t?.rules)).not.toContain("10.22.");
      expect(JSON.stringify(t?.rules)).toContain('"masquerade"');

      // Setting up the same thing again changes nothing (and does not duplicate the rules).
      await setupIPMasq(opts(host, "c2", ["10.22.0.6/16"]));
      expect(nftTable(host)?.maps).toEqual(t?.maps ?? {});
      expect(nftTable(host)?.rules).toHaveLength(2);

      await teardownIPMasq(opts(host, "c1", ["10.22.0.5/16", "fd00::5/64"]));
      t = nftTable(host);
      expect(keys(t, "masq4")).toEqual(["10.22.0.6"]);
      expect(keys(t, "masq6")).toEqual([]);
      expect(keys(t, "exempt4")).toEqual(["10.22.0.6 . 10.22.0.0/16"]);
      expect(keys(t, "exempt6")).toEqual([]);
      await teardownIPMasq(opts(host, "c1", ["10.22.0.5/16", "fd00::5/64"]));
      expect(nftTable(host)?.maps).toEqual(t?.maps ?? {});

      // Without the addresses (lost on DEL): found by owner.
      await teardownIPMasq({
        backend: "nftables",
        network: "mynet",
        containerID: "c2",
        ifName: "eth0",
        netnsPath: host.path,
      });
      t = nftTable(host);
      expect(keys(t, "masq4")).toEqual([]);
      expect(keys(t, "exempt4")).toEqual([]);
    }));

  test("an ADD repairs a chain that lost its rules (and otherwise leaves the chain alone)", () =>
    withNetns(1, async (host) => {
      await setupIPMasq(opts(host, "c1", ["10.22.0.5/16"]));
      const handlesBefore = JSON.stringify(nftTable(host)?.rules);
      await setupIPMasq(opts(host, "c2", ["10.22.0.6/16"]));
      // Not re-created: the rules keep their handles.
      expect(JSON.stringify(nftTable(host)?.rules)).toBe(handlesBefore);
      sh(["ip", "netns", "exec", host.name, "nft", "flush", "chain", "inet", TABLE, "postrouting"]);
      expect(nftTable(host)?.rules).toHaveLength(0);
      await setupIPMasq(opts(host, "c3", ["10.22.0.7/16"]));
      expect(nftTable(host)?.rules).toHaveLength(2);
      await checkIPMasq(opts(host, "c1", ["10.22.0.5/16"]));
    }));

  test("check passes when everything is there and names what is missing otherwise", () =>
    withNetns(1, async (host) => {
      await expect(checkIPMasq(opts(host, "c1", ["10.22.0.5/16"]))).rejects.toThrow(/masquerade rule|lacks/);
      await setupIPMasq(opts(host, "c1", ["10.22.0.5/16", "fd00::5/64"]));
      await checkIPMasq(opts(host, "c1", ["10.22.0.5/16", "fd00::5/64"]));
      await expect(checkIPMasq(opts(host, "c1", ["10.22.0.9/16"]))).rejects.toThrow(
        /lacks element 10.22.0.9/,
      );
      await expect(checkIPMasq(opts(host, "c1", ["10.22.0.5/24"]))).rejects.toThrow(/exempt4/);
      await expect(checkIPMasq(opts(host, "c1", ["10.22.0.5/16"], { ifName: "eth1" }))).rejects.toThrow(
        CniError,
      );
      sh([
        "ip",
        "netns",
        "exec",
        host.name,
        "nft",
        "delete",
        "element",
        "inet",
        TABLE,
        "masq6",
        "{ fd00::5 }",
      ]);
      await expect(checkIPMasq(opts(host, "c1", ["10.22.0.5/16", "fd00::5/64"]))).rejects.toThrow(/masq6/);
    }));

  test("gc removes only the stale attachments of the network", () =>
    withNetns(1, async (host) => {
      await setupIPMasq(opts(host, "c1", ["10.22.0.5/16"]));
      await setupIPMasq(opts(host, "c2", ["10.22.0.6/16", "fd00::6/64"]));
      await setupIPMasq(opts(host, "c2", ["10.22.0.7/16"], { ifName: "net1" }));
      await setupIPMasq(opts(host, "c3", ["10.99.0.5/16"], { network: "othernet" }));
      await gcIPMasq({
        backend: "nftables",
        network: "mynet",
        validAttachments: [{ containerID: "c2", ifname: "eth0" }],
        netnsPath: host.path,
      });
      const t = nftTable(host);
      expect(keys(t, "masq4")).toEqual(["10.22.0.6", "10.99.0.5"]);
      expect(keys(t, "masq6")).toEqual(["fd00::6"]);
      expect(keys(t, "exempt4")).toEqual(["10.22.0.6 . 10.22.0.0/16", "10.99.0.5 . 10.99.0.0/16"]);
    }));

  test("an address given to a new container is not removed by the DEL of its stale previous owner", () =>
    withNetns(1, async (host) => {
      await setupIPMasq(opts(host, "old", ["10.22.0.5/16"]));
      await setupIPMasq(opts(host, "new", ["10.22.0.5/24"]));
      let t = nftTable(host);
      expect(t?.maps.masq4).toHaveLength(1);
      expect(t?.maps.masq4?.[0]?.comment).toContain("id: new");
      expect(keys(t, "exempt4")).toEqual(["10.22.0.5 . 10.22.0.0/24"]);
      await teardownIPMasq(opts(host, "old", ["10.22.0.5/16"]));
      t = nftTable(host);
      expect(keys(t, "masq4")).toEqual(["10.22.0.5"]);
      await checkIPMasq(opts(host, "new", ["10.22.0.5/24"]));
    }));

  test("a repeated ADD with other addresses replaces the attachment's old ones", () =>
    withNetns(1, async (host) => {
      await setupIPMasq(opts(host, "c1", ["10.22.0.5/16", "fd00::5/64"]));
      await setupIPMasq(opts(host, "c1", ["10.22.0.8/16"]));
      const t = nftTable(host);
      expect(keys(t, "masq4")).toEqual(["10.22.0.8"]);
      expect(keys(t, "masq6")).toEqual([]);
      expect(keys(t, "exempt4")).toEqual(["10.22.0.8 . 10.22.0.0/16"]);
    }));

  test("concurrent ADDs and DELs of different containers all land", () =>
    withNetns(1, async (host) => {
      const ids = Array.from({ length: 12 }, (_, i) => i + 10);
      await Promise.all(ids.map((i) => setupIPMasq(opts(host, `c${i}`, [`10.22.0.${i}/16`]))));
      expect(keys(nftTable(host), "masq4")).toHaveLength(12);
      const gone = ids.filter((i) => i % 2 === 0);
      await Promise.all(gone.map((i) => teardownIPMasq(opts(host, `c${i}`, []))));
      expect(keys(nftTable(host), "masq4")).toEqual(
        ids.filter((i) => i % 2 === 1).map((i) => `10.22.0.${i}`),
      );
      expect(nftTable(host)?.rules).toHaveLength(2);
    }));
});

describe("nftables backend on the packet path", () => {
  /** host ⟷ ctr (10.22.0.5/16 via veth) and host ⟷ out (192.168.77.0/24). */
  function wire(host: TestNetns, ctr: TestNetns, out: TestNetns): void {
    const ip = (ns: TestNetns, ...args: string[]) => sh(["ip", "-n", ns.name, ...args]);
    ip(host, "link", "add", "vc", "type", "veth", "peer", "name", "eth0", "netns", ctr.name);
    ip(host, "link", "add", "vo", "type", "veth", "peer", "name", "eth0", "netns", out.name);
    ip(host, "addr", "add", "10.22.0.1/16", "dev", "vc");
    ip(host, "addr", "add", "192.168.77.1/24", "dev", "vo");
    ip(ctr, "addr", "add", "10.22.0.5/16", "dev", "eth0");
    ip(out, "addr", "add", "192.168.77.2/24", "dev", "eth0");
    for (const [ns, dev] of [
      [host, "vc"],
      [host, "vo"],
      [ctr, "eth0"],
      [out, "eth0"],
    ] as const) {
      ip(ns, "link", "set", dev, "up");
    }
    ip(ctr, "route", "add", "default", "via", "10.22.0.1");
    sh(["ip", "netns", "exec", host.name, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
  }

  /** Sends one UDP datagram from the container to `out` (bash's /dev/udp: no extra tools needed). */
  function sendUDP(ctr: TestNetns): void {
    sh(["ip", "netns", "exec", ctr.name, "bash", "-c", "echo hi > /dev/udp/192.168.77.2/9"]);
  }

  /** The reply destination conntrack recorded for UDP from the container: the SNAT address if any. */
  function replyDst(host: TestNetns): string[] {
    const text = sh(["ip", "netns", "exec", host.name, "conntrack", "-L", "-p", "udp", "-s", "10.22.0.5"]);
    return [...text.matchAll(/src=192\.168\.77\.2 dst=(\S+)/g)].map((m) => m[1]!);
  }

  test("traffic from the container to the outside is masqueraded, and no longer after teardown", () =>
    withNetns(3, async (host, ctr, out) => {
      wire(host, ctr, out);
      await setupIPMasq(opts(host, "c1", ["10.22.0.5/16"]));
      sendUDP(ctr);
      expect(replyDst(host)).toEqual(["192.168.77.1"]);

      // Destinations inside the container's subnet are exempt: with a /0 "subnet" everything is.
      await setupIPMasq(opts(host, "c1", ["10.22.0.5/0"]));
      sh(["ip", "netns", "exec", host.name, "conntrack", "-F"]);
      sendUDP(ctr);
      expect(replyDst(host)).toEqual(["10.22.0.5"]);

      await setupIPMasq(opts(host, "c1", ["10.22.0.5/16"]));
      sh(["ip", "netns", "exec", host.name, "conntrack", "-F"]);
      sendUDP(ctr);
      expect(replyDst(host)).toEqual(["192.168.77.1"]);

      await teardownIPMasq(opts(host, "c1", ["10.22.0.5/16"]));
      sh(["ip", "netns", "exec", host.name, "conntrack", "-F"]);
      sendUDP(ctr);
      expect(replyDst(host)).toEqual(["10.22.0.5"]);
    }));
});
