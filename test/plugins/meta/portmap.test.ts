/**
 * portmap, nftables backend, on the real kernel (portmap-net.ts: host, client and two containers,
 * each a throwaway netns; the plugin runs as a process in the host netns).
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { nftApply } from "../../../src/firewall/nft.ts";
import type { PortmapConf } from "../../../src/plugins/meta/portmap/config.ts";
import { addElementLines, desiredElems } from "../../../src/plugins/meta/portmap/nft.ts";
import {
  ALL_FORWARDED,
  answered,
  makePortmapNet,
  nftTable,
  type PortmapNet,
  type Probe,
  pm,
  pmConf,
  probeAll,
  resetFirewall,
} from "./portmap-net.ts";

const T = 60_000;
let net: PortmapNet;
beforeAll(async () => {
  net = await makePortmapNet();
}, T);
afterEach(() => resetFirewall(net));
afterAll(() => net?.cleanup());

const P = (proto: "tcp" | "udp", host: string, port = 8080, srcPort?: number): Probe =>
  srcPort === undefined ? { proto, host, port } : { proto, host, port, srcPort };

// biome-ignore lint/suspicious/noExplicitAny: nft -j objects
function elements(table: any[] | undefined, map: string): any[] {
  return table?.find((o) => o.map?.name === map)?.map.elem ?? [];
}

describe("portmap nftables: traffic", () => {
  test(
    "TCP and UDP reach the container from outside, from 127.0.0.1 and by hairpin; DEL stops them",
    async () => {
      const conf = pmConf(net);
      const add = await pm(net, "ADD", conf);
      expect(add.code).toBe(0);
      // prevResult passes through.
      expect(add.json.ips.map((i: { address: string }) => i.address)).toEqual(["10.77.0.2/24", "fd77::2/64"]);

      expect(await probeAll(net)).toEqual(ALL_FORWARDED);
      expect(net.host.run(["sysctl", "-n", "net.ipv4.conf.br0.route_localnet"]).stdout.trim()).toBe("1");
      expect(net.host.run(["sysctl", "-n", "net.ipv4.conf.hc0.route_localnet"]).stdout.trim()).toBe("0");

      expect((await pm(net, "DEL", conf)).code).toBe(0);
      // Nothing answers, the repeated outside UDP flow included: DEL deleted its conntrack entry.
      expect(answered(await probeAll(net)).some((x) => x)).toBe(false);
    },
    T,
  );

  test(
    "a UDP flow seen before ADD is forwarded after it (stale conntrack entry deleted)",
    async () => {
      const conf = pmConf(net, { mappings: [{ hostPort: 9053, containerPort: 80, protocol: "udp" }] });
      // Another container's mapping makes the host netns track connections at all.
      const other = pmConf(net, {
        container: net.c2,
        mappings: [{ hostPort: 9999, containerPort: 80, protocol: "tcp" }],
      });
      expect((await pm(net, "ADD", other, { id: "ctr2" })).code).toBe(0);
      // Nothing listens on the host: the flow gets an (unreplied) conntrack entry without DNAT, which
      // would keep steering it past the mapping (checked by hand: without the delete this probe fails).
      expect(await net.probe(net.client, [P("udp", "192.168.77.1", 9053, 42000)])).toMatchObject([
        { ok: false },
      ]);
      expect(net.host.run(["conntrack", "-L", "-p", "udp", "--dport", "9053"]).stdout).toContain(
        "sport=42000",
      );
      expect((await pm(net, "ADD", conf)).code).toBe(0);
      expect(await net.probe(net.client, [P("udp", "192.168.77.1", 9053, 42000)])).toEqual([
        { ok: true, reply: "c1 192.168.77.2 ping" },
      ]);
    },
    T,
  );

  test(
    "hostIP mappings match only their address; a v6 hostIP maps only to the v6 address",
    async () => {
      const conf = pmConf(net, {
        mappings: [
          { hostPort: 8081, containerPort: 80, protocol: "tcp", hostIP: "192.168.77.1" },
          { hostPort: 8082, containerPort: 80, protocol: "tcp", hostIP: "fd78::1" },
        ],
      });
      expect((await pm(net, "ADD", conf)).code).toBe(0);
      const r = await net.probe(net.client, [
        P("tcp", "192.168.77.1", 8081),
        P("tcp", "fd78::1", 8082),
        P("tcp", "fd78::1", 8081),
        P("tcp", "192.168.77.1", 8082),
      ]);
      expect(r.map((o) => o.ok)).toEqual([true, true, false, false]);
      const table = nftTable(net);
      expect(elements(table, "hostip_dnat4")).toHaveLength(1);
      expect(elements(table, "hostip_dnat6")).toHaveLength(1);
      expect(elements(table, "dnat4")).toHaveLength(0);
    },
    T,
  );
});

describe("portmap nftables: state", () => {
  test(
    "the table holds maps and fixed rules; CHECK; DEL twice; DEL without a table",
    async () => {
      const conf = pmConf(net);
      expect((await pm(net, "DEL", conf)).code).toBe(0); // no table yet
      expect((await pm(net, "ADD", conf)).code).toBe(0);
      const table = nftTable(net)!;
      const chains = table.filter((o) => o.chain).map((o) => o.chain.name);
      expect(chains.sort()).toEqual(["output", "postrouting", "prerouting"]);
      expect(elements(table, "dnat4").map((e) => e[0].elem.val.concat)).toEqual(
        expect.arrayContaining([
          ["tcp", 8080],
          ["udp", 8080],
        ]),
      );
      expect(elements(table, "dnat4")[0][0].elem.comment).toContain("id: ctr1");
      expect((await pm(net, "CHECK", conf)).code).toBe(0);

      // CHECK notices a missing element.
      expect(
        net.host.run(["nft", "delete", "element", "inet", "tscni_hostport", "dnat4", "{ udp . 8080 }"]).code,
      ).toBe(0);
      const check = await pm(net, "CHECK", conf);
      expect(check.code).toBe(1);
      expect(check.json.msg).toContain("lacks element udp . 8080");

      expect((await pm(net, "DEL", conf)).code).toBe(0);
      expect((await pm(net, "DEL", conf)).code).toBe(0);
      const left = nftTable(net)!;
      for (const m of ["dnat4", "dnat6", "masq4", "masq6", "owners4", "owners6"]) {
        expect(elements(left, m)).toEqual([]);
      }
    },
    T,
  );

  test(
    "GC removes the mappings of attachments not in cni.dev/valid-attachments",
    async () => {
      const c1 = pmConf(net);
      const c2 = pmConf(net, {
        container: net.c2,
        mappings: [{ hostPort: 9090, containerPort: 80, protocol: "tcp" }],
      });
      expect((await pm(net, "ADD", c1, { id: "ctr1" })).code).toBe(0);
      expect((await pm(net, "ADD", c2, { id: "ctr2" })).code).toBe(0);
      const gc = {
        cniVersion: "1.1.0",
        name: "pmnet",
        type: "portmap",
        "cni.dev/valid-attachments": [{ containerID: "ctr1", ifname: "eth0" }],
      };
      const r = await pm(net, "GC", gc);
      expect(r.code).toBe(0);
      expect((await pm(net, "CHECK", c1, { id: "ctr1" })).code).toBe(0);
      expect((await pm(net, "CHECK", c2, { id: "ctr2" })).code).toBe(1);
      const comments = ["dnat4", "masq4", "owners4"].flatMap((m) =>
        elements(nftTable(net), m).map((e) => e[0].elem.comment as string),
      );
      expect(comments.length).toBeGreaterThan(0);
      expect(comments.every((c) => c.includes("id: ctr1"))).toBe(true);
      expect(
        await net.probe(net.client, [P("tcp", "192.168.77.1", 9090), P("tcp", "192.168.77.1")]),
      ).toMatchObject([{ ok: false }, { ok: true }]);
    },
    T,
  );

  test(
    "with 1,000 existing mappings ADD and DEL still work and the table stays maps, not rules",
    async () => {
      // Structure first (one real ADD), then 1,000 fake containers' elements in ONE nft transaction,
      // rendered by the backend's own element renderer, as 1,000 ADDs would have left them.
      expect((await pm(net, "ADD", pmConf(net), { id: "ctr1" })).code).toBe(0);
      const fakes: string[] = [];
      for (let i = 0; i < 1000; i++) {
        const ip = `10.${100 + (i >> 8)}.${i & 255}.5`;
        const fake: Pick<PortmapConf, "snat" | "masqAll" | "portMappings" | "addrs"> = {
          snat: true,
          masqAll: false,
          portMappings: [{ hostPort: 20000 + i, containerPort: 80, protocol: i % 2 ? "udp" : "tcp" }],
          addrs: [{ family: 4, ip, prefix: 24, subnet: `${ip.replace(/\.5$/, ".0")}/24` }],
        };
        fakes.push(
          ...addElementLines(
            desiredElems({ network: "pmnet", containerID: `fake${i}`, ifName: "eth0" }, fake),
          ),
        );
      }
      await nftApply(`${fakes.join("\n")}\n`, { netnsPath: net.host.path });

      const conf2 = pmConf(net, {
        container: net.c2,
        mappings: [{ hostPort: 9191, containerPort: 80, protocol: "tcp" }],
      });
      expect((await pm(net, "ADD", conf2, { id: "ctr2" })).code).toBe(0);
      expect(await net.probe(net.client, [P("tcp", "192.168.77.1", 9191), P("tcp", "192.168.77.1")])).toEqual(
        [
          { ok: true, reply: "c2 192.168.77.2 ping" },
          { ok: true, reply: "c1 192.168.77.2 ping" },
        ],
      );

      const table = nftTable(net)!;
      expect(elements(table, "dnat4").length).toBe(1000 + 2 + 1);
      expect(elements(table, "masq4").length).toBe(2 * 1002);
      expect(table.filter((o) => o.chain)).toHaveLength(3);
      expect(table.filter((o) => o.rule)).toHaveLength(10);

      // DEL of a fake container (found by its comments) and of the real one.
      const fakeDel = pmConf(net, { mappings: [{ hostPort: 20007, containerPort: 80, protocol: "udp" }] });
      expect((await pm(net, "DEL", fakeDel, { id: "fake7" })).code).toBe(0);
      expect((await pm(net, "DEL", conf2, { id: "ctr2" })).code).toBe(0);
      const after = nftTable(net)!;
      const comments = elements(after, "dnat4").map((e) => e[0].elem.comment as string);
      expect(comments).toHaveLength(1000 - 1 + 2);
      expect(comments.some((c) => c.endsWith("id: fake7") || c.endsWith("id: ctr2"))).toBe(false);
      expect(await net.probe(net.client, [P("tcp", "192.168.77.1", 9191)])).toMatchObject([{ ok: false }]);
    },
    T,
  );

  test(
    "nft conditions restrict the DNAT; changing them rebuilds the chains",
    async () => {
      const only = (cond: string[]) => pmConf(net, { extra: { conditionsV4: cond } });
      // Only clients from 10.0.0.0/8: the client (192.168.77.2) is not forwarded.
      expect((await pm(net, "ADD", only(["ip", "saddr", "10.0.0.0/8"]))).code).toBe(0);
      expect(await net.probe(net.client, [P("tcp", "192.168.77.1"), P("tcp", "fd78::1")])).toMatchObject([
        { ok: false },
        { ok: true },
      ]);
      expect((await pm(net, "ADD", only(["ip", "saddr", "192.168.77.0/24"]))).code).toBe(0);
      expect(await net.probe(net.client, [P("tcp", "192.168.77.1")])).toMatchObject([{ ok: true }]);
      expect(nftTable(net)!.filter((o) => o.set?.name?.startsWith("layout_"))).toHaveLength(1);
    },
    T,
  );
});

describe("portmap: invalid configs are code 7 naming the field", () => {
  const cases: [string, object, string][] = [
    ["hostPort 0", { runtimeConfig: { portMappings: [{ hostPort: 0, containerPort: 80 }] } }, "hostPort"],
    [
      "hostPort > 65535",
      { runtimeConfig: { portMappings: [{ hostPort: 70000, containerPort: 80 }] } },
      "hostPort",
    ],
    [
      "containerPort 0",
      { runtimeConfig: { portMappings: [{ hostPort: 80, containerPort: 0 }] } },
      "containerPort",
    ],
    [
      "bad protocol",
      { runtimeConfig: { portMappings: [{ hostPort: 80, containerPort: 80, protocol: "icmp" }] } },
      "protocol",
    ],
    ["markMasqBit 32", { markMasqBit: 32 }, "markMasqBit"],
    ["markMasqBit -1", { markMasqBit: -1 }, "markMasqBit"],
    ["unknown backend", { backend: "ipfw" }, "backend"],
  ];
  for (const [name, extra, field] of cases) {
    test(
      name,
      async () => {
        const conf = { ...pmConf(net), ...extra };
        const r = await pm(net, "ADD", conf);
        expect(r.code).toBe(1);
        expect(r.json.code).toBe(7);
        expect(r.json.msg).toContain(field);
        expect(nftTable(net)).toBeUndefined();
      },
      T,
    );
  }
});
