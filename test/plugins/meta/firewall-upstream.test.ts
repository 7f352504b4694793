/**
 * Differential cases against Debian's upstream firewall plugin (1.1.1, /usr/lib/cni/firewall), iptables
 * backend: the same chains and rules, and DEL works across the two both ways.
 */
import { afterEach, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { cleanupAll, tempDir } from "../../helpers/netns.ts";
import { UPSTREAM_DIR } from "../_run.ts";
import { type FwContainer, type FwNet, filterRules, fw, makeFwNet } from "./firewall-net.ts";

const UPSTREAM = `${UPSTREAM_DIR}/firewall`;
const skip = !existsSync(UPSTREAM);

const nets: FwNet[] = [];
afterEach(() => {
  for (const n of nets.splice(0)) n.cleanup();
  cleanupAll();
});

function newNet(): FwNet {
  const n = makeFwNet();
  nets.push(n);
  return n;
}

function conf(net: FwNet, c: FwContainer, extra: object = {}): object {
  return {
    cniVersion: "1.0.0",
    name: "fwnet",
    type: "firewall",
    backend: "iptables",
    dataDir: tempDir("tscni-fw-").path,
    prevResult: net.prevResult(c),
    ...extra,
  };
}

/** Both families' filter rules, the built-in chains' policy lines left out. */
function rules(net: FwNet): string[] {
  return [4, 6].flatMap((f) =>
    filterRules(net, f as 4 | 6)
      .filter((l) => !/^:(INPUT|FORWARD|OUTPUT) /.test(l))
      .map((l) => `${f} ${l}`),
  );
}

function withoutComments(lines: string[]): string[] {
  return lines.map((l) => l.replace(/ -m comment --comment "[^"]*"/, ""));
}

test.skipIf(skip)("ADD makes the same chains and rules as upstream's (open policy)", async () => {
  const a = newNet();
  const b = newNet();
  const up = await fw(a, "ADD", conf(a, a.c1), a.c1, { plugin: UPSTREAM });
  expect(up.stderr).toBe("");
  expect(up.code).toBe(0);
  const ours = await fw(b, "ADD", conf(b, b.c1), b.c1);
  expect(ours.code).toBe(0);
  expect(rules(b)).toEqual(rules(a));
  expect(rules(a).length).toBeGreaterThan(8);
  // The same result printed.
  const sandboxless = (j: object) => JSON.parse(JSON.stringify(j).replace(/tscni-fwc-[a-z0-9]+/g, "X"));
  expect(sandboxless(ours.json)).toEqual(sandboxless(up.json));
});

test.skipIf(skip)(
  "same-bridge: the same isolation chains as upstream's (comments: upstream 1.9's)",
  async () => {
    const a = newNet();
    const b = newNet();
    for (const [n, plugin] of [
      [a, UPSTREAM],
      [b, undefined],
    ] as const) {
      for (const [c, id] of [
        [n.c1, "c1"],
        [n.c2, "c2"],
      ] as const) {
        const r = await fw(n, "ADD", conf(n, c, { ingressPolicy: "same-bridge" }), c, { id, plugin });
        expect(r.stderr).toBe("");
        expect(r.code).toBe(0);
      }
    }
    expect(withoutComments(rules(b))).toEqual(withoutComments(rules(a)));
  },
);

test.skipIf(skip)("our DEL removes what upstream's ADD made, upstream's DEL what ours made", async () => {
  const n = newNet();
  n.host.run(["iptables", "-P", "FORWARD", "DROP"]);
  const c = conf(n, n.c1);
  expect((await fw(n, "ADD", c, n.c1, { plugin: UPSTREAM })).code).toBe(0);
  expect(rules(n).some((l) => l.includes("10.79.0.2"))).toBe(true);
  expect((await fw(n, "CHECK", c, n.c1)).code).toBe(0);
  expect((await fw(n, "DEL", c, n.c1)).code).toBe(0);
  expect(rules(n).some((l) => l.includes("10.79.0.2") || l.includes("fd79::2"))).toBe(false);

  expect((await fw(n, "ADD", c, n.c1)).code).toBe(0);
  const chk = await fw(n, "CHECK", c, n.c1, { plugin: UPSTREAM });
  expect(chk.stdout).toBe("");
  expect(chk.code).toBe(0);
  const del = await fw(n, "DEL", c, n.c1, { plugin: UPSTREAM });
  expect(del.code).toBe(0);
  expect(rules(n).some((l) => l.includes("10.79.0.2") || l.includes("fd79::2"))).toBe(false);
  // Both leave the chains and jumps in place.
  expect(rules(n)).toContain('4 -A FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD');
});

test.skipIf(skip)("a container added by each works side by side; each DEL takes only its own", async () => {
  const n = newNet();
  n.host.run(["iptables", "-P", "FORWARD", "DROP"]);
  expect((await fw(n, "ADD", conf(n, n.c1), n.c1, { plugin: UPSTREAM, id: "up" })).code).toBe(0);
  expect((await fw(n, "ADD", conf(n, n.c2), n.c2, { id: "ours" })).code).toBe(0);
  expect((await fw(n, "DEL", conf(n, n.c2), n.c2, { plugin: UPSTREAM, id: "ours" })).code).toBe(0);
  const r = rules(n);
  expect(r.some((l) => l.includes("10.79.1.2"))).toBe(false);
  expect(r).toContain("4 -A CNI-FORWARD -s 10.79.0.2/32 -j ACCEPT");
});
