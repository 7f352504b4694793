/** The bridge plugin's firewall parts: macspoofchk (nft bridge nat), ipMasq in both backends, and GC. */
import { afterEach, describe, expect, test } from "bun:test";
import { cleanupAll, makeNetns, type TempNetns } from "../../helpers/netns.ts";
import { add, addrOf, bridgeConf, call, makeWorld, ping, reservations, subnet } from "./bridge-helpers.ts";

afterEach(() => cleanupAll());

const T = 30_000;

// biome-ignore lint/suspicious/noExplicitAny: nft -j output is deeply nested and only probed
type NftJson = any;

function nftObjects(host: TempNetns, ...args: string[]): NftJson[] {
  const r = host.run(["nft", "-j", "list", ...args]);
  if (r.code !== 0) return [];
  return JSON.parse(r.stdout).nftables;
}

function masqElements(host: TempNetns): string[] {
  return nftObjects(host, "map", "inet", "tscni_masquerade", "masq4")
    .flatMap((o) => o.map?.elem ?? [])
    .map((e: unknown) => JSON.stringify(e));
}

describe("bridge macspoofchk", () => {
  test(
    "rules drop frames with another source MAC; DEL removes them",
    async () => {
      const w = makeWorld();
      const [c1, c2] = [makeNetns("c"), makeNetns("c")];
      const ranges = [[{ subnet: subnet().cidr }]];
      const conf = bridgeConf(w, { macspoofchk: true }, ranges);
      const r = await add(w, c1, conf, { containerID: "a" });
      await add(w, c2, bridgeConf(w, {}, ranges), { containerID: "b" });
      const id = "a-eth0";
      const objs = nftObjects(w.host, "table", "bridge", "nat");
      const chains = objs.filter((o) => o.chain).map((o) => o.chain.name);
      expect(chains).toEqual(
        expect.arrayContaining(["PREROUTING", `cni-br-iface-${id}`, `cni-br-iface-${id}-mac`]),
      );
      const rules = objs.filter((o) => o.rule).map((o) => o.rule);
      const jump = rules.find((x) => x.chain === "PREROUTING");
      expect(jump.comment).toBe(`macspoofchk-${id}`);
      expect(jump.expr[0].match.right).toBe(r.interfaces[1].name);
      const macRule = rules.find((x) => x.chain === `cni-br-iface-${id}-mac` && x.expr[0].match);
      expect(macRule.expr[0].match.right).toBe(r.interfaces[2].mac);

      const peer = addrOf(c2, 4);
      expect(ping(c1, peer)).toBe(true);
      c1.run(["ip", "neigh", "flush", "all"]);
      c1.run(["ip", "link", "set", "eth0", "address", "0a:66:66:66:66:66"]);
      expect(ping(c1, peer)).toBe(false);

      expect((await call(w, "DEL", c1, conf, { containerID: "a" })).code).toBe(0);
      const after = nftObjects(w.host, "table", "bridge", "nat");
      expect(after.filter((o) => o.rule)).toEqual([]);
      expect(after.filter((o) => o.chain).map((o) => o.chain.name)).toEqual(["PREROUTING"]);
      expect((await call(w, "DEL", c1, conf, { containerID: "a" })).code).toBe(0);
    },
    T,
  );
});

describe("bridge ipMasq", () => {
  test(
    "nftables backend (the default): the container is masqueraded until DEL",
    async () => {
      const w = makeWorld();
      const c1 = makeNetns("c");
      const conf = bridgeConf(w, { ipMasq: true, isGateway: true });
      const r = await add(w, c1, conf);
      const ip = r.ips[0].address.split("/")[0];
      expect(masqElements(w.host).some((e) => e.includes(ip))).toBe(true);
      const check = await call(w, "CHECK", c1, { ...conf, prevResult: r });
      expect(check.code).toBe(0);
      expect((await call(w, "DEL", c1, conf)).code).toBe(0);
      expect(masqElements(w.host).some((e) => e.includes(ip))).toBe(false);
    },
    T,
  );

  test(
    "iptables backend: upstream's chain with the container's rules until DEL",
    async () => {
      const w = makeWorld();
      const c1 = makeNetns("c");
      const conf = bridgeConf(w, { ipMasq: true, ipMasqBackend: "iptables" });
      const r = await add(w, c1, conf, { containerID: "ipt1" });
      const ip = r.ips[0].address.split("/")[0];
      const rules = () => w.host.run(["iptables", "-t", "nat", "-S"]).stdout;
      expect(rules()).toContain(`-s ${ip}/32`);
      expect(rules()).toContain('name: \\"brnet\\" id: \\"ipt1\\"');
      expect((await call(w, "CHECK", c1, { ...conf, prevResult: r }, { containerID: "ipt1" })).code).toBe(0);
      expect((await call(w, "DEL", c1, conf, { containerID: "ipt1" })).code).toBe(0);
      expect(rules()).not.toContain(ip);
    },
    T,
  );
});

describe("bridge GC", () => {
  test(
    "removes masquerade and reservations of attachments not listed as valid",
    async () => {
      const w = makeWorld();
      const [c1, c2] = [makeNetns("c"), makeNetns("c")];
      const conf = bridgeConf(w, { ipMasq: true });
      const r1 = await add(w, c1, conf, { containerID: "keep" });
      const r2 = await add(w, c2, conf, { containerID: "gone" });
      const [ip1, ip2] = [r1, r2].map((r) => r.ips[0].address.split("/")[0]);
      const gc = await call(w, "GC", "", {
        ...conf,
        "cni.dev/valid-attachments": [{ containerID: "keep", ifname: "eth0" }],
      });
      expect(gc.stdout).toBe("");
      expect(gc.code).toBe(0);
      const elems = masqElements(w.host);
      expect(elems.some((e) => e.includes(ip1))).toBe(true);
      expect(elems.some((e) => e.includes(ip2))).toBe(false);
      expect(reservations(w)).toEqual([ip1]);
    },
    T,
  );

  test(
    "without cni.dev/valid-attachments GC refuses instead of removing everything",
    async () => {
      const w = makeWorld();
      const r = await call(w, "GC", "", bridgeConf(w, { ipMasq: true }));
      expect(r.code).toBe(1);
      expect(r.json.code).toBe(7);
    },
    T,
  );
});
