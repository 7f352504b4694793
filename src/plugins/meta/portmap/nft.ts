/**
 * The nftables portmap backend. Upstream (plugins ≥ 1.5, table cni_hostport) adds one rule per
 * mapping, so every packet that reaches the nat hooks walks one rule per mapping on the host. Here
 * the rules are fixed and the mappings are map elements: a packet costs a few hash lookups however
 * many containers publish ports.
 *
 *   table inet tscni_hostport {
 *     map dnat4        { type inet_proto . inet_service : ipv4_addr . inet_service; }    # tcp . 8080 : 10.0.0.5 . 80
 *     map hostip_dnat4 { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }
 *     map masq4        { type ipv4_addr . ipv4_addr : mark; flags interval; }  # source prefix . container ip : owner tag
 *     map owners4      { type ipv4_addr : mark; }                             # container ip : owner tag
 *     (dnat6 / hostip_dnat6 / masq6 / owners6 likewise)
 *     set layout_<hash> { type mark; }        # marks the chains below as built for these conditions
 *     chain prerouting  { type nat hook prerouting priority dstnat;   (the same rules in output, priority -100)
 *       meta nfproto ipv4 <conditionsV4> dnat ip to ip daddr . meta l4proto . th dport map @hostip_dnat4
 *       meta nfproto ipv4 <conditionsV4> fib daddr type local dnat ip to meta l4proto . th dport map @dnat4
 *       (ipv6 likewise with conditionsV6)
 *     }
 *     chain postrouting { type nat hook postrouting priority srcnat;
 *       ct status dnat ip saddr . ip daddr @masq4 masquerade
 *       ct status dnat ip6 saddr . ip6 daddr @masq6 masquerade
 *     }
 *   }
 *
 * Hairpin and localhost SNAT (`snat`, default true): a container's masq elements are "its subnet .
 * its ip" (other containers on the bridge, and itself, reaching it through a host address: the reply
 * would otherwise bypass the host's NAT) and for IPv4 "127.0.0.0/8 . its ip" (the host reaching it
 * through 127.0.0.1; route_localnet is set by the plugin). masqAll makes it "0.0.0.0/0 . its ip".
 * Only DNATed connections are masqueraded (`ct status dnat`). The hostports rule checks
 * `fib daddr type local` so traffic forwarded to other hosts is never captured (upstream's nft
 * backend had to be fixed for exactly that); hostIP mappings match their address explicitly.
 *
 * Conditions (conditionsV4/V6) are nft expression fragments put in front of the DNAT lookups, like
 * upstream's nft backend puts them in front of its jumps; as there, the chains are shared, so the
 * conditions of the latest ADD apply to every mapping.
 *
 * Ownership. Every element carries the comment "<hash(network)>-<hash(ifname:containerID)> net: …,
 * if: …, id: …", so DEL and GC find an attachment's elements without knowing its mappings. The
 * owners map says who owns a container address; its value, and the masq maps', is the owner's
 * 32-bit tag. The kernel refuses ("File exists") to `add` an existing key with another value, which
 * gives two things without locks:
 * - ADD fast path: ONE `nft -f` holding only `add element` commands (plus `add element` into the
 *   layout set, which fails while the chains are missing or built for other conditions). It costs
 *   the same with 0 or 10,000 mappings: nothing is read and no base chain is touched (re-adding a
 *   hooked chain alone costs ~15 ms of kernel commit). It fails as a whole if a key is held by
 *   someone else (another container's hostPort, a stale owner of our address) or the layout is not
 *   current; then the slow path reads the table, rebuilds the chains, and replaces conflicting
 *   elements (last ADD wins, like upstream), all in one transaction.
 * - Deletes are compare-and-delete: "add element {k : value-we-read}; delete element {k}" in one
 *   transaction aborts if anyone changed the element since we read it; we then reread and replan.
 * A re-ADD of the same attachment without DEL (which the spec rules out) keeps elements of mappings
 * it no longer has until DEL.
 */

