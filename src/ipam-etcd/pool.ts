/**
 * The cluster-wide pool on etcd, in node-affine blocks. Key layout under <prefix>/pools/<pool id>/:
 *
 *   blocks/<first address, hex>     {"node":"n1"}  the block's owner (created once, by txn)
 *   affinity/<node>/<block, hex>    ""             the same claim indexed by node (read on every ADD)
 *   ips/<address, hex>              {ip, containerID, ifName, node, podNamespace, podName, block}
 *   owners/<containerID>/<ifName>   {ip, node}     the attachment's address (DEL, CHECK, GC)
 *
 * Hex keys are fixed width, so a block's addresses are one key range [ips/<first>, ips/<last+1>).
 *
 * ADD: one read txn (this node's affinity keys, the attachment's owner key and, for a pool of at most
 * 4096 addresses, every used address key), a read of the used keys of this node's blocks for a larger
 * pool, then one write txn:
 *     if  create_revision(ips/<a>) == 0  and  create_revision(owners/<c>/<i>) == 0
 *     and mod_revision(affinity/<node>/<b>) == <the revision read>
 *     then put ips/<a>, put owners/<c>/<i>
 * A conflict (another ADD took <a>, the block was handed back or re-claimed) re-reads and retries: an
 * address has one key, created once, so it never has two owners whatever the interleaving. When the
 * node's blocks are full it reads all claims and claims a free block (txn: create_revision(blocks/<b>)
 * == 0, putting blocks/<b> and affinity/<node>/<b> together) and allocates in that block, guarded by
 * the claim txn's revision (so a claimed block is never left empty by its claimer); when no block is
 * free it borrows an address from another node's block (the same write txn, guarded by blocks/<b>'s
 * revision).
 * DEL: delete the two keys (txn on the owner key's revision, reading the block's claim), then hand the
 * block back if it is empty (txn: mod_revision(blocks/<b>) == the claim read and no key in the block's
 * ips range → delete the claim and its affinity key). An ADD that read the claim before the hand-back
 * fails its revision compare, so no address is ever written into a block that is free.
 */
import { type EtcdClient, EtcdError, type KeyValue, prefixEnd, type TxnOp } from "../etcd/client.ts";
import {
  type Addr,
  addrHex,
  familyBits,
  formatAddr,
  hexAddr,
  type Subnet,
  subnetContains,
} from "../ipam-common/ipmath.ts";
import { CniError, ErrCode } from "../spec/errors.ts";
import type { PoolRange } from "./config.ts";

export interface Attachment {
  containerID: string;
  ifName: string;
  node: string;
  podNamespace: string;
  podName: string;
}

export interface Reservation extends Attachment {
  ip: string;
  block: string;
}

export interface OwnerRecord {
  ip: string;
  node: string;
}

const MAX_ATTEMPTS = 200;
/** Pools up to this many addresses read every used key with the block claims. */
const SMALL_POOL = 4096n;

export function poolPrefix(prefix: string, r: PoolRange): string {
  return `${prefix}/pools/${r.id}/`;
}

export function claimValue(node: string): string {
  return JSON.stringify({ node });
}

/** Turns a failure to reach etcd into the CNI error a runtime can act on (11: try again later). */
export function etcdError(err: unknown, doing: string): CniError {
  if (err instanceof CniError) return err;
  if (err instanceof EtcdError) {
    return new CniError(
      err.unavailable ? ErrCode.TryAgainLater : ErrCode.Internal,
      `whereabouts: ${doing}: etcd: ${err.message}`,
    );
  }
  return CniError.from(err, `whereabouts: ${doing}`);
}

function hash32(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 16777619);
  }
  return h >>> 0;
}

export class Pool {
  readonly base: string;
  readonly blockSize: bigint;

  constructor(
    readonly client: EtcdClient,
    prefix: string,
    readonly range: PoolRange,
  ) {
    this.base = poolPrefix(prefix, range);
    this.blockSize = 1n << BigInt(familyBits(range.subnet.ip.family) - range.blockPrefix);
  }

  private get family(): 4 | 6 {
    return this.range.subnet.ip.family;
  }

  blockKey(first: Addr): string {
    return `${this.base}blocks/${addrHex(first)}`;
  }

  affinityPrefix(node: string): string {
    return `${this.base}affinity/${node}/`;
  }

  affinityKey(node: string, first: Addr): string {
    return `${this.affinityPrefix(node)}${addrHex(first)}`;
  }

  ipKey(a: Addr): string {
    return `${this.base}ips/${addrHex(a)}`;
  }

  ownerKey(containerID: string, ifName: string): string {
    return `${this.base}owners/${containerID}/${ifName}`;
  }

