/**
 * The cluster-wide pool on etcd, in node-affine blocks. Key layout under <prefix>/pools/<pool id>/:
 *
 *   blocks/<first address, hex>   {"node":"n1"}   the node that owns the block (created once by txn)
 *   ips/<address, hex>            {ip, containerID, ifName, node, podNamespace, podName, block}
 *   owners/<containerID>/<ifName> {ip, node}      the attachment's address (DEL, CHECK, GC)
 *
 * Hex keys are fixed width, so a block's addresses are one key range [ips/<first>, ips/<last+1>).
 *
 * ADD: one read txn (all block claims + the attachment's owner key), one read of the addresses used in
 * this node's blocks, one write txn:
 *     if  create_revision(ips/<a>) == 0  and  create_revision(owners/<c>/<i>) == 0
 *     and mod_revision(blocks/<b>) == <the revision read>
 *     then put ips/<a>, put owners/<c>/<i>
 * A conflict (another ADD took <a>, the block was handed back or re-claimed) re-reads and retries: an
 * address has one key, created once, so it never has two owners whatever the interleaving. When the
 * node's blocks are full it claims a free block (txn: create_revision(blocks/<b>) == 0); when no block
 * is free it borrows an address from another node's block (same txn shape).
 * DEL: delete the two keys (txn on the owner key's revision), then hand the block back if it is empty
 * (txn: value(blocks/<b>) == this node's claim and no key in the block's ips range). An ADD that read
 * the block before the hand-back fails its mod_revision compare, so no address lives in a free block.
 */
