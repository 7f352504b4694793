/**
 * The nftables backend (ours; upstream's firewall has none). One table with a fixed ruleset; the
 * containers and bridges are elements, so a call changes elements only and the chain never grows:
 *
 *   table inet tscni_firewall {
 *     map allow4 { type ipv4_addr : mark; }     # container ip : owner tag (comment names the owner)
 *     map allow6 { type ipv6_addr : mark; }
 *     set isolated { type ifname; }             # bridges with ingressPolicy same-bridge or isolated
 *     set same { type ifname . ifname; }        # "br" . "br" for same-bridge: traffic within br passes
 *     chain admin { }                           # the operators' rules (CNI-ADMIN's twin; never touched)
 *     chain forward {
 *       type filter hook forward priority filter; policy accept;
 *       iifname @isolated oifname @isolated iifname . oifname != @same drop
 *       jump admin
 *       ip daddr @allow4 ct state established,related accept
 *       ip saddr @allow4 accept
 *       ip6 daddr @allow6 ct state established,related accept
 *       ip6 saddr @allow6 accept
 *     }
 *   }
 *
 * The isolation rule is upstream's CNI-ISOLATION-STAGE-1/2 in one rule: a packet from one isolated
 * bridge out of another is dropped (and, for isolated, one within the same bridge). Like upstream's,
 * bridge entries stay on DEL (other containers may use the bridge); GC leaves them too.
 *
 * Ownership works like the ipmasq and portmap tables: every allow element's value is its owner's tag
 * and its comment starts with the owner ID, so DEL and GC find an attachment's elements without its
 * addresses, and each delete is a compare-and-delete that aborts the batch if the element changed.
 * Calls read through netlink and commit one netlink batch; only a missing or different ruleset runs
 * `nft -f -` (the whole change in that one script).
 */
import { type NftTarget, nftQuote, nftTransact, withNftSocket } from "../../../firewall/nft.ts";
import {
  compareAndDelete,
  compareAndDeleteLines,
  decodeElem,
  encodeElem,
  type NftMapSchema,
} from "../../../firewall/nft-elems.ts";
import {
  liveOwnerIDs,
  networkPrefix,
  type Owner,
  ownerComment,
  ownerID,
  ownerOfComment,
  ownerTag,
} from "../../../firewall/owner.ts";
import {
  NFPROTO_INET,
  type NftElemChange,
  type NftRule,
  nftChainExists,
  nftListElems,
  nftListRules,
} from "../../../netlink/nftables.ts";
import type { NetlinkSocket } from "../../../netlink/socket.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import type { GCAttachment } from "../../../spec/types.ts";
import type { FwAddr, IngressPolicy } from "./config.ts";

export const NFT_TABLE = "tscni_firewall";
const T = `inet ${NFT_TABLE}`;
const ATTEMPTS = 4;

type SetName = "allow4" | "allow6" | "isolated" | "same";
const SCHEMAS: Record<SetName, NftMapSchema> = {
  allow4: { key: ["ipv4_addr"], data: ["mark"] },
  allow6: { key: ["ipv6_addr"], data: ["mark"] },
  isolated: { key: ["ifname"] },
  same: { key: ["ifname", "ifname"] },
};
const SETS = Object.keys(SCHEMAS) as SetName[];

/** One element: key as nft text ("10.0.0.5", "\"br0\" . \"br0\""), the owner tag of allow elements. */
interface Elem {
  set: SetName;
  key: string;
  tag?: number;
  comment: string;
}

interface State {
  elems: Elem[];
  rules: NftRule[];
  admin: boolean;
}

/** The forward chain's rules as "sets:ct" signatures, for recognising our ruleset. */
const SIGNATURE = ["isolated,isolated,same:", ":", "allow4:ct", "allow4:", "allow6:ct", "allow6:"];

function signature(rules: readonly NftRule[]): string[] {
  return rules.map((r) => `${r.sets.join(",")}:${r.exprs.includes("ct") ? "ct" : ""}`);
}

function rulesetOK(s: State): boolean {
  const sig = signature(s.rules);
  return s.admin && sig.length === SIGNATURE.length && sig.every((x, i) => x === SIGNATURE[i]);
}

