/**
 * ingressPolicy same-bridge / isolated on the real kernel, iptables and nftables backends: containers
 * on another isolated bridge cannot reach the container, ones on its own bridge and hosts outside can.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { cleanupAll, tempDir } from "../../helpers/netns.ts";
import {
  type FwContainer,
  type FwNet,
  filterRules,
  fw,
  makeFwNet,
  nftRuleset,
  ping,
} from "./firewall-net.ts";

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

function conf(backend: string, policy: string, c: FwContainer): object {
  return {
    cniVersion: "1.1.0",
    name: "fwnet",
    type: "firewall",
    backend,
    ingressPolicy: policy,
    dataDir,
    prevResult: net.prevResult(c),
  };
}

async function addAll(backend: string, policy: string): Promise<void> {
  for (const [c, id] of [
    [net.c1, "c1"],
    [net.c2, "c2"],
    [net.c3, "c3"],
  ] as const) {
    const r = await fw(net, "ADD", conf(backend, policy, c), c, { id });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
  }
}

for (const backend of ["iptables", "nftables"]) {
  describe(`${backend} backend`, () => {
    test("same-bridge: another bridge's container cannot reach c1; its own bridge and the peer can", async () => {
      expect(ping(net.c2.ns, net.c1.ip)).toBe(true);
      await addAll(backend, "same-bridge");
      expect(ping(net.c2.ns, net.c1.ip)).toBe(false);
      expect(ping(net.c1.ns, net.c2.ip)).toBe(false);
      expect(ping(net.c3.ns, net.c1.ip)).toBe(true);
      expect(ping(net.peer, net.c1.ip)).toBe(true);
      expect(ping(net.c1.ns, "192.168.79.2")).toBe(true);
      for (const [c, id] of [
        [net.c1, "c1"],
        [net.c2, "c2"],
      ] as const) {
        const check = await fw(net, "CHECK", conf(backend, "same-bridge", c), c, { id });
        expect(check.stdout).toBe("");
        expect(check.code).toBe(0);
      }
      // DEL keeps the bridge isolation (other containers may use the bridges), like upstream.
      expect((await fw(net, "DEL", conf(backend, "same-bridge", net.c1), net.c1, { id: "c1" })).code).toBe(0);
      expect(ping(net.c2.ns, net.c1.ip)).toBe(false);
    });

    test("open (the default) isolates nothing", async () => {
      await addAll(backend, "open");
      expect(ping(net.c2.ns, net.c1.ip)).toBe(true);
    });
  });
}

test("iptables same-bridge makes upstream's isolation chains, each rule once", async () => {
  await addAll("iptables", "same-bridge");
  const rules = filterRules(net);
  const c = (p: string) => `-m comment --comment "CNI firewall plugin rules (ingressPolicy: ${p})"`;
  expect(rules.filter((l) => l.startsWith("-A FORWARD"))).toEqual([
    `-A FORWARD ${c("same-bridge|isolated")} -j CNI-ISOLATION-STAGE-1`,
    '-A FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD',
  ]);
  expect(rules.filter((l) => l.startsWith("-A CNI-ISOLATION"))).toEqual([
    `-A CNI-ISOLATION-STAGE-1 -i br1 ! -o br1 ${c("same-bridge")} -j CNI-ISOLATION-STAGE-2`,
    `-A CNI-ISOLATION-STAGE-1 -i br0 ! -o br0 ${c("same-bridge")} -j CNI-ISOLATION-STAGE-2`,
    `-A CNI-ISOLATION-STAGE-1 ${c("same-bridge|isolated")} -j RETURN`,
    `-A CNI-ISOLATION-STAGE-2 -o br1 ${c("same-bridge|isolated")} -j DROP`,
    `-A CNI-ISOLATION-STAGE-2 -o br0 ${c("same-bridge|isolated")} -j DROP`,
    `-A CNI-ISOLATION-STAGE-2 ${c("same-bridge|isolated")} -j RETURN`,
  ]);
});

test("nftables isolated: the bridge is isolated and has no same-bridge pass", async () => {
  expect((await fw(net, "ADD", conf("nftables", "same-bridge", net.c1), net.c1, { id: "c1" })).code).toBe(0);
  expect((await fw(net, "ADD", conf("nftables", "isolated", net.c2), net.c2, { id: "c2" })).code).toBe(0);
  const set = (name: string) =>
    JSON.stringify(
      nftRuleset(net).find((o) => o.set?.name === name && o.set.table === "tscni_firewall")?.set.elem ?? [],
    );
  expect(set("isolated")).toContain("br0");
  expect(set("isolated")).toContain("br1");
  expect(set("same")).toContain("br0");
  expect(set("same")).not.toContain("br1");
  expect((await fw(net, "CHECK", conf("nftables", "isolated", net.c2), net.c2, { id: "c2" })).code).toBe(0);
  // The same bridge asked for as isolated by CHECK while same-bridge: the pass element is wrong.
  const check = await fw(net, "CHECK", conf("nftables", "isolated", net.c1), net.c1, { id: "c1" });
  expect(check.json.code).toBe(999);
});

test("iptables isolated adds upstream 1.9's same-bridge drop; CHECK sees it", async () => {
  const r = await fw(net, "ADD", conf("iptables", "isolated", net.c1), net.c1, { id: "c1" });
  expect(r.code).toBe(0);
  expect(filterRules(net)).toContain(
    '-A CNI-ISOLATION-STAGE-1 -i br0 -o br0 -m comment --comment "CNI firewall plugin rules (ingressPolicy: isolated)" -j DROP',
  );
  expect((await fw(net, "CHECK", conf("iptables", "isolated", net.c1), net.c1, { id: "c1" })).code).toBe(0);
  net.host.run(["iptables", "-D", "CNI-ISOLATION-STAGE-1", "1"]);
  const check = await fw(net, "CHECK", conf("iptables", "isolated", net.c1), net.c1, { id: "c1" });
  expect(check.json.code).toBe(999);
  expect(check.json.msg).toContain("CNI-ISOLATION-STAGE-1");
});
