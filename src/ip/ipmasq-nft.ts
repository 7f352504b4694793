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
 * Each call: one `nft -j list table` and one `nft -f -` transaction. ADD re-creates the table, maps and
 * the two rules (flushing the chain first) only when the read shows them missing or different: a
 * chain flush costs ~15 ms in the kernel, so the common ADD only adds elements.
 * The table is our own: upstream's cni_plugins_masquerade has a different layout, and its ADD flushes
 * that table's postrouting chain, so sharing it would break both.
 */
import { type NftObject, nftApply, nftJSON, nftQuote } from "../firewall/nft.ts";
import { CniError, ErrCode } from "../spec/errors.ts";
import { sha512hex } from "./hash.ts";
import type { GCAttachment, IPMasqOwner, MasqAddr } from "./ipmasq.ts";
import { MULTICAST } from "./ipmasq.ts";

export const NFT_MASQ_TABLE = "tscni_masquerade";
const T = `inet ${NFT_MASQ_TABLE}`;
const ATTEMPTS = 4;
/** nft's limit on comment length. */
const COMMENT_MAX = 128;

type MapName = "masq4" | "masq6" | "exempt4" | "exempt6";
const MAPS: readonly MapName[] = ["masq4", "masq6", "exempt4", "exempt6"];

/** One map element: key as nft script text ("10.0.0.5", "10.0.0.5 . 10.0.0.0/16"), value, comment. */
interface Elem {
  map: MapName;
  key: string;
  tag: number;
  comment: string;
}

/** "<hash16(network)>-<hash16(ifname:containerID)>", as upstream's nftables backend tags its rules. */
export function nftOwnerID(o: IPMasqOwner): string {
  return `${netHash(o.network)}-${sha512hex(`${o.ifName}:${o.containerID}`).slice(0, 16)}`;
}

function netHash(network: string): string {
  return sha512hex(network).slice(0, 16);
}

function ownerComment(o: IPMasqOwner): string {
  return `${nftOwnerID(o)} net: ${o.network}, if: ${o.ifName}, id: ${o.containerID}`.slice(0, COMMENT_MAX);
}

function ownerTag(id: string): number {
  return Number.parseInt(sha512hex(id).slice(0, 8), 16);
}

function ownerOf(e: Elem): string {
  return e.comment.split(" ", 1)[0] ?? "";
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
  return [`add element ${T} ${e.map} { ${e.key} : ${e.tag} }`, `delete element ${T} ${e.map} { ${e.key} }`];
}

/** Prints one part of a key from nft's JSON ("10.0.0.5", {prefix}, {range}) as script text. */
function keyText(v: unknown): string {
  if (typeof v === "string" || typeof v === "number") return String(v);
  const o = v as { prefix?: { addr: string; len: number }; range?: [unknown, unknown]; concat?: unknown[] };
  if (o.prefix) return `${o.prefix.addr}/${o.prefix.len}`;
  if (o.range) return `${keyText(o.range[0])}-${keyText(o.range[1])}`;
  if (o.concat) return o.concat.map(keyText).join(" . ");
  throw new CniError(ErrCode.Internal, `unexpected nft set key ${JSON.stringify(v)}`);
}

interface NftState {
  elems: Elem[];
  /** The postrouting chain's rules as nft JSON. */
  rules: NftObject[];
}

function parseState(objs: readonly NftObject[] | undefined): NftState {
  const state: NftState = { elems: [], rules: [] };
  for (const obj of objs ?? []) {
    const rule = obj.rule as { chain?: string } | undefined;
    if (rule?.chain === "postrouting") state.rules.push(rule as NftObject);
    const map = obj.map as { name?: string; elem?: unknown[] } | undefined;
    if (!map || !MAPS.includes(map.name as MapName)) continue;
    for (const item of map.elem ?? []) {
      const [k, tag] = item as [unknown, number];
      const wrapped = (k as { elem?: { val: unknown; comment?: string } }).elem;
      state.elems.push({
        map: map.name as MapName,
        key: keyText(wrapped ? wrapped.val : k),
        tag,
        comment: wrapped?.comment ?? "",
      });
    }
  }
  return state;
}