import {
  isNftConflict,
  type NftTarget,
  nftQuote,
  nftTransact,
  withNftSocket,
} from "../../../firewall/nft.ts";
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
  ownerComment,
  ownerOfComment,
  ownerTag,
  ownerID as sharedOwnerID,
} from "../../../firewall/owner.ts";
import { sha512hex } from "../../../ip/hash.ts";
import {
  NFPROTO_INET,
  type NftElemChange,
  nftCommitElems,
  nftListElems,
  nftListRules,
  nftListSets,
} from "../../../netlink/nftables.ts";
import type { NetlinkSocket } from "../../../netlink/socket.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import type { GCAttachment } from "../../../spec/types.ts";
import { hostIPMatch, mappingsFor, type Owner, type PortmapConf } from "./config.ts";

export const NFT_TABLE = "tscni_hostport";
const T = `inet ${NFT_TABLE}`;
/** Bump when the chains' rules change: ADDs then rebuild them once. */
const LAYOUT_VERSION = "1";
const ATTEMPTS = 4;

export type MapName =
  | "dnat4"
  | "dnat6"
  | "hostip_dnat4"
  | "hostip_dnat6"
  | "masq4"
  | "masq6"
  | "owners4"
  | "owners6";

const MAP_TYPES: Record<MapName, string> = {
  dnat4: "type inet_proto . inet_service : ipv4_addr . inet_service;",
  hostip_dnat4: "type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service;",
  masq4: "type ipv4_addr . ipv4_addr : mark; flags interval;",
  owners4: "type ipv4_addr : mark;",
  dnat6: "type inet_proto . inet_service : ipv6_addr . inet_service;",
  hostip_dnat6: "type ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service;",
  masq6: "type ipv6_addr . ipv6_addr : mark; flags interval;",
  owners6: "type ipv6_addr : mark;",
};
const MAPS = Object.keys(MAP_TYPES) as MapName[];
/** The same types for netlink (src/firewall/nft-elems.ts). */
const SCHEMAS: Record<MapName, NftMapSchema> = {
  dnat4: { key: ["inet_proto", "inet_service"], data: ["ipv4_addr", "inet_service"] },
  hostip_dnat4: { key: ["ipv4_addr", "inet_proto", "inet_service"], data: ["ipv4_addr", "inet_service"] },
  masq4: { key: ["ipv4_addr", "ipv4_addr"], data: ["mark"], interval: true },
  owners4: { key: ["ipv4_addr"], data: ["mark"] },
  dnat6: { key: ["inet_proto", "inet_service"], data: ["ipv6_addr", "inet_service"] },
  hostip_dnat6: { key: ["ipv6_addr", "inet_proto", "inet_service"], data: ["ipv6_addr", "inet_service"] },
  masq6: { key: ["ipv6_addr", "ipv6_addr"], data: ["mark"], interval: true },
  owners6: { key: ["ipv6_addr"], data: ["mark"] },
};
const LAYOUT_SCHEMA: NftMapSchema = { key: ["mark"] };

/** One map element as nft script text, in the form `nft -j` lists it back (so they compare equal). */
export interface Elem {
  map: MapName;
  key: string;
  value: string;
  comment: string;
}

/** "<hash16(network)>-<hash16(ifname:containerID)>": the owner part of every element comment. */
export const ownerID = sharedOwnerID;

function ownerOf(e: Elem): string {
  return ownerOfComment(e.comment);
}

/** The layout set's name: changes with the rule layout and the conditions. */
export function layoutSet(conf: Pick<PortmapConf, "conditionsV4" | "conditionsV6">): string {
  const h = sha512hex(JSON.stringify([LAYOUT_VERSION, conf.conditionsV4, conf.conditionsV6]));
  return `layout_${h.slice(0, 12)}`;
}