  /** The blocks that hold at least one allocatable address, as first addresses. */
  blockCount(): number {
    const { start, end } = this.range;
    const s = this.range.subnet.ip.value;
    const firstIdx = (start.value - s) / this.blockSize;
    const lastIdx = (end.value - s) / this.blockSize;
    return Number(lastIdx - firstIdx + 1n);
  }

  blockAt(i: number): Addr {
    const s = this.range.subnet.ip.value;
    const firstIdx = (this.range.start.value - s) / this.blockSize;
    return { family: this.family, value: s + (firstIdx + BigInt(i)) * this.blockSize };
  }

  blockOf(a: Addr): Addr {
    const s = this.range.subnet.ip.value;
    return { family: this.family, value: s + ((a.value - s) / this.blockSize) * this.blockSize };
  }

  blockSubnet(first: Addr): Subnet {
    return { ip: first, prefix: this.range.blockPrefix };
  }

  /** Whether `a` may be handed out: in [start, end], not the gateway, not excluded. */
  allocatable(a: Addr): boolean {
    const r = this.range;
    if (a.value < r.start.value || a.value > r.end.value) return false;
    if (r.gateway && r.gateway.value === a.value) return false;
    return !r.exclude.some((x) => subnetContains(x, a));
  }

  /**
   * Up to `limit` addresses of the block that may be handed out and are not in `used` (hex keys), in
   * address order: a large IPv6 block is never walked whole.
   */
  freeIn(first: Addr, used: Set<string>, limit = 64): Addr[] {
    const out: Addr[] = [];
    const end = first.value + this.blockSize;
    for (let v = first.value; v < end && out.length < limit; v++) {
      const a = { family: this.family, value: v };
      if (v > this.range.end.value) break;
      if (this.allocatable(a) && !used.has(addrHex(a))) out.push(a);
    }
    return out;
  }

  blockIpsRange(first: Addr): { key: string; rangeEnd: string } {
    return {
      key: this.ipKey(first),
      rangeEnd: this.ipKey({ family: this.family, value: first.value + this.blockSize }),
    };
  }

  /** Used addresses (hex) by block (hex), from a listing of ips keys. */
  private groupByBlock(kvs: KeyValue[]): Map<string, Set<string>> {
    const out = new Map<string, Set<string>>();
    const p = `${this.base}ips/`.length;
    for (const kv of kvs) {
      const hex = kv.key.slice(p);
      const b = addrHex(this.blockOf(hexAddr(hex, this.family)));
      const set = out.get(b) ?? new Set<string>();
      set.add(hex);
      out.set(b, set);
    }
    return out;
  }

  private async usedIn(blocks: Addr[], serializable = false): Promise<Map<string, Set<string>>> {
    const out = new Map<string, Set<string>>();
    if (blocks.length === 0) return out;
    const t = await this.client.txn({
      success: blocks.map((b) => ({ range: { ...this.blockIpsRange(b), keysOnly: true, serializable } })),
    });
    blocks.forEach((b, i) => {
      const r = t.responses[i];
      const used = new Set<string>();
      if (r?.kind === "range")
        for (const kv of r.range.kvs) used.add(kv.key.slice(`${this.base}ips/`.length));
      out.set(addrHex(b), used);
    });
    return out;
  }

