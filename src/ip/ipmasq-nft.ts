/**
 * The nftables ipmasq backend. Upstream (plugins ≥ 1.5) adds one rule per container address to a chain
 * that every packet walks; we keep a fixed two-rule chain and put the containers into maps, so the
 * per-packet cost is two hash/interval lookups however many containers there are:
 *
 *   table inet tscni_masquerade {
 *     map masq4   { type ipv4_addr : mark; }                     # container ip        : owner tag
 *     map exempt4 { type ipv4_addr . ipv4_addr : mark; flags interval; }  # ip . its subnet : owner tag
 *     (masq6 / exempt6 likewise for IPv6)
 *     chain postrouting {
 *       type nat hook postrouting priority srcnat;
 *       ip saddr @masq4 ip daddr != 224.0.0.0/4 ip saddr . ip daddr != @exempt4 masquerade
 *       ip6 saddr @masq6 ip6 daddr != ff00::/8 ip6 saddr . ip6 daddr != @exempt6 masquerade
 *     }
 *   }
 *
 * Ownership. Every element carries a comment "<hash(network)>-<hash(ifname:containerID)> net: …, if: …,
 * id: …" (upstream's rule comment format), so DEL and GC find an attachment's elements without knowing
 * its addresses. Upstream chose rules over a set because "delete 10.0.0.3 only if container A still
 * owns it" cannot be said with a set: if A's address was released and given to B, a DEL of A racing
 * with the ADD of B could delete B's element. The maps fix that: the element's value is a 32-bit tag of
 * its owner, and the kernel refuses (EEXIST) to `add` an existing key with a different value. So every
 * delete is written as "add element {k : tag-we-read}; delete element {k}" in one transaction — a
 * compare-and-delete that aborts the whole transaction if anyone changed the element since we read it;
 * we then reread and replan. Adds of a key someone else took meanwhile abort the same way.
 *
 * Each call reads the maps and the chain's rules through netlink and commits element changes as one
 * netlink batch (no process started). Only when the table, maps or rules are missing or different does
 * it run `nft -f -` with the whole change (ruleset re-created, the chain flushed first — a chain flush
 * costs ~15 ms in the kernel, so the common ADD only adds elements).
 * The table is our own: upstream's cni_plugins_masquerade has a different layout, and its ADD flushes
 * that table's postrouting chain, so sharing it would break both.
 */

import { type NftTarget, nftQuote, nftTransact, withNftSocket } from "../firewall/nft.ts";
import {
  compareAndDelete,
  compareAndDeleteLines,
  decodeElem,
  encodeElem,
  type NftMapSchema,
} from "../firewall/nft-elems.ts";
import {
  liveOwnerIDs,
  networkPrefix,
  ownerComment,
  ownerID,
  ownerOfComment,
  ownerTag,
} from "../firewall/owner.ts";
import {
  NFPROTO_INET,
  type NftElemChange,
  type NftRule,
  nftListElems,
  nftListRules,
} from "../netlink/nftables.ts";
import type { NetlinkSocket } from "../netlink/socket.ts";
import { CniError, ErrCode } from "../spec/errors.ts";
import { type GCAttachment, type IPMasqOwner, type MasqAddr, MULTICAST } from "./ipmasq-types.ts";

export const NFT_MASQ_TABLE = "tscni_masquerade";
const T = `inet ${NFT_MASQ_TABLE}`;
const ATTEMPTS = 4;

type MapName = "masq4" | "masq6" | "exempt4" | "exempt6";
const SCHEMAS: Record<MapName, NftMapSchema> = {
  masq4: { key: ["ipv4_addr"], data: ["mark"] },
  masq6: { key: ["ipv6_addr"], data: ["mark"] },
  exempt4: { key: ["ipv4_addr", "ipv4_addr"], data: ["mark"], interval: true },
  exempt6: { key: ["ipv6_addr", "ipv6_addr"], data: ["mark"], interval: true },
};
const MAPS = Object.keys(SCHEMAS) as MapName[];

