/**
 * Runs inside the etcd netns (test "churn"): two nodes' allocators in one process, many concurrent
 * ADDs and DELs on small blocks, so claims, hand-backs and freed addresses interleave. argv: endpoints,
 * network name, ops per worker. Prints JSON: the used/claimed state at quiescence and after releasing all.
 */
import { EtcdClient } from "../../../../src/etcd/client.ts";
import { loadWhereaboutsConf, type PoolRange } from "../../../../src/ipam-etcd/config.ts";
import { Pool } from "../../../../src/ipam-etcd/pool.ts";

const [endpoints, network, opsArg] = process.argv.slice(2) as [string, string, string];
const OPS = Number(opsArg);
const WORKERS = 12;
const IDS = 24;

function pool(node: string): Pool {
  const conf = loadWhereaboutsConf(
    new TextEncoder().encode(
      JSON.stringify({
        cniVersion: "1.0.0",
        name: network,
        type: "macvlan",
        ipam: {
          type: "whereabouts",
          range: "10.77.0.0/24",
          block_size: 29,
          node_name: node,
          etcd_host: endpoints,
        },
      }),
    ),
    "",
  );
  return new Pool(
    new EtcdClient({ endpoints: endpoints.split(",") }),
    conf.prefix,
    conf.ranges[0] as PoolRange,
  );
}

const nodes = ["node-a", "node-b"].map((node) => ({ node, pool: pool(node) }));
// A seeded generator: a failing run can be replayed.
let seed = 12345;
const rand = (n: number) => {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return seed % n;
};
const held = new Set<string>();
let adds = 0;
let dels = 0;

await Promise.all(
  nodes.flatMap(({ node, pool: p }) =>
    Array.from({ length: WORKERS }, async (_, w) => {
      for (let i = 0; i < OPS; i++) {
        // Each worker owns its ids: no two concurrent calls for one attachment.
        const id = `${node}-w${w}-c${rand(IDS / WORKERS + 1)}`;
        if (held.has(id)) {
          await p.release(id, "eth0");
          held.delete(id);
          dels++;
        } else {
          await p.allocate({ containerID: id, ifName: "eth0", node, podNamespace: "", podName: "" });
          held.add(id);
          adds++;
        }
      }
    }),
  ),
);

const p0 = nodes[0]?.pool as Pool;
const { blocks, ips } = await p0.snapshot();
const used = new Map<string, number>();
for (const r of ips) used.set(r.block, (used.get(r.block) ?? 0) + 1);
const emptyClaimed = [...blocks.keys()].filter((b) => !used.has(b));
const distinct = new Set(ips.map((r) => r.ip)).size;
for (const id of held) {
  const node = nodes.find((n) => id.startsWith(n.node));
  await node?.pool.release(id, "eth0");
}
const after = await p0.snapshot();
const owners = await p0.owners();
console.log(
  JSON.stringify({
    adds,
    dels,
    held: held.size,
    reservations: ips.length,
    distinct,
    claimed: blocks.size,
    emptyClaimed,
    afterBlocks: after.blocks.size,
    afterIps: after.ips.length,
    afterOwners: owners.size,
  }),
);