function ensureRuleset(): string[] {
  return [
    `add table ${T} { comment ${nftQuote("container forwarding of tscni's firewall plugin")}; }`,
    `add map ${T} allow4 { type ipv4_addr : mark; }`,
    `add map ${T} allow6 { type ipv6_addr : mark; }`,
    `add set ${T} isolated { type ifname; }`,
    `add set ${T} same { type ifname . ifname; }`,
    `add chain ${T} admin`,
    `add chain ${T} forward { type filter hook forward priority filter; policy accept; }`,
    `flush chain ${T} forward`,
    `add rule ${T} forward iifname @isolated oifname @isolated iifname . oifname != @same drop`,
    `add rule ${T} forward jump admin`,
    `add rule ${T} forward ip daddr @allow4 ct state established,related accept`,
    `add rule ${T} forward ip saddr @allow4 accept`,
    `add rule ${T} forward ip6 daddr @allow6 ct state established,related accept`,
    `add rule ${T} forward ip6 saddr @allow6 accept`,
  ];
}

function readState(sock: NetlinkSocket, withRules: boolean): State {
  const elems: Elem[] = [];
  for (const set of SETS) {
    for (const raw of nftListElems(sock, NFPROTO_INET, NFT_TABLE, set) ?? []) {
      const e = decodeElem(SCHEMAS[set], raw);
      const elem: Elem = { set, key: e.key, comment: e.comment ?? "" };
      if (e.value !== undefined) elem.tag = Number(e.value);
      elems.push(elem);
    }
  }
  return {
    elems,
    rules: withRules ? nftListRules(sock, NFPROTO_INET, NFT_TABLE, "forward") : [],
    admin: withRules ? nftChainExists(sock, NFPROTO_INET, NFT_TABLE, "admin") : false,
  };
}

function same(a: Elem, b: Elem): boolean {
  return a.set === b.set && a.key === b.key && a.tag === b.tag && a.comment === b.comment;
}

function sameKey(a: Elem, b: Elem): boolean {
  return a.set === b.set && a.key === b.key;
}

function allowElems(o: Owner, addrs: readonly FwAddr[]): Elem[] {
  const comment = ownerComment(o);
  const tag = ownerTag(ownerID(o));
  return addrs.map((a): Elem => ({ set: a.family === 4 ? "allow4" : "allow6", key: a.ip, tag, comment }));
}

function bridgeElems(bridge: string, policy: IngressPolicy): { want: Elem[]; unwanted: Elem[] } {
  const q = `"${bridge}"`;
  const comment = `ingressPolicy: ${policy}`;
  const iso: Elem = { set: "isolated", key: q, comment };
  const pair: Elem = { set: "same", key: `${q} . ${q}`, comment };
  return policy === "same-bridge" ? { want: [iso, pair], unwanted: [] } : { want: [iso], unwanted: [pair] };
}

interface Plan {
  ruleset?: boolean;
  drop: Elem[];
  add: Elem[];
}

function toNetlink(e: Elem, withComment: boolean) {
  return encodeElem(SCHEMAS[e.set], {
    key: e.key,
    value: e.tag === undefined ? undefined : String(e.tag),
    comment: withComment ? e.comment : undefined,
  });
}

function elemChanges(p: Plan): NftElemChange[] {
  const guarded = p.drop.filter((e) => e.tag !== undefined);
  const plain = p.drop.filter((e) => e.tag === undefined);
  return [
    ...compareAndDelete(guarded.map((e) => ({ set: e.set, elem: toNetlink(e, false) }))),
    ...plain.map((e): NftElemChange => ({ kind: "delete", set: e.set, elems: [toNetlink(e, false)] })),
    ...p.add.map((e): NftElemChange => ({ kind: "add", set: e.set, elems: [toNetlink(e, true)] })),
  ];
}