function prefixText(net: string, prefix: number, family: 4 | 6): string {
  return prefix === (family === 4 ? 32 : 128) ? net.split("/")[0]! : net;
}

/** Every element an attachment's mappings need (see the header), in a stable order. */
export function desiredElems(
  o: Owner,
  conf: Pick<PortmapConf, "snat" | "masqAll" | "portMappings" | "addrs">,
): Elem[] {
  const comment = ownerComment(o);
  const tag = String(ownerTag(ownerID(o)));
  const out: Elem[] = [];
  for (const a of conf.addrs) {
    const f = a.family;
    const maps = mappingsFor(conf, f);
    if (maps.length === 0) continue;
    out.push({ map: `owners${f}`, key: a.ip, value: tag, comment });
    for (const m of maps) {
      const hostIP = hostIPMatch(m);
      const value = `${a.ip} . ${m.containerPort}`;
      if (hostIP === undefined) {
        out.push({ map: `dnat${f}`, key: `${m.protocol} . ${m.hostPort}`, value, comment });
      } else {
        out.push({
          map: `hostip_dnat${f}`,
          key: `${hostIP} . ${m.protocol} . ${m.hostPort}`,
          value,
          comment,
        });
      }
    }
    if (!conf.snat) continue;
    if (conf.masqAll) {
      out.push({ map: `masq${f}`, key: `${f === 4 ? "0.0.0.0" : "::"}/0 . ${a.ip}`, value: tag, comment });
      continue;
    }
    out.push({ map: `masq${f}`, key: `${prefixText(a.subnet, a.prefix, f)} . ${a.ip}`, value: tag, comment });
    if (f === 4) out.push({ map: "masq4", key: `127.0.0.0/8 . ${a.ip}`, value: tag, comment });
  }
  return out;
}

/** `add element` commands, one per map. */
export function addElementLines(elems: readonly Elem[]): string[] {
  const byMap = new Map<MapName, string[]>();
  for (const e of elems) {
    const list = byMap.get(e.map) ?? [];
    list.push(`${e.key} comment ${nftQuote(e.comment)} : ${e.value}`);
    byMap.set(e.map, list);
  }
  return [...byMap].map(([map, items]) => `add element ${T} ${map} { ${items.join(", ")} }`);
}

/** Compare-and-delete: the add fails (aborting the transaction) unless the element still has this value. */
function deleteLines(e: Elem): string[] {
  return compareAndDeleteLines(T, e.map, e.key, e.value);
}

function dnatRules(chain: string, conf: Pick<PortmapConf, "conditionsV4" | "conditionsV6">): string[] {
  const rules: string[] = [];
  for (const [f, ip, conds] of [
    [4, "ip", conf.conditionsV4],
    [6, "ip6", conf.conditionsV6],
  ] as const) {
    const pre = ["meta", "nfproto", f === 4 ? "ipv4" : "ipv6", ...conds].join(" ");
    rules.push(
      `add rule ${T} ${chain} ${pre} dnat ${ip} to ${ip} daddr . meta l4proto . th dport map @hostip_dnat${f}`,
      `add rule ${T} ${chain} ${pre} fib daddr type local dnat ${ip} to meta l4proto . th dport map @dnat${f}`,
    );
  }
  return rules;
}

/** The table, maps, chains and layout set, the chains flushed and refilled. */
function structureLines(conf: PortmapConf, staleLayouts: readonly string[]): string[] {
  const layout = layoutSet(conf);
  return [
    `add table ${T} { comment ${nftQuote("tscni portmap: host ports to containers (DNAT, hairpin/localhost SNAT)")}; }`,
    ...MAPS.map((m) => `add map ${T} ${m} { ${MAP_TYPES[m]} }`),
    `add chain ${T} prerouting { type nat hook prerouting priority dstnat; policy accept; }`,
    `flush chain ${T} prerouting`,
    ...dnatRules("prerouting", conf),
    // dstnat is not accepted as a priority name on the output hook; -100 is its value.
    `add chain ${T} output { type nat hook output priority -100; policy accept; }`,
    `flush chain ${T} output`,
    ...dnatRules("output", conf),
    `add chain ${T} postrouting { type nat hook postrouting priority srcnat; policy accept; }`,
    `flush chain ${T} postrouting`,
    `add rule ${T} postrouting ct status dnat ip saddr . ip daddr @masq4 masquerade`,
    `add rule ${T} postrouting ct status dnat ip6 saddr . ip6 daddr @masq6 masquerade`,
    ...staleLayouts.filter((s) => s !== layout).map((s) => `delete set ${T} ${s}`),
    `add set ${T} ${layout} { type mark; }`,
    `add element ${T} ${layout} { 1 }`,
  ];
}

