/**
 * Interleaved ADDs and DELs of two nodes on 8-address blocks (churn-driver.ts, in-process allocators so
 * the calls overlap densely): claims, hand-backs and freed addresses race. At quiescence every claimed
 * block holds an address (an ADD that claimed a block allocates in it, not in an address freed meanwhile
 * elsewhere) and addresses are distinct; releasing everything leaves no claim, address or owner key.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { type EtcdCluster, skipUnlessEtcd, startEtcdCluster } from "../../../helpers/etcd.ts";

const why = skipUnlessEtcd();
const DRIVER = join(import.meta.dir, "churn-driver.ts");
let c: EtcdCluster;

describe.skipIf(!!why)("whereabouts pool under churn", () => {
  beforeAll(async () => {
    c = await startEtcdCluster({ members: 3 });
  }, 60_000);
  afterAll(async () => {
    await c?.stop();
  });

  test("2 nodes × 12 workers of ADD/DEL: no empty claimed block, no duplicate; all released leaves the pool empty", async () => {
    const r = await c.runBun(DRIVER, [c.endpoints.join(","), "churn", "40"], { timeoutMs: 100_000 });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s.adds + s.dels).toBe(2 * 12 * 40);
    expect(s.reservations).toBe(s.held);
    expect(s.distinct).toBe(s.held);
    expect(s.emptyClaimed).toEqual([]);
    expect(s.claimed).toBeGreaterThan(1);
    expect({ blocks: s.afterBlocks, ips: s.afterIps, owners: s.afterOwners }).toEqual({
      blocks: 0,
      ips: 0,
      owners: 0,
    });
  }, 120_000);
});