  /** The attachment's address, allocating one when it has none (idempotent for a repeated ADD). */
  async allocate(att: Attachment): Promise<Addr> {
    const ownerKey = this.ownerKey(att.containerID, att.ifName);
    const affinity = this.affinityPrefix(att.node);
    const pick = hash32(`${att.containerID}/${att.ifName}`);
    // A small pool's used addresses come with the first read (one round trip less per ADD).
    const small = this.range.end.value - this.range.start.value < SMALL_POOL;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      // The first read is served by the member alone (no quorum round: ~3 ms less per ADD). A stale
      // view is safe, the write txn compares every revision it relied on; retries read linearizably.
      const serializable = attempt === 0;
      const reads: TxnOp[] = [
        { range: { key: affinity, prefix: true, serializable } },
        { range: { key: ownerKey, serializable } },
      ];
      if (small)
        reads.push({ range: { key: `${this.base}ips/`, prefix: true, keysOnly: true, serializable } });
      const read = await this.client.txn({ success: reads });
      const [mineR, ownerR, ipsR] = read.responses;
      const owner = ownerR?.kind === "range" ? ownerR.range.kvs[0] : undefined;
      if (owner) return hexAddr((JSON.parse(owner.value) as OwnerRecord).ip, this.family);
      // This node's blocks, each with the revision its claim must still have when the address is written.
      const mine = new Map<string, KeyValue>();
      for (const kv of mineR?.kind === "range" ? mineR.range.kvs : [])
        mine.set(kv.key.slice(affinity.length), kv);
      const blocks = [...mine.keys()].map((hex) => hexAddr(hex, this.family));
      const used =
        ipsR?.kind === "range" ? this.groupByBlock(ipsR.range.kvs) : await this.usedIn(blocks, serializable);
      let target: { block: Addr; addr: Addr; guard: string; rev: number } | undefined;
      for (const blk of blocks) {
        const free = this.freeIn(blk, used.get(addrHex(blk)) ?? new Set());
        const kv = mine.get(addrHex(blk));
        if (free.length > 0 && kv) {
          target = { block: blk, addr: free[pick % free.length] as Addr, guard: kv.key, rev: kv.modRevision };
          break;
        }
      }
      if (!target) {
        // Rare path: the node's blocks are full. Claim a free block, else borrow from another node.
        const claims = await this.claims();
        // A claim of ours newer than the first read (a parallel ADD on this node claimed it): re-read.
        if ([...claims.entries()].some(([hex, kv]) => kv.value === claimValue(att.node) && !mine.has(hex)))
          continue;
        const claim = await this.claimBlock(claims, att.node);
        if (claim === "lost") continue;
        if (claim !== "none") {
          // Allocate in the block just claimed, guarded by the claim's own revision: re-reading could
          // take an address freed meanwhile in an older block and leave this one claimed and empty.
          const free = this.freeIn(claim.block, new Set());
          target = { ...claim, addr: free[pick % free.length] as Addr };
        } else {
          const b = await this.borrow(claims, pick);
          const kv = b && claims.get(addrHex(b.block));
          if (!b || !kv) {
            throw new CniError(
              ErrCode.Internal,
              `whereabouts: no free address in range ${formatAddr(this.range.start)}-${formatAddr(this.range.end)}`,
            );
          }
          target = { ...b, guard: kv.key, rev: kv.modRevision };
        }
      }
      const rec: Reservation = { ...att, ip: formatAddr(target.addr), block: addrHex(target.block) };
      const w = await this.client.txn({
        compare: [
          { key: this.ipKey(target.addr), target: "CREATE", result: "EQUAL", operand: 0 },
          { key: ownerKey, target: "CREATE", result: "EQUAL", operand: 0 },
          { key: target.guard, target: "MOD", result: "EQUAL", operand: target.rev },
        ],
        success: [
          { put: { key: this.ipKey(target.addr), value: JSON.stringify(rec) } },
          { put: { key: ownerKey, value: JSON.stringify({ ip: addrHex(target.addr), node: att.node }) } },
        ],
      });
      if (w.succeeded) return target.addr;
      await Bun.sleep(Math.random() * Math.min(20, 1 + attempt));
    }
    throw new CniError(
      ErrCode.TryAgainLater,
      `whereabouts: gave up after ${MAX_ATTEMPTS} conflicting attempts`,
    );
  }

  /** Every block claim of the pool: first address (hex) → kv. */
  async claims(): Promise<Map<string, KeyValue>> {
    const p = `${this.base}blocks/`;
    const r = await this.client.range(p, { prefix: true });
    return new Map(r.kvs.map((kv) => [kv.key.slice(p.length), kv]));
  }

  /**
   * Claims a free block for `node`: the block with its affinity key and that key's revision, "lost"
   * when another node's claim won the race (re-read), or "none" when no block is left.
   */
  private async claimBlock(
    claims: Map<string, KeyValue>,
    node: string,
  ): Promise<{ block: Addr; guard: string; rev: number } | "lost" | "none"> {
    const n = this.blockCount();
    const start = hash32(node) % Math.min(n, 65536);
    for (let i = 0; i < n; i++) {
      const b = this.blockAt((start + i) % n);
      if (claims.has(addrHex(b))) continue;
      if (this.freeIn(b, new Set(), 1).length === 0) continue;
      const t = await this.client.txn({
        compare: [{ key: this.blockKey(b), target: "CREATE", result: "EQUAL", operand: 0 }],
        success: [
          { put: { key: this.blockKey(b), value: claimValue(node) } },
          { put: { key: this.affinityKey(node, b), value: "" } },
        ],
      });
      // The puts of a txn share its revision: the affinity key's mod revision is the txn's.
      return t.succeeded ? { block: b, guard: this.affinityKey(node, b), rev: t.revision } : "lost";
    }
    return "none";
  }

  /** Every block is claimed and this node's are full: an address from another node's block. */
  private async borrow(
    claims: Map<string, KeyValue>,
    pick: number,
  ): Promise<{ block: Addr; addr: Addr } | undefined> {
    const blocks = [...claims.keys()].map((hex) => hexAddr(hex, this.family));
    const used = await this.usedIn(blocks);
    const n = blocks.length;
    for (let i = 0; i < n; i++) {
      const b = blocks[(pick + i) % n] as Addr;
      const free = this.freeIn(b, used.get(addrHex(b)) ?? new Set());
      if (free.length > 0) return { block: b, addr: free[pick % free.length] as Addr };
    }
    return undefined;
  }

  /** Releases the attachment's address; nothing recorded is success. Hands back the block if empty. */
  async release(containerID: string, ifName: string): Promise<string | undefined> {
    const ownerKey = this.ownerKey(containerID, ifName);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const [owner] = (await this.client.range(ownerKey)).kvs;
      if (!owner) return undefined;
      const a = hexAddr((JSON.parse(owner.value) as OwnerRecord).ip, this.family);
      const block = this.blockOf(a);
      // The address key was created in the owner key's txn: same create revision, else it is not ours.
      const t = await this.client.txn({
        compare: [
          { key: ownerKey, target: "MOD", result: "EQUAL", operand: owner.modRevision },
          { key: this.ipKey(a), target: "CREATE", result: "EQUAL", operand: owner.createRevision },
        ],
        success: [
          { delete: { key: ownerKey } },
          { delete: { key: this.ipKey(a) } },
          { range: { key: this.blockKey(block) } },
        ],
        failure: [{ range: { key: ownerKey } }],
      });
      if (t.succeeded) {
        const claim = t.responses[2]?.kind === "range" ? t.responses[2].range.kvs[0] : undefined;
        if (claim) await this.handBack(block, claim);
        return formatAddr(a);
      }
      const now = t.responses[0]?.kind === "range" ? t.responses[0].range.kvs[0] : undefined;
      if (now && now.modRevision === owner.modRevision) {
        // The owner record points at an address someone else holds: drop the record alone.
        await this.client.txn({
          compare: [{ key: ownerKey, target: "MOD", result: "EQUAL", operand: owner.modRevision }],
          success: [{ delete: { key: ownerKey } }],
        });
        return undefined;
      }
    }
    throw new CniError(
      ErrCode.TryAgainLater,
      `whereabouts: releasing ${containerID}/${ifName}: too many conflicts`,
    );
  }

  /**
   * Deletes `node`'s claim on the block when no address is left in it (one txn). Whoever frees a
   * block's last address hands it back, also when it was a borrowed address in another node's block.
   */
  async handBack(block: Addr, claim: KeyValue): Promise<boolean> {
    const r = this.blockIpsRange(block);
    const node = (JSON.parse(claim.value) as { node: string }).node;
    // The claim as read, by revision: a block handed back and claimed again since is left alone.
    const t = await this.client.txn({
      compare: [
        { key: this.blockKey(block), target: "MOD", result: "EQUAL", operand: claim.modRevision },
        { key: r.key, rangeEnd: r.rangeEnd, target: "CREATE", result: "EQUAL", operand: 0 },
      ],
      success: [
        { delete: { key: this.blockKey(block) } },
        { delete: { key: this.affinityKey(node, block) } },
      ],
    });
    return t.succeeded;
  }

  async owner(containerID: string, ifName: string): Promise<Reservation | undefined> {
    const [owner] = (await this.client.range(this.ownerKey(containerID, ifName))).kvs;
    if (!owner) return undefined;
    const rec = JSON.parse(owner.value) as OwnerRecord;
    const [ip] = (await this.client.range(this.ipKey(hexAddr(rec.ip, this.family)))).kvs;
    return ip ? (JSON.parse(ip.value) as Reservation) : undefined;
  }

  /** Every owner record: attachment key "cid/ifname" → record. */
  async owners(): Promise<Map<string, OwnerRecord>> {
    const p = `${this.base}owners/`;
    const r = await this.client.range(p, { prefix: true });
    return new Map(r.kvs.map((kv) => [kv.key.slice(p.length), JSON.parse(kv.value) as OwnerRecord]));
  }

  /** The whole pool in one read: block claims and reservations. */
  async snapshot(): Promise<{ blocks: Map<string, string>; ips: Reservation[] }> {
    const t = await this.client.txn({
      success: [
        { range: { key: `${this.base}blocks/`, prefix: true } },
        { range: { key: `${this.base}ips/`, rangeEnd: prefixEnd(`${this.base}ips/`) } },
      ],
    });
    const [b, i] = t.responses;
    const blocks = new Map<string, string>();
    if (b?.kind === "range") {
      for (const kv of b.range.kvs)
        blocks.set(
          kv.key.slice(`${this.base}blocks/`.length),
          (JSON.parse(kv.value) as { node: string }).node,
        );
    }
    const ips = i?.kind === "range" ? i.range.kvs.map((kv) => JSON.parse(kv.value) as Reservation) : [];
    return { blocks, ips };
  }
}