// ---------------------------------------------------------------------------------------------------
// Reading the table

export interface NftState {
  exists: boolean;
  elems: Elem[];
  /** Names of the layout_* sets. */
  layouts: string[];
  /** Rule count per chain. */
  rules: Map<string, number>;
}

const CHAINS = ["prerouting", "output", "postrouting"] as const;
/** portmap's table lives in the plugin's own (host) netns. */
const HOST: NftTarget = {};

/** The table's layouts and elements; with `withRules` also the rule count per chain (CHECK). */
export function readState(sock: NetlinkSocket, withRules = false): NftState {
  const sets = nftListSets(sock, NFPROTO_INET, NFT_TABLE);
  const state: NftState = { exists: sets !== undefined, elems: [], layouts: [], rules: new Map() };
  if (!sets) return state;
  state.layouts = sets.filter((n) => n.startsWith("layout_"));
  for (const map of MAPS) {
    if (!sets.includes(map)) continue;
    for (const raw of nftListElems(sock, NFPROTO_INET, NFT_TABLE, map) ?? []) {
      const e = decodeElem(SCHEMAS[map], raw);
      state.elems.push({ map, key: e.key, value: e.value ?? "", comment: e.comment ?? "" });
    }
  }
  for (const chain of withRules ? CHAINS : []) {
    const n = nftListRules(sock, NFPROTO_INET, NFT_TABLE, chain).length;
    if (n > 0) state.rules.set(chain, n);
  }
  return state;
}

function same(a: Elem, b: Elem): boolean {
  return a.map === b.map && a.key === b.key && a.value === b.value && a.comment === b.comment;
}

/** The container address an element points at. */
function elemAddr(e: Elem): string {
  const family = e.map.endsWith("6") ? 6 : 4;
  if (e.map.startsWith("owners")) return `${family}|${e.key}`;
  if (e.map.startsWith("masq")) return `${family}|${e.key.split(" . ")[1]}`;
  return `${family}|${e.value.split(" . ")[0]}`;
}

function toNetlink(e: Elem, comment: boolean) {
  return encodeElem(SCHEMAS[e.map], { key: e.key, value: e.value, comment: comment ? e.comment : undefined });
}

/** Element changes as netlink: every drop as "add {k : v}; delete {k}" (compare-and-delete), then adds. */
function elemChanges(drop: readonly Elem[], add: readonly Elem[]): NftElemChange[] {
  const byMap = new Map<MapName, Elem[]>();
  for (const e of add) byMap.set(e.map, [...(byMap.get(e.map) ?? []), e]);
  return [
    ...compareAndDelete(drop.map((e) => ({ set: e.map, elem: toNetlink(e, false) }))),
    ...[...byMap].map(
      ([map, elems]): NftElemChange => ({
        kind: "add",
        set: map,
        elems: elems.map((e) => toNetlink(e, true)),
      }),
    ),
  ];
}

interface Plan {
  /** Rebuild table, maps and chains for this configuration (an `nft -f` run). */
  structure?: PortmapConf;
  drop: Elem[];
  add: Elem[];
}