import { type EtcdClient, EtcdError, type KeyValue, prefixEnd, type TxnOp } from "../etcd/client.ts";
import { CniError, ErrCode } from "../spec/errors.ts";
import type { PoolRange } from "./config.ts";
import { type Addr, addrHex, bits, contains, formatAddr, hexAddr, type Subnet } from "./ipmath.ts";

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
    this.blockSize = 1n << BigInt(bits(range.subnet.ip.family) - range.blockPrefix);
  }

  private get family(): 4 | 6 {
    return this.range.subnet.ip.family;
  }

  blockKey(first: Addr): string {
    return `${this.base}blocks/${addrHex(first)}`;
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
    return !r.exclude.some((x) => contains(x, a));
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

  /** Every block claim: first address (hex) → kv. */
  private static claims(kvs: KeyValue[], base: string): Map<string, KeyValue> {
    const m = new Map<string, KeyValue>();
    for (const kv of kvs) m.set(kv.key.slice(`${base}blocks/`.length), kv);
    return m;
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

  private async usedIn(blocks: Addr[]): Promise<Map<string, Set<string>>> {
    const out = new Map<string, Set<string>>();
    if (blocks.length === 0) return out;
    const t = await this.client.txn({
      success: blocks.map((b) => ({ range: { ...this.blockIpsRange(b), keysOnly: true } })),
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
    const pick = hash32(`${att.containerID}/${att.ifName}`);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      // A small pool's used addresses come with the first read (one round trip less per ADD).
      const small = this.range.end.value - this.range.start.value < SMALL_POOL;
      const reads: TxnOp[] = [
        { range: { key: `${this.base}blocks/`, prefix: true } },
        { range: { key: ownerKey } },
      ];
      if (small) reads.push({ range: { key: `${this.base}ips/`, prefix: true, keysOnly: true } });
      const read = await this.client.txn({ success: reads });
      const [claimsR, ownerR, ipsR] = read.responses;
      const claims = Pool.claims(claimsR?.kind === "range" ? claimsR.range.kvs : [], this.base);
      const owner = ownerR?.kind === "range" ? ownerR.range.kvs[0] : undefined;
      if (owner) return hexAddr((JSON.parse(owner.value) as OwnerRecord).ip, this.family);
      const mine = [...claims.entries()]
        .filter(([, kv]) => kv.value === claimValue(att.node))
        .map(([hex]) => hexAddr(hex, this.family));
      const used = ipsR?.kind === "range" ? this.groupByBlock(ipsR.range.kvs) : await this.usedIn(mine);
      let target: { block: Addr; addr: Addr } | undefined;
      for (const b of mine) {
        const free = this.freeIn(b, used.get(addrHex(b)) ?? new Set());
        if (free.length > 0) {
          target = { block: b, addr: free[pick % free.length] as Addr };
          break;
        }
      }
      if (!target) {
        const claimed = await this.claimBlock(claims, att.node);
        if (claimed === "claimed") continue;
        target = await this.borrow(claims, pick);
        if (!target) {
          throw new CniError(
            ErrCode.Internal,
            `whereabouts: no free address in range ${formatAddr(this.range.start)}-${formatAddr(this.range.end)}`,
          );
        }
      }
      const blockKv = claims.get(addrHex(target.block));
      if (!blockKv) continue;
      const rec: Reservation = { ...att, ip: formatAddr(target.addr), block: addrHex(target.block) };
      const w = await this.client.txn({
        compare: [
          { key: this.ipKey(target.addr), target: "CREATE", result: "EQUAL", operand: 0 },
          { key: ownerKey, target: "CREATE", result: "EQUAL", operand: 0 },
          { key: this.blockKey(target.block), target: "MOD", result: "EQUAL", operand: blockKv.modRevision },
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

  /** Claims a free block for `node`: "claimed" (or lost the race: re-read either way), or "none" left. */
  private async claimBlock(claims: Map<string, KeyValue>, node: string): Promise<"claimed" | "none"> {
    const n = this.blockCount();
    const start = hash32(node) % n;
    for (let i = 0; i < n; i++) {
      const b = this.blockAt((start + i) % n);
      if (claims.has(addrHex(b))) continue;
      if (this.freeIn(b, new Set(), 1).length === 0) continue;
      await this.client.txn({
        compare: [{ key: this.blockKey(b), target: "CREATE", result: "EQUAL", operand: 0 }],
        success: [{ put: { key: this.blockKey(b), value: claimValue(node) } }],
      });
      return "claimed";
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
  async release(containerID: string, ifName: string, node: string): Promise<string | undefined> {
    const ownerKey = this.ownerKey(containerID, ifName);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const [owner] = (await this.client.range(ownerKey)).kvs;
      if (!owner) return undefined;
      const rec = JSON.parse(owner.value) as OwnerRecord;
      const a = hexAddr(rec.ip, this.family);
      const [ip] = (await this.client.range(this.ipKey(a))).kvs;
      const ops: TxnOp[] = [{ delete: { key: ownerKey } }];
      const ours =
        ip &&
        (() => {
          const r = JSON.parse(ip.value) as Reservation;
          return r.containerID === containerID && r.ifName === ifName;
        })();
      if (ip && ours) ops.push({ delete: { key: ip.key } });
      const compare = [
        { key: ownerKey, target: "MOD" as const, result: "EQUAL" as const, operand: owner.modRevision },
      ];
      if (ip && ours) compare.push({ key: ip.key, target: "MOD", result: "EQUAL", operand: ip.modRevision });
      const t = await this.client.txn({ compare, success: ops });
      if (!t.succeeded) continue;
      await this.handBack(this.blockOf(a), node);
      return formatAddr(a);
    }
    throw new CniError(
      ErrCode.TryAgainLater,
      `whereabouts: releasing ${containerID}/${ifName}: too many conflicts`,
    );
  }

  /** Deletes `node`'s claim on the block when no address is left in it (one txn). */
  async handBack(block: Addr, node: string): Promise<boolean> {
    const r = this.blockIpsRange(block);
    const t = await this.client.txn({
      compare: [
        { key: this.blockKey(block), target: "VALUE", result: "EQUAL", operand: claimValue(node) },
        { key: r.key, rangeEnd: r.rangeEnd, target: "CREATE", result: "EQUAL", operand: 0 },
      ],
      success: [{ delete: { key: this.blockKey(block) } }],
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