/** One map element: key as nft script text ("10.0.0.5", "10.0.0.5 . 10.0.0.0/16"), value, comment. */
interface Elem {
  map: MapName;
  key: string;
  tag: number;
  comment: string;
}

/** "<hash16(network)>-<hash16(ifname:containerID)>", as upstream's nftables backend tags its rules. */
export const nftOwnerID = ownerID;

function ownerOf(e: Elem): string {
  return ownerOfComment(e.comment);
}

function desiredElems(o: IPMasqOwner, addrs: readonly MasqAddr[]): Elem[] {
  const comment = ownerComment(o);
  const tag = ownerTag(nftOwnerID(o));
  return addrs.flatMap((a): Elem[] => [
    { map: a.family === 4 ? "masq4" : "masq6", key: a.ip, tag, comment },
    { map: a.family === 4 ? "exempt4" : "exempt6", key: `${a.ip} . ${a.subnet}`, tag, comment },
  ]);
}

/** The table, maps and chain; re-adding existing ones is a no-op, the chain is flushed and refilled. */
function ensureRuleset(): string[] {
  return [
    `add table ${T} { comment ${nftQuote("per-container masquerade of tscni (bridge, ptp ipMasq)")}; }`,
    `add map ${T} masq4 { type ipv4_addr : mark; }`,
    `add map ${T} masq6 { type ipv6_addr : mark; }`,
    `add map ${T} exempt4 { type ipv4_addr . ipv4_addr : mark; flags interval; }`,
    `add map ${T} exempt6 { type ipv6_addr . ipv6_addr : mark; flags interval; }`,
    `add chain ${T} postrouting { type nat hook postrouting priority srcnat; policy accept; }`,
    `flush chain ${T} postrouting`,
    `add rule ${T} postrouting ip saddr @masq4 ip daddr != ${MULTICAST[4]} ip saddr . ip daddr != @exempt4 masquerade`,
    `add rule ${T} postrouting ip6 saddr @masq6 ip6 daddr != ${MULTICAST[6]} ip6 saddr . ip6 daddr != @exempt6 masquerade`,
  ];
}

function addLine(e: Elem): string {
  return `add element ${T} ${e.map} { ${e.key} comment ${nftQuote(e.comment)} : ${e.tag} }`;
}

/** Compare-and-delete: the add fails (aborting the transaction) unless the element still has our value. */
function deleteLines(e: Elem): string[] {
  return compareAndDeleteLines(T, e.map, e.key, e.tag);
}

interface NftState {
  elems: Elem[];
  /** The postrouting chain's rules. */
  rules: NftRule[];
}

/** The maps' elements; with `withRules` also the postrouting rules (ADD, CHECK: DEL and GC need none). */
function readState(sock: NetlinkSocket, withRules: boolean): NftState {
  const elems: Elem[] = [];
  for (const map of MAPS) {
    for (const raw of nftListElems(sock, NFPROTO_INET, NFT_MASQ_TABLE, map) ?? []) {
      const e = decodeElem(SCHEMAS[map], raw);
      elems.push({ map, key: e.key, tag: Number(e.value), comment: e.comment ?? "" });
    }
  }
  return { elems, rules: withRules ? nftListRules(sock, NFPROTO_INET, NFT_MASQ_TABLE, "postrouting") : [] };
}

function same(a: Elem, b: Elem): boolean {
  return a.map === b.map && a.key === b.key && a.tag === b.tag && a.comment === b.comment;
}

/** The address an element is about: the key itself (masq maps) or its first part (exempt maps). */
function elemAddr(e: Elem): string {
  return e.key.split(" . ", 1)[0]!;
}

/** What one call changes: elements to compare-and-delete, elements to add, the ruleset if it is not right. */
interface Plan {
  ruleset?: boolean;
  drop: Elem[];
  add: Elem[];
}

function toNetlink(e: Elem, comment: boolean) {
  return encodeElem(SCHEMAS[e.map], {
    key: e.key,
    value: String(e.tag),
    comment: comment ? e.comment : undefined,
  });
}

