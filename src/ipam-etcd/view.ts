/**
 * The cluster IPAM as an operator sees it (`tscni ipam`): per pool, the blocks with their node and
 * used/free counts, and the owner of an address.
 */
import { EtcdClient } from "../etcd/client.ts";
import { addrHex, formatAddr, hexAddr, parseAddr } from "../ipam-common/ipmath.ts";
import type { WhereaboutsConf } from "./config.ts";
import { Pool, type Reservation } from "./pool.ts";

export interface BlockView {
  block: string;
  node: string;
  used: number;
  free: number;
}

export interface PoolView {
  pool: string;
  range: string;
  blockPrefix: number;
  blocks: BlockView[];
  used: number;
  /** Allocatable addresses outside every claimed block. */
  unclaimed: number;
  /** Reservations outside a claimed block (borrowed before a hand-back): should stay 0. */
  orphans: number;
}

function allocatableIn(pool: Pool, first: bigint, size: bigint): number {
  const fam = pool.range.subnet.ip.family;
  let n = 0;
  for (let v = first; v < first + size; v++) if (pool.allocatable({ family: fam, value: v })) n++;
  return n;
}

function poolsOf(conf: WhereaboutsConf): Pool[] {
  const client = new EtcdClient(conf.etcd);
  return conf.ranges.map((r) => new Pool(client, conf.prefix, r));
}

export async function ipamView(conf: WhereaboutsConf): Promise<PoolView[]> {
  const out: PoolView[] = [];
  for (const pool of poolsOf(conf)) {
    const { blocks, ips } = await pool.snapshot();
    const fam = pool.range.subnet.ip.family;
    const usedBy = new Map<string, number>();
    for (const r of ips) usedBy.set(r.block, (usedBy.get(r.block) ?? 0) + 1);
    const rows: BlockView[] = [];
    let claimedCapacity = 0;
    for (const [hex, node] of [...blocks.entries()].sort()) {
      const first = hexAddr(hex, fam);
      const cap = allocatableIn(pool, first.value, pool.blockSize);
      claimedCapacity += cap;
      const used = usedBy.get(hex) ?? 0;
      rows.push({ block: `${formatAddr(first)}/${pool.range.blockPrefix}`, node, used, free: cap - used });
    }
    const total = Number(pool.range.end.value - pool.range.start.value + 1n);
    const excluded = total - allocatableIn(pool, pool.range.start.value, BigInt(total));
    out.push({
      pool: pool.range.id,
      range: `${formatAddr(pool.range.start)}-${formatAddr(pool.range.end)}`,
      blockPrefix: pool.range.blockPrefix,
      blocks: rows,
      used: ips.length,
      unclaimed: total - excluded - claimedCapacity,
      orphans: ips.filter((r) => !blocks.has(r.block)).length,
    });
  }
  return out;
}

/** The reservation holding `ip`, in whichever pool contains it. */
export async function ipamOwner(conf: WhereaboutsConf, ip: string): Promise<Reservation | undefined> {
  const a = parseAddr(ip.trim());
  if (!a) return undefined;
  for (const pool of poolsOf(conf)) {
    if (a.family !== pool.range.subnet.ip.family) continue;
    const [kv] = (await pool.client.range(pool.ipKey(a))).kvs;
    if (kv) return JSON.parse(kv.value) as Reservation;
  }
  return undefined;
}

export { addrHex };
