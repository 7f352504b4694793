/**
 * The corpus itself: big and broad enough, every reason id documented, nothing that could touch the
 * machine's real state (host-local and tuning always get a temp dataDir). Also the normaliser and the
 * comparison on small fixed inputs, so a broken normaliser cannot make every case pass.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { REPO } from "../helpers/build.ts";
import { expectedIds, loadCases, NFT_REASON, pluginTypes, substitute, VERSION_REASON } from "./cases.ts";
import { deepDiff, residue } from "./compare.ts";
import { KNOWN_ADJUSTMENTS } from "./known.ts";
import { iptablesRules, makeNormaliser, nftRules, normaliseState } from "./normalise.ts";
import type { State } from "./state.ts";

const cases = loadCases();
const docs = readFileSync(join(REPO, "docs/differences.md"), "utf8");
const documented = new Set([...docs.matchAll(/^### `([a-z0-9.-]+)`/gm)].map((m) => m[1]));

type Plugin = Record<string, unknown>;
const plugins = (c: (typeof cases)[number]) => (c.conflist.plugins as Plugin[] | undefined) ?? [];

describe("diff corpus", () => {
  test("has at least 40 cases with unique names", () => {
    expect(cases.length).toBeGreaterThanOrEqual(40);
    expect(new Set(cases.map((c) => c.name)).size).toBe(cases.length);
  });

  test("covers every plugin and spec version the suite promises", () => {
    const types = new Set(cases.flatMap(pluginTypes));
    for (const t of ["loopback", "bridge", "ptp", "host-local", "static", "portmap", "bandwidth", "tuning"]) {
      expect(types.has(t)).toBe(true);
    }
    const versions = new Set(cases.map((c) => c.conflist.cniVersion));
    for (const v of ["0.3.1", "0.4.0", "1.0.0", "1.1.0"]) expect(versions.has(v)).toBe(true);
    expect(cases.filter((c) => c.invalid).length).toBeGreaterThanOrEqual(6);
  });

  test("every reason id a case names is documented in docs/differences.md", () => {
    for (const id of [NFT_REASON, VERSION_REASON, "kernel-lacks", ...Object.keys(KNOWN_ADJUSTMENTS)]) {
      expect(documented.has(id) ? id : `${id} (undocumented)`).toBe(id);
    }
    for (const c of cases) {
      for (const id of expectedIds(c))
        expect(documented.has(id) ? id : `${c.name}: ${id} (undocumented)`).toBe(id);
    }
  });

  test("host-local, tuning and firewall state stays under the run's temp dir", () => {
    for (const c of cases) {
      for (const p of plugins(c)) {
        const ipam = p.ipam as Plugin | undefined;
        if (ipam?.type === "host-local") expect(`${c.name}: ${ipam.dataDir}`).toBe(`${c.name}: \${DATADIR}`);
        if (p.type === "tuning") expect(`${c.name}: ${p.dataDir}`).toBe(`${c.name}: \${DATADIR}/tuning`);
        if (p.type === "firewall") expect(`${c.name}: ${p.dataDir}`).toBe(`${c.name}: \${DATADIR}/firewall`);
      }
    }
  });

  test("invalid cases name a message class", () => {
    for (const c of cases.filter((x) => x.invalid))
      expect(c.error?.match ? c.name : `${c.name} (no error.match)`).toBe(c.name);
  });
});

describe("diff machinery", () => {
  test("substitute fills templates in every string", () => {
    expect(
      // biome-ignore lint/suspicious/noTemplateCurlyInString: the corpus's own template syntax
      substitute({ a: ["${BRIDGE}", { b: "${DATADIR}/x" }], n: 1 }, { BRIDGE: "br9", DATADIR: "/t" }),
    ).toEqual({
      a: ["br9", { b: "/t/x" }],
      n: 1,
    });
  });

  test("the normaliser hides random values but keeps the case's MACs", () => {
    const n = makeNormaliser({
      containerID: "c1",
      ctrNetns: "tscni-d-x-c",
      tempDirs: ["/tmp/d1"],
      keepMacs: ["0A:58:00:00:00:01"],
    });
    expect(
      n({
        ifindex: 3,
        ifname: "veth0123abcd",
        address: "aa:bb:cc:dd:ee:ff",
        mac: "0a:58:00:00:00:01",
        sandbox: "/var/run/netns/tscni-d-x-c",
        bridge_id: "8000.1a:6:52:ce:87:e3",
        chain: "CNI-0123456789abcdef01234567",
        local: "fe80::1:2ff:fe3:4",
        comment: 'name: "n" id: "c1"',
        path: "/tmp/d1/ipam",
        forward_delay_timer: 14.2,
      }),
    ).toEqual({
      ifname: "<veth>",
      address: "<mac>",
      mac: "0a:58:00:00:00:01",
      sandbox: "<netns>",
      bridge_id: "8000.<mac>",
      chain: "CNI-<hash>",
      local: "fe80::<ll>",
      comment: 'name: "n" id: "<cid>"',
      path: "<tmp>/ipam",
    });
  });

  test("iptables-save and nft output reduce to their rules", () => {
    const n = makeNormaliser({
      containerID: "diff-c1",
      ctrNetns: "tscni-d-zz-c",
      tempDirs: [],
      keepMacs: [],
    });
    const save =
      "# Generated\n*nat\n:POSTROUTING ACCEPT [3:4]\n:CNI-x - [0:0]\n-A POSTROUTING -j CNI-x\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n";
    expect(iptablesRules(save, n)).toEqual({ nat: [":CNI-x - [0:0]", "-A POSTROUTING -j CNI-x"] });
    const nft = [
      { table: { family: "ip", name: "nat", handle: 1 } },
      { chain: { family: "ip", table: "nat", name: "POSTROUTING", hook: "postrouting", handle: 2 } },
      { table: { family: "ip", name: "filter", handle: 3 } },
      { chain: { family: "ip", table: "filter", name: "INPUT", hook: "input", handle: 4 } },
      {
        rule: {
          family: "ip",
          table: "nat",
          chain: "POSTROUTING",
          handle: 5,
          expr: [{ counter: { packets: 9 } }],
        },
      },
    ];
    expect(nftRules(nft, n)).toEqual([
      { table: { family: "ip", name: "nat" } },
      { chain: { family: "ip", table: "nat", name: "POSTROUTING", hook: "postrouting" } },
      { rule: { family: "ip", table: "nat", chain: "POSTROUTING", expr: [{ counter: {} }] } },
    ]);
  });

  test("deepDiff matches links by name and other objects as sets", () => {
    const a = {
      links: [{ ifname: "eth0", mtu: 1500 }, { ifname: "lo" }],
      routes: [{ dst: "a" }, { dst: "b" }],
    };
    const b = {
      links: [{ ifname: "lo" }, { ifname: "eth0", mtu: 1400 }],
      routes: [{ dst: "b" }, { dst: "c" }],
    };
    expect(deepDiff(a, b)).toEqual([
      { path: "links[eth0].mtu", upstream: 1500, ours: 1400 },
      { path: "routes[]", upstream: { dst: "a" }, ours: undefined },
      { path: "routes[]", upstream: undefined, ours: { dst: "c" } },
    ]);
    expect(deepDiff(a, structuredClone(a))).toEqual([]);
  });

  test("residue lists what DEL left and what it removed", () => {
    const n = makeNormaliser({
      containerID: "diff-c1",
      ctrNetns: "tscni-d-zz-c",
      tempDirs: [],
      keepMacs: [],
    });
    const side = { links: [], addrs: [], routes: [], rules: [], qdiscs: [], sysctls: {} };
    const empty: State = {
      container: side,
      host: side,
      firewall: { iptables: { v4: "", v6: "" }, nft: [] },
      store: {},
    };
    const after: State = {
      ...empty,
      host: { ...side, links: [{ ifname: "br0" }] },
      store: { "net/10.0.0.2": "c\r\neth0", "net/last_reserved_ip.0": "10.0.0.2" },
    };
    expect(residue(normaliseState(empty, n), normaliseState(after, n))).toEqual([
      '+ host.links: {"ifname":"br0"}',
      "+ store: net/10.0.0.2",
    ]);
  });
});