/** The plan as netlink element changes: every drop as "add {k : tag}; delete {k}", then the adds. */
function elemChanges(p: Plan): NftElemChange[] {
  return [
    ...compareAndDelete(p.drop.map((e) => ({ set: e.map, elem: toNetlink(e, false) }))),
    ...p.add.map((e): NftElemChange => ({ kind: "add", set: e.map, elems: [toNetlink(e, true)] })),
  ];
}

/** Read the maps (and with `withRules` the rules), plan, apply: see nftTransact. */
async function transact(
  target: NftTarget,
  what: string,
  plan: (state: NftState) => Plan,
  withRules = false,
): Promise<void> {
  await nftTransact({
    target,
    table: NFT_MASQ_TABLE,
    what,
    attempts: ATTEMPTS,
    read: (sock) => readState(sock, withRules),
    plan: (state) => {
      const p = plan(state);
      return p.ruleset
        ? { script: [...ensureRuleset(), ...p.drop.flatMap(deleteLines), ...p.add.map(addLine)] }
        : { changes: elemChanges(p) };
    },
  });
}

/** Whether the postrouting chain has the IPv`family` masquerade rule over our maps. */
function hasMasqRule(state: NftState, family: 4 | 6): boolean {
  return state.rules.some(
    (r) => r.sets.includes(`masq${family}`) && r.sets.includes(`exempt${family}`) && r.exprs.includes("masq"),
  );
}

export async function setupIPMasqNft(
  o: IPMasqOwner,
  addrs: readonly MasqAddr[],
  target: NftTarget,
): Promise<void> {
  const id = nftOwnerID(o);
  const want = desiredElems(o, addrs);
  const wantAddrs = new Set(want.map(elemAddr));
  await transact(
    target,
    `adding nft masquerade for ${o.containerID}`,
    (state) => {
      // Drop what this attachment had before and anything else claiming our addresses (a stale owner
      // whose address IPAM gave to us), except elements that are already exactly right.
      const drop = state.elems.filter(
        (e) => (ownerOf(e) === id || wantAddrs.has(elemAddr(e))) && !want.some((w) => same(w, e)),
      );
      const add = want.filter((w) => !state.elems.some((e) => same(w, e)));
      const rulesetOK = state.rules.length === 2 && hasMasqRule(state, 4) && hasMasqRule(state, 6);
      return { ruleset: !rulesetOK, drop, add };
    },
    true,
  );
}

export async function teardownIPMasqNft(o: IPMasqOwner, target: NftTarget): Promise<void> {
  const id = nftOwnerID(o);
  await transact(target, `deleting nft masquerade of ${o.containerID}`, (state) => ({
    drop: state.elems.filter((e) => ownerOf(e) === id),
    add: [],
  }));
}

export async function checkIPMasqNft(
  o: IPMasqOwner,
  addrs: readonly MasqAddr[],
  target: NftTarget,
): Promise<void> {
  const state = await withNftSocket(target, (sock) => readState(sock, true));
  for (const family of [4, 6] as const) {
    if (!addrs.some((a) => a.family === family)) continue;
    if (!hasMasqRule(state, family)) {
      throw new CniError(
        ErrCode.Internal,
        `nft table ${T} has no IPv${family} masquerade rule in postrouting`,
      );
    }
  }
  for (const w of desiredElems(o, addrs)) {
    if (!state.elems.some((e) => same(w, e))) {
      throw new CniError(
        ErrCode.Internal,
        `nft map ${T} ${w.map} lacks element ${w.key} of ${o.containerID}`,
      );
    }
  }
}

export async function gcIPMasqNft(
  network: string,
  valid: readonly GCAttachment[],
  target: NftTarget,
): Promise<void> {
  const prefix = networkPrefix(network);
  const alive = liveOwnerIDs(network, valid);
  await transact(target, `collecting stale nft masquerade of network ${network}`, (state) => ({
    drop: state.elems.filter((e) => {
      const owner = ownerOf(e);
      return owner.startsWith(prefix) && !alive.has(owner);
    }),
    add: [],
  }));
}