function scriptLines(p: Plan): string[] {
  const drop = p.drop.flatMap((e) => compareAndDeleteLines(T, e.set, e.key, e.tag));
  const add = p.add.map(
    (e) =>
      `add element ${T} ${e.set} { ${e.key} comment ${nftQuote(e.comment)}${e.tag === undefined ? "" : ` : ${e.tag}`} }`,
  );
  return [...ensureRuleset(), ...drop, ...add];
}

async function transact(
  target: NftTarget,
  what: string,
  plan: (s: State) => Plan,
  withRules = false,
): Promise<void> {
  await nftTransact({
    target,
    table: NFT_TABLE,
    what,
    attempts: ATTEMPTS,
    read: (sock) => readState(sock, withRules),
    plan: (state) => {
      const p = plan(state);
      return p.ruleset ? { script: scriptLines(p) } : { changes: elemChanges(p) };
    },
  });
}

export interface NftAddOptions {
  owner: Owner;
  addrs: readonly FwAddr[];
  isolation?: { bridge: string; policy: IngressPolicy };
  target?: NftTarget;
}

export async function nftAdd(o: NftAddOptions): Promise<void> {
  const id = ownerID(o.owner);
  const want = allowElems(o.owner, o.addrs);
  const bridges = o.isolation
    ? bridgeElems(o.isolation.bridge, o.isolation.policy)
    : { want: [], unwanted: [] };
  await transact(
    o.target ?? {},
    `adding nft firewall elements for ${o.owner.containerID}`,
    (s) => {
      const allow = s.elems.filter((e) => e.set === "allow4" || e.set === "allow6");
      // What this attachment had before, and stale owners of our addresses, unless exactly right.
      const drop = allow.filter(
        (e) =>
          (ownerOfComment(e.comment) === id || want.some((w) => sameKey(w, e))) &&
          !want.some((w) => same(w, e)),
      );
      drop.push(...s.elems.filter((e) => bridges.unwanted.some((u) => sameKey(u, e))));
      const add = want.filter((w) => !allow.some((e) => same(w, e)));
      // Bridge entries: keyed by bridge alone; an existing one (any comment) is kept.
      add.push(...bridges.want.filter((w) => !s.elems.some((e) => sameKey(w, e))));
      return { ruleset: !rulesetOK(s), drop, add };
    },
    true,
  );
}

export async function nftDel(owner: Owner, target: NftTarget = {}): Promise<void> {
  const id = ownerID(owner);
  await transact(target, `deleting nft firewall elements of ${owner.containerID}`, (s) => ({
    drop: s.elems.filter((e) => e.tag !== undefined && ownerOfComment(e.comment) === id),
    add: [],
  }));
}

export async function nftCheck(o: NftAddOptions): Promise<void> {
  const s = await withNftSocket(o.target ?? {}, (sock) => readState(sock, true));
  const fail = (msg: string) =>
    new CniError(ErrCode.Internal, `checking nft firewall of ${o.owner.containerID}: ${msg}`);
  if (!rulesetOK(s)) throw fail(`table ${T} lacks its forward/admin ruleset`);
  for (const w of allowElems(o.owner, o.addrs)) {
    if (!s.elems.some((e) => same(w, e))) throw fail(`map ${w.set} lacks element ${w.key}`);
  }
  if (o.isolation) {
    const b = bridgeElems(o.isolation.bridge, o.isolation.policy);
    for (const w of b.want) {
      if (!s.elems.some((e) => sameKey(w, e))) throw fail(`set ${w.set} lacks element ${w.key}`);
    }
    for (const u of b.unwanted) {
      if (s.elems.some((e) => sameKey(u, e)))
        throw fail(`set ${u.set} has element ${u.key} (policy ${o.isolation.policy})`);
    }
  }
}

export async function nftGC(
  network: string,
  valid: readonly GCAttachment[],
  target: NftTarget = {},
): Promise<void> {
  const prefix = networkPrefix(network);
  const alive = liveOwnerIDs(network, valid);
  await transact(target, `collecting stale nft firewall elements of network ${network}`, (s) => ({
    drop: s.elems.filter((e) => {
      const owner = ownerOfComment(e.comment);
      return e.tag !== undefined && owner.startsWith(prefix) && !alive.has(owner);
    }),
    add: [],
  }));
}
