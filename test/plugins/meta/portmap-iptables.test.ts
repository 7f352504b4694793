/**
 * portmap, iptables backend, on the real kernel: traffic, and interoperability with upstream's Go
 * plugin (/usr/lib/cni/portmap, plugins 1.1.1) in both directions. (Upstream's CHECK is not used as
 * an oracle: with a working ip6tables it fails even on its own rules — it looks for the IPv6 chain
 * of a v4-only container and compares IPv4 rules in ip6tables for a dual-stack one.)
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { chainName } from "../../../src/plugins/meta/portmap/iptables.ts";
import {
  ALL_FORWARDED,
  answered,
  makePortmapNet,
  natRules,
  type PortmapNet,
  pm,
  pmConf,
  probeAll,
  resetFirewall,
} from "./portmap-net.ts";

const T = 60_000;
const UPSTREAM = "/usr/lib/cni/portmap";
const DN = chainName("pmnet", "ctr1", "DN-");

let net: PortmapNet;
beforeAll(async () => {
  net = await makePortmapNet();
}, T);
afterEach(() => resetFirewall(net));
afterAll(() => net?.cleanup());

/** Lines of iptables-save that belong to a container (its chain, its rules, its entry rules). */
function containerLines(family: 4 | 6): string[] {
  return natRules(net, family)
    .split("\n")
    .filter((l) => l.includes("CNI-DN-") || l.includes("CNI-SN-"));
}

const mixed = [
  { hostPort: 8080, containerPort: 80, protocol: "tcp" },
  { hostPort: 8080, containerPort: 80, protocol: "udp" },
  { hostPort: 8081, containerPort: 80, protocol: "udp", hostIP: "192.168.77.1" },
  { hostPort: 8082, containerPort: 82, protocol: "sctp" },
  { hostPort: 8083, containerPort: 83, protocol: "tcp", hostIP: "fd78::1" },
];

describe("portmap iptables", () => {
  test(
    "TCP and UDP reach the container from outside, from 127.0.0.1 and by hairpin; DEL stops them",
    async () => {
      const conf = pmConf(net, { backend: "iptables" });
      expect((await pm(net, "ADD", conf)).code).toBe(0);
      expect(await probeAll(net)).toEqual(ALL_FORWARDED);
      expect((await pm(net, "DEL", conf)).code).toBe(0);
      expect(answered(await probeAll(net)).some((x) => x)).toBe(false);
      expect(containerLines(4)).toEqual([]);
      expect(containerLines(6)).toEqual([]);
    },
    T,
  );

  const variants: [string, Record<string, unknown>][] = [
    ["defaults, hostIPs, sctp, dual-stack", {}],
    ["markMasqBit and iptables conditions", { markMasqBit: 5, conditionsV4: ["!", "-s", "172.16.0.0/12"] }],
    ["externalSetMarkChain", { externalSetMarkChain: "KUBE-MARK-MASQ" }],
  ];
  for (const [name, extra] of variants) {
    test(
      `ours writes exactly upstream's rules (${name}); each DELs the other's`,
      async () => {
        const conf = pmConf(net, { backend: "iptables", mappings: mixed, extra });
        const prepare = () => {
          if (!extra.externalSetMarkChain) return;
          for (const t of ["iptables", "ip6tables"]) net.host.run([t, "-t", "nat", "-N", "KUBE-MARK-MASQ"]);
        };

        // Upstream ADD → our CHECK passes → our DEL leaves nothing of the container.
        prepare();
        const up = await pm(net, "ADD", conf, { plugin: UPSTREAM });
        expect(up.code).toBe(0);
        const upstream4 = natRules(net, 4);
        const upstream6 = natRules(net, 6);
        expect(upstream4).toContain(`:${DN} - [0:0]`);
        const check = await pm(net, "CHECK", conf);
        expect(check.stdout).toBe("");
        expect(check.code).toBe(0);
        expect((await pm(net, "DEL", conf)).code).toBe(0);
        expect(containerLines(4)).toEqual([]);
        expect(containerLines(6)).toEqual([]);

        // Our ADD on a clean table → the same iptables-save → upstream DEL leaves nothing.
        resetFirewall(net);
        prepare();
        expect((await pm(net, "ADD", conf)).code).toBe(0);
        expect(natRules(net, 4)).toBe(upstream4);
        expect(natRules(net, 6)).toBe(upstream6);
        expect((await pm(net, "DEL", conf, { plugin: UPSTREAM })).code).toBe(0);
        expect(containerLines(4)).toEqual([]);
        expect(containerLines(6)).toEqual([]);
      },
      T,
    );
  }

  test(
    "CHECK notices a missing rule; DEL twice succeeds",
    async () => {
      const conf = pmConf(net, { backend: "iptables" });
      expect((await pm(net, "ADD", conf)).code).toBe(0);
      expect((await pm(net, "CHECK", conf)).code).toBe(0);
      expect(net.host.run(["iptables", "-t", "nat", "-D", DN, "3"]).code).toBe(0);
      const r = await pm(net, "CHECK", conf);
      expect(r.code).toBe(1);
      expect(r.json.msg).toContain(`not found in chain ${DN}`);
      expect((await pm(net, "DEL", conf)).code).toBe(0);
      expect((await pm(net, "DEL", conf)).code).toBe(0);
      expect(containerLines(4)).toEqual([]);
    },
    T,
  );

  test(
    "masqAll masquerades every DNATed source (no -s on the mark rule, no localhost rule)",
    async () => {
      const conf = pmConf(net, { backend: "iptables", v6: false, extra: { masqAll: true } });
      expect((await pm(net, "ADD", conf)).code).toBe(0);
      expect(containerLines(4).filter((l) => l.startsWith(`-A ${DN}`))).toEqual([
        `-A ${DN} -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK`,
        `-A ${DN} -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.77.0.2:80`,
        `-A ${DN} -p udp -m udp --dport 8080 -j CNI-HOSTPORT-SETMARK`,
        `-A ${DN} -p udp -m udp --dport 8080 -j DNAT --to-destination 10.77.0.2:80`,
      ]);
      // The outside client is masqueraded now.
      const r = await net.probe(net.client, [{ proto: "tcp", host: "192.168.77.1", port: 8080 }]);
      expect(r).toEqual([{ ok: true, reply: "c1 10.77.0.1 ping" }]);
    },
    T,
  );

  test(
    "GC removes the chains of containers not in cni.dev/valid-attachments",
    async () => {
      const c2 = pmConf(net, { backend: "iptables", container: net.c2, mappings: [mixed[0]!] });
      expect((await pm(net, "ADD", pmConf(net, { backend: "iptables" }), { id: "ctr1" })).code).toBe(0);
      expect((await pm(net, "ADD", c2, { id: "ctr2" })).code).toBe(0);
      // Another network's container is not touched.
      expect(
        (await pm(net, "ADD", pmConf(net, { backend: "iptables", name: "other" }), { id: "ctr3" })).code,
      ).toBe(0);
      const gc = {
        cniVersion: "1.1.0",
        name: "pmnet",
        type: "portmap",
        backend: "iptables",
        "cni.dev/valid-attachments": [{ containerID: "ctr1", ifname: "eth0" }],
      };
      expect((await pm(net, "GC", gc)).code).toBe(0);
      const chains = (f: 4 | 6): string[] => [...(natRules(net, f).match(/^:CNI-DN-\S+/gm) ?? [])];
      const expected = [`:${DN}`, `:${chainName("other", "ctr3", "DN-")}`].sort();
      expect(chains(4).sort()).toEqual(expected);
      expect(chains(6).sort()).toEqual(expected);
    },
    T,
  );
});
