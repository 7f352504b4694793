/**
 * firewall on the real kernel: iptables and nftables backends in a throwaway host netns, traffic
 * checked with ping, rules with iptables-save and nft -j.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { cleanupAll, makeNetns, tempDir } from "../../helpers/netns.ts";
import { runPlugin } from "../_run.ts";
import { type FwNet, filterRules, fw, makeFwNet, nftRuleset, ping } from "./firewall-net.ts";

let net: FwNet;
let dataDir: string;

beforeEach(() => {
  net = makeFwNet();
  dataDir = tempDir("tscni-fw-").path;
});
afterEach(() => {
  net.cleanup();
  cleanupAll();
});

function conf(extra: object, prevResult?: object): object {
  return {
    cniVersion: "1.1.0",
    name: "fwnet",
    type: "firewall",
    dataDir,
    ...extra,
    ...(prevResult ? { prevResult } : {}),
  };
}

const IPT_RULES_C1 = [
  ":CNI-ADMIN -",
  ":CNI-FORWARD -",
  '-A FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD',
  '-A CNI-FORWARD -m comment --comment "CNI firewall plugin admin overrides" -j CNI-ADMIN',
  "-A CNI-FORWARD -d 10.79.0.2/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
  "-A CNI-FORWARD -s 10.79.0.2/32 -j ACCEPT",
];

describe("iptables backend", () => {
  test("with FORWARD policy DROP the container reaches the peer and gets replies; DEL takes it back", async () => {
    net.host.run(["iptables", "-P", "FORWARD", "DROP"]);
    expect(ping(net.c1.ns, "192.168.79.2")).toBe(false);
    const c = conf({ backend: "iptables" }, net.prevResult(net.c1));
    const add = await fw(net, "ADD", c, net.c1);
    expect(add.stderr).toBe("");
    expect(add.code).toBe(0);
    expect(add.json.ips[0].address).toBe("10.79.0.2/24");
    expect(
      filterRules(net).filter(
        (l) => !l.startsWith(":FORWARD") && !l.startsWith(":INPUT") && !l.startsWith(":OUTPUT"),
      ),
    ).toEqual(IPT_RULES_C1);
    const v6 = filterRules(net, 6);
    expect(v6).toContain("-A CNI-FORWARD -s fd79::2/128 -j ACCEPT");
    expect(v6).toContain(
      "-A CNI-FORWARD -d fd79::2/128 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    );
    expect(ping(net.c1.ns, "192.168.79.2")).toBe(true);
    // New connections towards the container are not let in (only related/established).
    expect(ping(net.peer, "10.79.0.2")).toBe(false);
    // Another container without the plugin still cannot get out.
    expect(ping(net.c2.ns, "192.168.79.2")).toBe(false);
    expect((await fw(net, "CHECK", c, net.c1)).code).toBe(0);

    const del = await fw(net, "DEL", c, net.c1);
    expect(del.code).toBe(0);
    const after = filterRules(net);
    expect(after.some((l) => l.includes("10.79.0.2"))).toBe(false);
    expect(filterRules(net, 6).some((l) => l.includes("fd79::2"))).toBe(false);
    // Chains and jumps stay, like upstream.
    expect(after).toContain('-A FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD');
    expect(ping(net.c1.ns, "192.168.79.2")).toBe(false);
    expect((await fw(net, "DEL", c, net.c1)).code).toBe(0);
    const check = await fw(net, "CHECK", c, net.c1);
    expect(check.json.code).toBe(999);
    expect(check.json.msg).toContain("10.79.0.2/32");
    expect(readdirSync(`${dataDir}/fwnet`)).toEqual([]);
  });

  test("bridge + firewall: with FORWARD policy DROP only the chain with firewall gets out", async () => {
    net.host.run(["iptables", "-P", "FORWARD", "DROP"]);
    const ctr = makeNetns("fwb");
    const bridgeConf = {
      cniVersion: "1.0.0",
      name: "fwchain",
      type: "bridge",
      bridge: "cnifw0",
      isGateway: true,
      ipam: {
        type: "host-local",
        subnet: "10.81.0.0/24",
        routes: [{ dst: "0.0.0.0/0" }],
        dataDir: tempDir("tscni-fw-ipam-").path,
      },
    };
    const env = { CNI_COMMAND: "ADD", CNI_CONTAINERID: "chain1", CNI_NETNS: ctr.path, CNI_IFNAME: "eth0" };
    const br = await runPlugin({ plugin: "bridge", hostNetns: net.host.name, env, config: bridgeConf });
    expect(br.code).toBe(0);
    const ip = br.json.ips[0].address.split("/")[0];
    expect(ping(ctr, "192.168.79.2")).toBe(false);
    const fwConf = {
      cniVersion: "1.0.0",
      name: "fwchain",
      type: "firewall",
      backend: "iptables",
      dataDir,
      prevResult: br.json,
    };
    const add = await fw(net, "ADD", fwConf, undefined, { id: "chain1", env: { CNI_NETNS: ctr.path } });
    expect(add.code).toBe(0);
    expect(add.json).toEqual(br.json);
    expect(ping(ctr, "192.168.79.2")).toBe(true);
    expect(ping(net.peer, ip)).toBe(false);
    expect(
      (await fw(net, "DEL", fwConf, undefined, { id: "chain1", env: { CNI_NETNS: ctr.path } })).code,
    ).toBe(0);
    expect(ping(ctr, "192.168.79.2")).toBe(false);
    const del = await runPlugin({
      plugin: "bridge",
      hostNetns: net.host.name,
      env: { ...env, CNI_COMMAND: "DEL" },
      config: bridgeConf,
    });
    expect(del.code).toBe(0);
    expect(filterRules(net).some((l) => l.includes(ip))).toBe(false);
  });

  test("a second ADD adds nothing twice; iptablesAdminChainName names the admin chain", async () => {
    const c = conf({ backend: "iptables", iptablesAdminChainName: "MY-ADMIN" }, net.prevResult(net.c1));
    expect((await fw(net, "ADD", c, net.c1)).code).toBe(0);
    expect((await fw(net, "ADD", c, net.c1)).code).toBe(0);
    const rules = filterRules(net);
    expect(rules.filter((l) => l === "-A CNI-FORWARD -s 10.79.0.2/32 -j ACCEPT")).toHaveLength(1);
    expect(rules.filter((l) => l.startsWith("-A FORWARD"))).toHaveLength(1);
    expect(rules).toContain(":MY-ADMIN -");
    expect(rules).toContain(
      '-A CNI-FORWARD -m comment --comment "CNI firewall plugin admin overrides" -j MY-ADMIN',
    );
  });

  test("a re-ADD with another address drops the old address's rules", async () => {
    expect((await fw(net, "ADD", conf({ backend: "iptables" }, net.prevResult(net.c1)), net.c1)).code).toBe(
      0,
    );
    const moved = { cniVersion: "1.0.0", interfaces: [{ name: "br0" }], ips: [{ address: "10.79.0.9/24" }] };
    expect((await fw(net, "ADD", conf({ backend: "iptables" }, moved), net.c1)).code).toBe(0);
    const rules = filterRules(net);
    expect(rules.some((l) => l.includes("10.79.0.2/32"))).toBe(false);
    expect(filterRules(net, 6).some((l) => l.includes("fd79::2"))).toBe(false);
    expect(rules).toContain("-A CNI-FORWARD -s 10.79.0.9/32 -j ACCEPT");
  });

  test("DEL without prevResult uses the record of ADD", async () => {
    const c = conf({ backend: "iptables" }, net.prevResult(net.c1));
    expect((await fw(net, "ADD", c, net.c1)).code).toBe(0);
    expect((await fw(net, "DEL", conf({ backend: "iptables" }), net.c1)).code).toBe(0);
    expect(filterRules(net).some((l) => l.includes("10.79.0.2"))).toBe(false);
  });

  test("DEL of a stale attachment keeps the rules of the address's new owner", async () => {
    const c = conf({ backend: "iptables" }, net.prevResult(net.c1));
    expect((await fw(net, "ADD", c, net.c1, { id: "old" })).code).toBe(0);
    expect((await fw(net, "ADD", c, net.c1, { id: "new" })).code).toBe(0);
    expect((await fw(net, "DEL", c, net.c1, { id: "old" })).code).toBe(0);
    expect(filterRules(net)).toContain("-A CNI-FORWARD -s 10.79.0.2/32 -j ACCEPT");
    expect((await fw(net, "DEL", c, net.c1, { id: "new" })).code).toBe(0);
    expect(filterRules(net).some((l) => l.includes("10.79.0.2"))).toBe(false);
  });

  test("GC removes only the rules of attachments not in cni.dev/valid-attachments", async () => {
    expect(
      (await fw(net, "ADD", conf({ backend: "iptables" }, net.prevResult(net.c1)), net.c1, { id: "a" })).code,
    ).toBe(0);
    expect(
      (await fw(net, "ADD", conf({ backend: "iptables" }, net.prevResult(net.c2)), net.c2, { id: "b" })).code,
    ).toBe(0);
    const gc = await fw(
      net,
      "GC",
      conf({ backend: "iptables", "cni.dev/valid-attachments": [{ containerID: "a", ifname: "eth0" }] }),
      undefined,
    );
    expect(gc.stderr).toBe("");
    expect(gc.stdout).toBe("");
    expect(gc.code).toBe(0);
    const rules = filterRules(net);
    expect(rules).toContain("-A CNI-FORWARD -s 10.79.0.2/32 -j ACCEPT");
    expect(rules.some((l) => l.includes("10.79.1.2"))).toBe(false);
    expect(filterRules(net, 6).some((l) => l.includes("fd79:1::2"))).toBe(false);
    expect(readdirSync(`${dataDir}/fwnet`)).toHaveLength(1);
    const noList = await fw(net, "GC", conf({ backend: "iptables" }), undefined);
    expect(noList.json.code).toBe(7);
  });

  test("without backend and without firewalld on the bus, iptables is used", async () => {
    expect((await fw(net, "ADD", conf({}, net.prevResult(net.c1)), net.c1)).code).toBe(0);
    expect(filterRules(net)).toContain("-A CNI-FORWARD -s 10.79.0.2/32 -j ACCEPT");
  });
});

describe("nftables backend", () => {
  // biome-ignore lint/suspicious/noExplicitAny: nft -j objects
  const elems = (set: string): any[] => {
    const s = nftRuleset(net).find(
      (o) => (o.map ?? o.set)?.name === set && (o.map ?? o.set).table === "tscni_firewall",
    );
    return (s?.map ?? s?.set)?.elem ?? [];
  };
  // biome-ignore lint/suspicious/noExplicitAny: nft -j element
  const keyOf = (e: any): string => JSON.stringify(e.elem?.val ?? e[0]?.elem?.val ?? e[0] ?? e);

  test("ADD puts the addresses into the allow maps; CHECK, DEL, DEL again", async () => {
    const c = conf({ backend: "nftables" }, net.prevResult(net.c1));
    const add = await fw(net, "ADD", c, net.c1);
    expect(add.stderr).toBe("");
    expect(add.code).toBe(0);
    const a4 = elems("allow4");
    expect(a4).toHaveLength(1);
    expect(keyOf(a4[0])).toContain("10.79.0.2");
    expect(JSON.stringify(a4[0])).toContain("net: fwnet, if: eth0, id: ctr1");
    expect(keyOf(elems("allow6")[0])).toContain("fd79::2");
    const rules = nftRuleset(net).filter(
      (o) => o.rule?.table === "tscni_firewall" && o.rule.chain === "forward",
    );
    expect(rules).toHaveLength(6);
    // No iptables rules from this backend.
    expect(filterRules(net).some((l) => l.includes("CNI-FORWARD"))).toBe(false);
    expect((await fw(net, "CHECK", c, net.c1)).code).toBe(0);
    // A second attachment makes no rule more, only elements.
    expect(
      (await fw(net, "ADD", conf({ backend: "nftables" }, net.prevResult(net.c2)), net.c2, { id: "ctr2" }))
        .code,
    ).toBe(0);
    expect(nftRuleset(net).filter((o) => o.rule?.table === "tscni_firewall")).toHaveLength(6);
    expect(elems("allow4")).toHaveLength(2);

    expect((await fw(net, "DEL", c, net.c1)).code).toBe(0);
    expect(JSON.stringify(elems("allow4"))).not.toContain("10.79.0.2");
    expect(JSON.stringify(elems("allow6"))).not.toContain("fd79::2");
    expect(JSON.stringify(elems("allow4"))).toContain("10.79.1.2");
    expect((await fw(net, "DEL", c, net.c1)).code).toBe(0);
    expect((await fw(net, "DEL", conf({ backend: "nftables" }), net.c1)).code).toBe(0);
    const check = await fw(net, "CHECK", c, net.c1);
    expect(check.json.code).toBe(999);
    expect(check.json.msg).toContain("10.79.0.2");
  });

  test("DEL without prevResult finds the elements by owner", async () => {
    expect((await fw(net, "ADD", conf({ backend: "nftables" }, net.prevResult(net.c1)), net.c1)).code).toBe(
      0,
    );
    expect((await fw(net, "DEL", conf({ backend: "nftables" }), net.c1)).code).toBe(0);
    expect(elems("allow4")).toHaveLength(0);
    expect(elems("allow6")).toHaveLength(0);
  });

  test("the rules accept the container's forwarding ahead of a drop in the same table", async () => {
    expect((await fw(net, "ADD", conf({ backend: "nftables" }, net.prevResult(net.c1)), net.c1)).code).toBe(
      0,
    );
    // An operator's default drop at the end of tscni's forward chain: the accepts come first.
    expect(net.host.run(["nft", "add", "rule", "inet", "tscni_firewall", "forward", "drop"]).code).toBe(0);
    expect(ping(net.c1.ns, "192.168.79.2")).toBe(true);
    expect(ping(net.peer, "10.79.0.2")).toBe(false);
    expect(ping(net.c2.ns, "192.168.79.2")).toBe(false);
    // CHECK sees the chain is not ours any more; the next ADD puts it back.
    expect(
      (await fw(net, "CHECK", conf({ backend: "nftables" }, net.prevResult(net.c1)), net.c1)).json.code,
    ).toBe(999);
    expect((await fw(net, "ADD", conf({ backend: "nftables" }, net.prevResult(net.c1)), net.c1)).code).toBe(
      0,
    );
    expect(ping(net.c2.ns, "192.168.79.2")).toBe(true);
  });

  test("GC removes only the elements of attachments not in cni.dev/valid-attachments", async () => {
    expect(
      (await fw(net, "ADD", conf({ backend: "nftables" }, net.prevResult(net.c1)), net.c1, { id: "a" })).code,
    ).toBe(0);
    expect(
      (await fw(net, "ADD", conf({ backend: "nftables" }, net.prevResult(net.c2)), net.c2, { id: "b" })).code,
    ).toBe(0);
    const other = { ...(conf({ backend: "nftables" }, net.prevResult(net.c3)) as object), name: "othernet" };
    expect((await fw(net, "ADD", other, net.c3, { id: "c" })).code).toBe(0);
    const gc = await fw(
      net,
      "GC",
      conf({ backend: "nftables", "cni.dev/valid-attachments": [{ containerID: "a", ifname: "eth0" }] }),
      undefined,
    );
    expect(gc.stdout).toBe("");
    expect(gc.code).toBe(0);
    const a4 = JSON.stringify(elems("allow4"));
    expect(a4).toContain("10.79.0.2");
    expect(a4).not.toContain("10.79.1.2");
    // Another network's attachment is not this GC's business.
    expect(a4).toContain("10.79.0.3");
  });
});

describe("config", () => {
  test("errors are CNI errors with the spec's codes", async () => {
    const bad = await fw(net, "ADD", conf({ backend: "pf" }, net.prevResult(net.c1)), net.c1);
    expect(bad.json.code).toBe(7);
    expect(bad.json.msg).toContain("backend");
    const noPrev = await fw(net, "ADD", conf({ backend: "iptables" }), net.c1);
    expect(noPrev.json.code).toBe(7);
    expect(noPrev.json.msg).toContain("prevResult");
    const policy = await fw(
      net,
      "ADD",
      conf({ backend: "iptables", ingressPolicy: "closed" }, net.prevResult(net.c1)),
      net.c1,
    );
    expect(policy.json.code).toBe(7);
    const noIf = await fw(
      net,
      "ADD",
      conf(
        { ingressPolicy: "same-bridge", backend: "nftables" },
        { cniVersion: "1.0.0", ips: [{ address: "10.79.0.2/24" }] },
      ),
      net.c1,
    );
    expect(noIf.json.code).toBe(7);
    expect(noIf.json.msg).toContain("bridge");
    const chain = await fw(
      net,
      "ADD",
      conf({ backend: "iptables", iptablesAdminChainName: "a b" }, net.prevResult(net.c1)),
      net.c1,
    );
    expect(chain.json.code).toBe(7);
    expect(existsSync(`${dataDir}/fwnet`)).toBe(false);
  });

  test("STATUS reports a backend that is not there", async () => {
    const st = await fw(net, "STATUS", conf({ backend: "iptables", cniVersion: "1.1.0" }), undefined);
    expect(st.stdout).toBe("");
    expect(st.code).toBe(0);
    expect(
      (await fw(net, "STATUS", conf({ backend: "nftables", cniVersion: "1.1.0" }), undefined)).code,
    ).toBe(0);
    const fwd = await fw(net, "STATUS", conf({ backend: "firewalld", cniVersion: "1.1.0" }), undefined);
    expect(fwd.json.code).toBe(50);
    expect(fwd.json.msg).toContain("firewalld");
  });
});

describe("concurrency", () => {
  for (const backend of ["iptables", "nftables"]) {
    test(`${backend}: 8 ADDs at once on an empty table all land, each rule once; 8 DELs leave none`, async () => {
      const ids = Array.from({ length: 8 }, (_, i) => i);
      const prev = (i: number) => ({
        cniVersion: "1.0.0",
        interfaces: [{ name: "br0" }],
        ips: [{ address: `10.79.0.${100 + i}/24` }],
      });
      const adds = await Promise.all(
        ids.map((i) => fw(net, "ADD", conf({ backend }, prev(i)), net.c1, { id: `p${i}` })),
      );
      for (const r of adds) expect(r.stderr + r.stdout.slice(0, 0)).toBe("");
      expect(adds.map((r) => r.code)).toEqual(ids.map(() => 0));
      if (backend === "iptables") {
        const rules = filterRules(net);
        expect(rules.filter((l) => l.startsWith("-A FORWARD"))).toHaveLength(1);
        expect(rules.filter((l) => l.includes("CNI-ADMIN") && l.startsWith("-A CNI-FORWARD"))).toHaveLength(
          1,
        );
        for (const i of ids) expect(rules.filter((l) => l.includes(`10.79.0.${100 + i}/32`))).toHaveLength(2);
      } else {
        const text = JSON.stringify(nftRuleset(net));
        for (const i of ids) expect(text).toContain(`10.79.0.${100 + i}`);
        expect(nftRuleset(net).filter((o) => o.rule?.table === "tscni_firewall")).toHaveLength(6);
      }
      const dels = await Promise.all(
        ids.map((i) => fw(net, "DEL", conf({ backend }, prev(i)), net.c1, { id: `p${i}` })),
      );
      expect(dels.map((r) => r.code)).toEqual(ids.map(() => 0));
      expect(filterRules(net).some((l) => l.includes("10.79.0.1"))).toBe(false);
      expect(JSON.stringify(nftRuleset(net))).not.toContain("10.79.0.10");
    });
  }
});