async function readState(netnsPath: string | undefined): Promise<NftState> {
  return parseState(await nftJSON(["list", "table", "inet", NFT_MASQ_TABLE], { netnsPath, missingOk: true }));
}

function same(a: Elem, b: Elem): boolean {
  return a.map === b.map && a.key === b.key && a.tag === b.tag && a.comment === b.comment;
}

/** The address an element is about: the key itself (masq maps) or its first part (exempt maps). */
function elemAddr(e: Elem): string {
  return e.key.split(" . ", 1)[0]!;
}

/**
 * Reads, plans, applies in one transaction; on failure rereads and replans (the compare-and-delete
 * guards make a concurrent change abort our transaction instead of being overwritten).
 */
async function transact(
  netnsPath: string | undefined,
  what: string,
  plan: (state: NftState) => string[],
): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const lines = plan(await readState(netnsPath));
    if (lines.length === 0) return;
    try {
      await nftApply(`${lines.join("\n")}\n`, { netnsPath, what });
      return;
    } catch (err) {
      const conflict = err instanceof CniError && /File exists|No such file or directory/.test(err.details);
      if (!conflict || attempt >= ATTEMPTS) throw err;
    }
  }
}

/** Whether the postrouting chain has the IPv`family` masquerade rule over our maps. */
function hasMasqRule(state: NftState, family: 4 | 6): boolean {
  return state.rules.some((r) => {
    const text = JSON.stringify(r);
    return (
      text.includes(`"@masq${family}"`) &&
      text.includes(`"@exempt${family}"`) &&
      text.includes('"masquerade"')
    );
  });
}

export async function setupIPMasqNft(
  o: IPMasqOwner,
  addrs: readonly MasqAddr[],
  netnsPath: string | undefined,
): Promise<void> {
  const id = nftOwnerID(o);
  const want = desiredElems(o, addrs);
  const wantAddrs = new Set(want.map(elemAddr));
  await transact(netnsPath, `adding nft masquerade for ${o.containerID}`, (state) => {
    // Drop what this attachment had before and anything else claiming our addresses (a stale owner
    // whose address IPAM gave to us), except elements that are already exactly right.
    const drop = state.elems.filter(
      (e) => (ownerOf(e) === id || wantAddrs.has(elemAddr(e))) && !want.some((w) => same(w, e)),
    );
    const add = want.filter((w) => !state.elems.some((e) => same(w, e)));
    const rulesetOK = state.rules.length === 2 && hasMasqRule(state, 4) && hasMasqRule(state, 6);
    return [...(rulesetOK ? [] : ensureRuleset()), ...drop.flatMap(deleteLines), ...add.map(addLine)];
  });
}

export async function teardownIPMasqNft(o: IPMasqOwner, netnsPath: string | undefined): Promise<void> {
  const id = nftOwnerID(o);
  await transact(netnsPath, `deleting nft masquerade of ${o.containerID}`, (state) =>
    state.elems.filter((e) => ownerOf(e) === id).flatMap(deleteLines),
  );
}

export async function checkIPMasqNft(
  o: IPMasqOwner,
  addrs: readonly MasqAddr[],
  netnsPath: string | undefined,
): Promise<void> {
  const state = await readState(netnsPath);
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
  netnsPath: string | undefined,
): Promise<void> {
  const prefix = `${netHash(network)}-`;
  const alive = new Set(
    valid.map((a) => nftOwnerID({ network, ifName: a.ifname, containerID: a.containerID })),
  );
  await transact(netnsPath, `collecting stale nft masquerade of network ${network}`, (state) =>
    state.elems
      .filter((e) => {
        const owner = ownerOf(e);
        return owner.startsWith(prefix) && !alive.has(owner);
      })
      .flatMap(deleteLines),
  );
}
