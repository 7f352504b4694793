/** EtcdClient against a real 3-member etcd 3.4 (test/helpers/etcd.ts): KV, txn compare, lease, failover, auth. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { prefixEnd } from "../../src/etcd/client.ts";
import { type EtcdCluster, skipUnlessEtcd, startEtcdCluster } from "../helpers/etcd.ts";

const DRIVER = join(import.meta.dir, "driver.ts");
const why = skipUnlessEtcd();
let c: EtcdCluster;

// biome-ignore lint/suspicious/noExplicitAny: the driver's JSON
async function drive(options: object, calls: unknown[][]): Promise<any[]> {
  const r = await c.runBun(DRIVER, [], { stdin: JSON.stringify({ options, calls }), timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`driver failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout);
}

test("prefixEnd is the key after every key with the prefix", () => {
  expect(prefixEnd("/a/")).toBe("/a0");
  expect(prefixEnd("a")).toBe("b");
});

describe.skipIf(!!why)("etcd client on a 3-member cluster", () => {
  beforeAll(async () => {
    c = await startEtcdCluster({ members: 3 });
  }, 60_000);
  afterAll(async () => {
    await c?.stop();
  });

  test("put, range (key, prefix, count), delete", async () => {
    const o = { endpoints: c.endpoints };
    const r = await drive(o, [
      ["put", "/t/a", "1"],
      ["put", "/t/b", "héllo"],
      ["put", "/u/c", "3"],
      ["range", "/t/a"],
      ["range", "/t/", { prefix: true }],
      ["range", "/t/", { prefix: true, countOnly: true }],
      ["deleteRange", "/t/", { prefix: true }],
      ["range", "/t/", { prefix: true }],
    ]);
    expect(r[0].ok.revision).toBeGreaterThan(1);
    expect(r[3].ok.kvs.map((kv: { value: string }) => kv.value)).toEqual(["1"]);
    expect(r[4].ok.kvs.map((kv: { key: string; value: string }) => [kv.key, kv.value])).toEqual([
      ["/t/a", "1"],
      ["/t/b", "héllo"],
    ]);
    expect(r[5].ok.count).toBe(2);
    expect(r[6].ok.deleted).toBe(2);
    expect(r[7].ok.kvs).toEqual([]);
  }, 60_000);

  test("txn: create-if-absent wins once; compare on mod revision; range compare over an empty range", async () => {
    const o = { endpoints: c.endpoints };
    const create = {
      compare: [{ key: "/x/k", target: "CREATE", result: "EQUAL", operand: 0 }],
      success: [{ put: { key: "/x/k", value: "first" } }],
      failure: [{ range: { key: "/x/k" } }],
    };
    const r = await drive(o, [
      ["txn", create],
      ["txn", { ...create, success: [{ put: { key: "/x/k", value: "second" } }] }],
      ["range", "/x/k"],
      ["txn", { compare: [{ key: "/y/", prefix: true, target: "CREATE", result: "EQUAL", operand: 0 }] }],
      ["txn", { compare: [{ key: "/x/", prefix: true, target: "CREATE", result: "EQUAL", operand: 0 }] }],
    ]);
    expect(r[0].ok.succeeded).toBe(true);
    expect(r[1].ok.succeeded).toBe(false);
    expect(r[1].ok.responses[0].range.kvs[0].value).toBe("first");
    const kv = r[2].ok.kvs[0];
    expect(kv.value).toBe("first");
    expect(r[3].ok.succeeded).toBe(true); // nothing under /y/
    expect(r[4].ok.succeeded).toBe(false); // /x/k exists
    const stale = await drive(o, [
      [
        "txn",
        {
          compare: [{ key: "/x/k", target: "MOD", result: "EQUAL", operand: kv.modRevision }],
          success: [{ put: { key: "/x/k", value: "cas1" } }],
        },
      ],
      [
        "txn",
        {
          compare: [{ key: "/x/k", target: "MOD", result: "EQUAL", operand: kv.modRevision }],
          success: [{ put: { key: "/x/k", value: "cas2" } }],
        },
      ],
      ["range", "/x/k"],
    ]);
    expect(stale.map((s) => s.ok.succeeded).slice(0, 2)).toEqual([true, false]);
    expect(stale[2].ok.kvs[0].value).toBe("cas1");
  }, 60_000);

  test("lease: a key put with a lease disappears on revoke", async () => {
    const o = { endpoints: c.endpoints };
    const [g] = await drive(o, [["leaseGrant", 30]]);
    expect(g.ok.id).toMatch(/^[1-9][0-9]*$/);
    const r = await drive(o, [
      ["put", "/l/k", "v", { lease: g.ok.id }],
      ["range", "/l/k"],
      ["leaseRevoke", g.ok.id],
      ["range", "/l/k"],
    ]);
    expect(r[1].ok.kvs[0].lease).toBe(g.ok.id);
    expect(r[3].ok.kvs).toEqual([]);
  }, 60_000);

  test("fails over past a dead endpoint; with no endpoint up the error says etcd unavailable", async () => {
    const dead = "http://127.0.0.1:1"; // nothing listens
    const r = await drive({ endpoints: [dead, ...c.endpoints] }, [
      ["put", "/f/k", "v"],
      ["range", "/f/k"],
    ]);
    expect(r[1].ok.kvs[0].value).toBe("v");
    const [e] = await drive({ endpoints: [dead, "127.0.0.1:2"], timeoutMs: 500 }, [["range", "/f/k"]]);
    expect(e.unavailable).toBe(true);
    expect(e.error).toMatch(/etcd unavailable/);
    expect(e.error).toContain("127.0.0.1:2");
  }, 60_000);

  test("quorum: with 2 of 3 members killed a linearizable read fails as unavailable; restarted, it works", async () => {
    const o = { endpoints: c.endpoints, timeoutMs: 1500 };
    c.members[1]?.kill();
    expect((await drive(o, [["checkQuorum"]]))[0].ok).toBeNull(); // 2 of 3: quorum holds
    c.members[2]?.kill();
    const [e] = await drive(o, [["checkQuorum"]]);
    expect(e.unavailable).toBe(true);
    await Promise.all([c.members[1]?.start(), c.members[2]?.start()]);
    await c.waitHealthy(3);
    expect((await drive(o, [["checkQuorum"]]))[0].ok).toBeNull();
  }, 90_000);

  test("user/password: authenticates and sends the token; a wrong password is refused", async () => {
    const o = { endpoints: c.endpoints };
    const setup = await drive(o, [
      ["call", "/v3/auth/role/add", { name: "root" }],
      ["call", "/v3/auth/user/add", { name: "root", password: "rootpw" }],
      ["call", "/v3/auth/user/grant", { user: "root", role: "root" }],
      ["call", "/v3/auth/enable", {}],
    ]);
    for (const s of setup) expect(s.error).toBeUndefined();
    try {
      const noAuth = await drive(o, [["range", "/a/k"]]);
      expect(noAuth[0].error).toMatch(/user name is empty|permission denied|token/i);
      const ok = await drive({ ...o, username: "root", password: "rootpw" }, [
        ["put", "/a/k", "v"],
        ["range", "/a/k"],
      ]);
      expect(ok[1].ok.kvs[0].value).toBe("v");
      const bad = await drive({ ...o, username: "root", password: "nope" }, [["range", "/a/k"]]);
      expect(bad[0].error).toMatch(/authentication failed/);
    } finally {
      await drive({ ...o, username: "root", password: "rootpw" }, [["call", "/v3/auth/disable", {}]]);
    }
  }, 60_000);
});