/** Read the table, plan, apply (see nftTransact); a plan with `structure` rebuilds the chains too. */
async function transact(what: string, plan: (state: NftState) => Plan): Promise<void> {
  await nftTransact({
    target: HOST,
    table: NFT_TABLE,
    what,
    attempts: ATTEMPTS,
    read: (sock) => readState(sock),
    plan: (state) => {
      const p = plan(state);
      return p.structure
        ? {
            script: [
              ...structureLines(p.structure, state.layouts),
              ...p.drop.flatMap(deleteLines),
              ...addElementLines(p.add),
            ],
          }
        : { changes: elemChanges(p.drop, p.add) };
    },
  });
}

// ---------------------------------------------------------------------------------------------------
// Verbs

export async function nftAdd(o: Owner, conf: PortmapConf): Promise<void> {
  const want = desiredElems(o, conf);
  if (want.length === 0) return;
  const what = `adding nft port mappings of ${o.containerID}`;
  try {
    // Fast path: only adds, the layout element first (missing set → ENOENT when the chains are not
    // built for this configuration).
    await withNftSocket(HOST, (sock) =>
      nftCommitElems(
        sock,
        NFPROTO_INET,
        NFT_TABLE,
        [
          { kind: "add", set: layoutSet(conf), elems: [encodeElem(LAYOUT_SCHEMA, { key: "1" })] },
          ...elemChanges([], want),
        ],
        what,
      ),
    );
    return;
  } catch (err) {
    if (!isNftConflict(err)) throw CniError.from(err, what);
  }
  const id = ownerID(o);
  const wantKeys = new Set(want.map((w) => `${w.map}|${w.key}`));
  const wantAddrs = new Set(want.map(elemAddr));
  await transact(what, (state) => {
    // Drop what this attachment had that it no longer wants, whatever holds one of our keys, and
    // every element of a stale owner of our addresses.
    const drop = state.elems.filter(
      (e) =>
        !want.some((w) => same(w, e)) &&
        (ownerOf(e) === id || wantKeys.has(`${e.map}|${e.key}`) || wantAddrs.has(elemAddr(e))),
    );
    const add = want.filter((w) => !state.elems.some((e) => same(w, e)));
    return { structure: conf, drop, add };
  });
}

/** Removes every element of the attachment; a missing table or no elements is success. */
export async function nftDel(o: Owner): Promise<void> {
  const id = ownerID(o);
  await transact(`deleting nft port mappings of ${o.containerID}`, (state) => ({
    drop: state.elems.filter((e) => ownerOf(e) === id),
    add: [],
  }));
}

export async function nftCheck(o: Owner, conf: PortmapConf): Promise<void> {
  const want = desiredElems(o, conf);
  if (want.length === 0) return;
  const state = await withNftSocket(HOST, (sock) => readState(sock, true));
  const fail = (msg: string) =>
    new CniError(ErrCode.Internal, `checking port mappings of ${o.containerID}: ${msg}`);
  if (!state.exists) throw fail(`nft table ${T} does not exist`);
  const layout = layoutSet(conf);
  if (!state.layouts.includes(layout))
    throw fail(`nft table ${T} chains are not built for this configuration`);
  for (const chain of CHAINS) {
    if (!state.rules.get(chain)) throw fail(`nft chain ${T} ${chain} has no rules`);
  }
  for (const w of want) {
    if (!state.elems.some((e) => same(w, e)))
      throw fail(`nft map ${T} ${w.map} lacks element ${w.key} : ${w.value}`);
  }
}

/** Removes the elements of every attachment of `network` not in `valid`. */
export async function nftGC(network: string, valid: readonly GCAttachment[]): Promise<void> {
  const prefix = networkPrefix(network);
  const alive = liveOwnerIDs(network, valid);
  await transact(`collecting stale nft port mappings of network ${network}`, (state) => ({
    drop: state.elems.filter((e) => {
      const owner = ownerOf(e);
      return owner.startsWith(prefix) && !alive.has(owner);
    }),
    add: [],
  }));
}
