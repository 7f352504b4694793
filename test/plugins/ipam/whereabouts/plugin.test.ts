/**
 * whereabouts on a real 3-member etcd: ADD/DEL/CHECK with node-affine blocks, 2 nodes × 32 parallel
 * ADDs, idempotence, block hand-back, GC per node, STATUS and member kills. The "nodes" are node names:
 * IPAM touches no kernel state, so every plugin process runs in the etcd netns (see helpers.ts).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { type EtcdCluster, skipUnlessEtcd, startEtcdCluster } from "../../../helpers/etcd.ts";
import { tempDir } from "../../../helpers/netns.ts";
import { dump, ipam, netconf } from "./helpers.ts";

const why = skipUnlessEtcd();
const CLI = join(import.meta.dir, "../../../../src/cli/main.ts");
let c: EtcdCluster;
let seq = 0;

/** A fresh network_name per test: its own pool (prefix) in the shared cluster. */
function pool(over: object = {}) {
  const name = `n${++seq}`;
  return {
    name,
    conf: (node: string) =>
      netconf(c, {
        range: "10.20.0.0/24",
        block_size: 27,
        network_name: name,
        node_name: node,
        gateway: "10.20.0.1",
        ...over,
      }),
  };
}

function keysOf(m: Map<string, string>, name: string, kind: string): string[] {
  return [...m.keys()].filter((k) => k.includes(`/pools/${name}~`) && k.includes(`/${kind}/`));
}

describe.skipIf(!!why)("whereabouts on a 3-member etcd", () => {
  beforeAll(async () => {
    c = await startEtcdCluster({ members: 3 });
  }, 60_000);
  afterAll(async () => {
    await c?.stop();
  });

  test("ADD returns an address of the range with the gateway; the same ADD again returns it again; DEL frees it", async () => {
    const p = pool();
    const conf = p.conf("node-a");
    const a = await ipam(
      c,
      { command: "ADD", containerID: "c1", args: "K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=pod1" },
      conf,
    );
    expect(a.stderr).toBe("");
    expect(a.code).toBe(0);
    expect(a.json.ips).toHaveLength(1);
    expect(a.json.ips[0].address).toMatch(/^10\.20\.0\.\d+\/24$/);
    expect(a.json.ips[0].gateway).toBe("10.20.0.1");
    expect(a.json.ips[0].address).not.toBe("10.20.0.1/24");
    const again = await ipam(c, { command: "ADD", containerID: "c1" }, conf);
    expect(again.json.ips[0].address).toBe(a.json.ips[0].address);

    const kv = await dump(c);
    const ips = keysOf(kv, p.name, "ips");
    expect(ips).toHaveLength(1);
    const rec = JSON.parse(kv.get(ips[0] as string) as string);
    expect(rec).toMatchObject({
      containerID: "c1",
      ifName: "eth0",
      node: "node-a",
      podNamespace: "ns1",
      podName: "pod1",
    });
    expect(`${rec.ip}/24`).toBe(a.json.ips[0].address);
    const blocks = keysOf(kv, p.name, "blocks");
    expect(blocks).toHaveLength(1);
    expect(JSON.parse(kv.get(blocks[0] as string) as string)).toEqual({ node: "node-a" });

    expect((await ipam(c, { command: "CHECK", containerID: "c1" }, conf)).code).toBe(0);
    expect((await ipam(c, { command: "DEL", containerID: "c1" }, conf)).code).toBe(0);
    expect((await ipam(c, { command: "DEL", containerID: "c1" }, conf)).code).toBe(0); // idempotent
    const check = await ipam(c, { command: "CHECK", containerID: "c1" }, conf);
    expect(check.code).toBe(1);
    expect(check.json.code).toBe(3);
    // Empty block handed back: nothing of the pool is left.
    expect([...(await dump(c)).keys()].filter((k) => k.includes(`/pools/${p.name}~`))).toEqual([]);
  }, 60_000);

  test("2 nodes × 32 parallel ADDs: 64 distinct addresses, 0 failures, each in its node's blocks; DEL of all empties the pool", async () => {
    const p = pool({ range: "10.30.0.0/24", block_size: 27, gateway: undefined });
    const jobs = ["node-a", "node-b"].flatMap((node) =>
      Array.from({ length: 32 }, (_, i) => ({ node, id: `${node}-c${i}` })),
    );
    const outs = await Promise.all(
      jobs.map((j) => ipam(c, { command: "ADD", containerID: j.id }, p.conf(j.node))),
    );
    const failures = outs.filter((o) => o.code !== 0);
    expect(failures.map((f) => f.stdout)).toEqual([]);
    const addrs = outs.map((o) => o.json.ips[0].address as string);
    expect(new Set(addrs).size).toBe(64);

    const kv = await dump(c);
    expect(keysOf(kv, p.name, "ips")).toHaveLength(64);
    // Block owners: every block has exactly one owner key, and each address is in a block of its node
    // (a /27 holds 32; .0 and .255 are not allocatable, so a node may borrow at the edges only).
    const owners = new Map<string, string>();
    for (const k of keysOf(kv, p.name, "blocks"))
      owners.set(k.slice(k.lastIndexOf("/") + 1), JSON.parse(kv.get(k) as string).node);
    let inOwnBlock = 0;
    for (const k of keysOf(kv, p.name, "ips")) {
      const rec = JSON.parse(kv.get(k) as string);
      if (owners.get(rec.block) === rec.node) inOwnBlock++;
    }
    expect(inOwnBlock).toBeGreaterThanOrEqual(60);

    const dels = await Promise.all(
      jobs.map((j) => ipam(c, { command: "DEL", containerID: j.id }, p.conf(j.node))),
    );
    expect(dels.filter((d) => d.code !== 0).map((d) => d.stdout)).toEqual([]);
    expect([...(await dump(c)).keys()].filter((k) => k.includes(`/pools/${p.name}~`))).toEqual([]);
  }, 120_000);

  test("a full range fails ADD with a clear error and leaves nothing behind", async () => {
    const p = pool({ range: "10.40.0.0/30", gateway: undefined }); // .1 and .2
    const conf = p.conf("node-a");
    expect((await ipam(c, { command: "ADD", containerID: "f1" }, conf)).code).toBe(0);
    expect((await ipam(c, { command: "ADD", containerID: "f2" }, conf)).code).toBe(0);
    const full = await ipam(c, { command: "ADD", containerID: "f3" }, conf);
    expect(full.code).toBe(1);
    expect(full.json.msg).toMatch(/no free address in range 10\.40\.0\.1-10\.40\.0\.2/);
    expect(keysOf(await dump(c), p.name, "owners")).toHaveLength(2);
  }, 60_000);

  test("exclude and range_start/range_end are honoured; dual stack via ipRanges gives one address each", async () => {
    const p = pool({
      range: "10.50.0.0/29",
      range_start: "10.50.0.2",
      range_end: "10.50.0.5",
      exclude: ["10.50.0.3/32", "10.50.0.4/32"],
      gateway: undefined,
    });
    const conf = p.conf("node-a");
    const got = [];
    for (const id of ["e1", "e2"])
      got.push((await ipam(c, { command: "ADD", containerID: id }, conf)).json.ips[0].address);
    expect(got.sort()).toEqual(["10.50.0.2/29", "10.50.0.5/29"]);
    expect((await ipam(c, { command: "ADD", containerID: "e3" }, conf)).code).toBe(1);

    const d = pool({
      range: undefined,
      gateway: undefined,
      ipRanges: [{ range: "10.60.0.0/24" }, { range: "fd00:60::/64" }],
    });
    const r = await ipam(c, { command: "ADD", containerID: "d1" }, d.conf("node-a"));
    expect(r.code).toBe(0);
    expect(r.json.ips.map((i: { address: string }) => i.address.includes(":"))).toEqual([false, true]);
    expect(r.json.ips[1].address).toMatch(/^fd00:60::[0-9a-f:]+\/64$/);
  }, 60_000);

  test("GC from a node frees its attachments that are not valid, and only its own", async () => {
    const p = pool();
    for (const [id, node] of [
      ["g1", "node-a"],
      ["g2", "node-a"],
      ["g3", "node-b"],
    ] as const) {
      expect((await ipam(c, { command: "ADD", containerID: id }, p.conf(node))).code).toBe(0);
    }
    // g2 was killed without DEL; node-a's runtime lists only g1. node-b's g3 is not node-a's to collect.
    const gcConf = {
      ...p.conf("node-a"),
      "cni.dev/valid-attachments": [{ containerID: "g1", ifname: "eth0" }],
    };
    const gc = await ipam(c, { command: "GC" }, gcConf);
    expect(gc.stdout).toBe("");
    expect(gc.code).toBe(0);
    const owners = keysOf(await dump(c), p.name, "owners").map((k) => k.split("/owners/")[1]);
    expect(owners.sort()).toEqual(["g1/eth0", "g3/eth0"]);
  }, 60_000);

  test("STATUS succeeds with quorum; one member down: ADDs still succeed; two down: STATUS 50, ADD fails naming etcd with nothing left; back up: the same ADDs succeed", async () => {
    const p = pool({ range: "10.70.0.0/24" });
    const conf = p.conf("node-a");
    expect((await ipam(c, { command: "STATUS" }, conf)).code).toBe(0);

    c.members[0]?.kill();
    const outs = await Promise.all(
      Array.from({ length: 8 }, (_, i) => ipam(c, { command: "ADD", containerID: `k${i}` }, conf)),
    );
    expect(outs.filter((o) => o.code !== 0).map((o) => o.stdout)).toEqual([]);
    expect(new Set(outs.map((o) => o.json.ips[0].address)).size).toBe(8);

    c.members[1]?.kill();
    const st = await ipam(c, { command: "STATUS" }, conf);
    expect(st.code).toBe(1);
    expect(st.json.code).toBe(50);
    expect(st.json.msg).toMatch(/etcd has no quorum/);
    const failed = await ipam(c, { command: "ADD", containerID: "q1" }, conf);
    expect(failed.code).toBe(1);
    expect(failed.json.code).toBe(11);
    expect(failed.json.msg).toMatch(/etcd/);

    await Promise.all([c.members[0]?.start(), c.members[1]?.start()]);
    await c.waitHealthy(3);
    const owners = keysOf(await dump(c), p.name, "owners");
    expect(owners.some((k) => k.includes("/owners/q1/"))).toBe(false); // nothing half-made
    expect(owners).toHaveLength(8);
    const ok = await ipam(c, { command: "ADD", containerID: "q1" }, conf);
    expect(ok.code).toBe(0);
    expect((await ipam(c, { command: "STATUS" }, conf)).code).toBe(0);
  }, 120_000);

  test("a member killed during 2 × 16 parallel ADDs: every ADD succeeds, all distinct, one owner per block", async () => {
    const p = pool({ range: "10.90.0.0/24", block_size: 28, gateway: undefined });
    const jobs = ["node-a", "node-b"].flatMap((node) =>
      Array.from({ length: 16 }, (_, i) => ({ node, id: `${node}-m${i}` })),
    );
    const running = Promise.all(
      jobs.map((j) => ipam(c, { command: "ADD", containerID: j.id }, p.conf(j.node))),
    );
    await Bun.sleep(400);
    c.members[0]?.kill(); // the first endpoint every client prefers
    const outs = await running;
    expect(outs.filter((o) => o.code !== 0).map((o) => o.stdout)).toEqual([]);
    expect(new Set(outs.map((o) => o.json.ips[0].address)).size).toBe(32);
    const kv = await dump(c, "/tscni/ipam/", 1);
    expect(keysOf(kv, p.name, "owners")).toHaveLength(32);
    expect(keysOf(kv, p.name, "ips")).toHaveLength(32);
    for (const k of keysOf(kv, p.name, "ips")) {
      const rec = JSON.parse(kv.get(k) as string);
      expect(kv.has(`/tscni/ipam/pools/${p.name}~10.90.0.0_24/blocks/${rec.block}`)).toBe(true);
    }
    await c.members[0]?.start();
    await c.waitHealthy(3);
  }, 120_000);

  test("tscni ipam shows blocks per node with used/free counts and the owner of an address", async () => {
    const p = pool({ range: "10.80.0.0/26", block_size: 28, gateway: undefined });
    const got: Record<string, string> = {};
    for (const [id, node] of [
      ["v1", "node-a"],
      ["v2", "node-a"],
      ["v3", "node-b"],
    ] as const) {
      const r = await ipam(
        c,
        { command: "ADD", containerID: id, args: `K8S_POD_NAMESPACE=default;K8S_POD_NAME=${id}` },
        p.conf(node),
      );
      got[id] = String(r.json.ips[0].address).split("/")[0] as string;
    }
    const dir = tempDir("tscni-ipam-view-");
    const file = join(dir.path, "net.conflist");
    const conf = p.conf("node-a") as { ipam: object };
    writeFileSync(
      file,
      JSON.stringify({ cniVersion: "1.1.0", name: "wnet", plugins: [{ type: "macvlan", ipam: conf.ipam }] }),
    );
    const v = await c.runBun(CLI, ["ipam", file, "--json"]);
    expect(v.stderr).toBe("");
    const [view] = JSON.parse(v.stdout);
    expect(view.used).toBe(3);
    expect(view.orphans).toBe(0);
    expect(
      view.blocks
        .map((b: { node: string; used: number; free: number }) => [b.node, b.used, b.used + b.free])
        .sort(),
    ).toEqual([
      ["node-a", 2, expect.any(Number)],
      ["node-b", 1, expect.any(Number)],
    ]);
    const text = await c.runBun(CLI, ["ipam", file]);
    expect(text.stdout).toMatch(/BLOCK\s+NODE\s+USED\s+FREE/);
    expect(text.stdout).toMatch(/node-b\s+1\s+\d+/);
    const owner = await c.runBun(CLI, ["ipam", file, "--ip", got.v3 as string]);
    expect(owner.stdout.trim()).toBe(`${got.v3}: node node-b container v3 ifname eth0 pod default/v3`);
    expect((await c.runBun(CLI, ["ipam", file, "--ip", "10.80.0.62"])).stdout.trim()).toBe(
      "10.80.0.62: free",
    );
  }, 60_000);

  test("config errors are code 7 and name the key", async () => {
    const bad = await ipam(c, { command: "ADD" }, netconf(c, { range: "10.0.0.0/33" }));
    expect(bad.json.code).toBe(7);
    expect(bad.json.msg).toMatch(/invalid range/);
    const noEtcd = await ipam(
      c,
      { command: "ADD" },
      { cniVersion: "1.0.0", name: "x", ipam: { type: "whereabouts", range: "10.0.0.0/24" } },
    );
    expect(noEtcd.json.code).toBe(7);
    expect(noEtcd.json.msg).toMatch(/etcd_host/);
    const k8s = await ipam(
      c,
      { command: "ADD" },
      netconf(c, { range: "10.0.0.0/24", datastore: "kubernetes" }),
    );
    expect(k8s.json.msg).toMatch(/datastore "kubernetes" is not supported/);
  }, 60_000);
});
