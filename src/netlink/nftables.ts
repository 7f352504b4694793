/**
 * nf_tables over netlink (linux/netfilter/nf_tables.h): what the firewall backends need on every call,
 * without starting `nft` — list a table's sets, a set's elements and a chain's rules, and commit
 * element changes as one atomic batch. Creating tables, chains and rules stays with `nft -f -`
 * (src/firewall/nft.ts): it happens once per host and nft's language says it best.
 *
 * The socket is the caller's (NETLINK_NETFILTER, opened in the netns whose ruleset is meant), so a
 * caller can commit and keep the socket open: the kernel frees deleted elements after an RCU grace
 * period, and the socket's release waits for that (~15 ms). Closing it after other slow kernel work
 * (a veth delete) lets the two waits overlap.
 */

import { SysError } from "../sys/errno.ts";
import {
  type Attr,
  attr,
  NLM_F_ACK,
  NLM_F_CREATE,
  type NlMsg,
  parseAttrList,
  parseAttrs,
  read,
  struct,
  structView,
} from "./codec.ts";
import { NETLINK_NETFILTER, NetlinkSocket } from "./socket.ts";

export const NFPROTO_INET = 1;
export const NFPROTO_IPV4 = 2;
export const NFPROTO_IPV6 = 10;

const NFNL_SUBSYS_NFTABLES = 10;
const NFNL_MSG_BATCH_BEGIN = 0x10;
const NFNL_MSG_BATCH_END = 0x11;

const NFT_MSG_GETTABLE = 1;
const NFT_MSG_GETCHAIN = 4;
const NFT_MSG_GETRULE = 7;
const NFT_MSG_GETSET = 10;
const NFT_MSG_NEWSETELEM = 12;
const NFT_MSG_GETSETELEM = 13;
const NFT_MSG_DELSETELEM = 14;

const NFTA_TABLE_NAME = 1;
const NFTA_CHAIN_TABLE = 1;
const NFTA_CHAIN_NAME = 3;
const NFTA_RULE_TABLE = 1;
const NFTA_RULE_CHAIN = 2;
const NFTA_RULE_HANDLE = 3;
const NFTA_RULE_EXPRESSIONS = 4;
const NFTA_LIST_ELEM = 1;
const NFTA_EXPR_NAME = 1;
const NFTA_EXPR_DATA = 2;
/** NFTA_LOOKUP_SET and NFTA_DYNSET_SET_NAME; NFTA_NAT_*… are not needed. */
const NFTA_LOOKUP_SET = 1;
const NFTA_SET_TABLE = 1;
const NFTA_SET_NAME = 2;
const NFTA_SET_ELEM_LIST_TABLE = 1;
const NFTA_SET_ELEM_LIST_SET = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS = 3;
const NFTA_SET_ELEM_KEY = 1;
const NFTA_SET_ELEM_DATA = 2;
const NFTA_SET_ELEM_FLAGS = 3;
const NFTA_SET_ELEM_USERDATA = 6;
const NFTA_SET_ELEM_KEY_END = 10;
const NFTA_DATA_VALUE = 1;
/** libnftnl's user-data TLV type for an element comment (what `nft … comment "…"` writes). */
const NFTNL_UDATA_SET_ELEM_COMMENT = 0;

/** One set or map element as the kernel holds it. */
export interface NftSetElem {
  key: Uint8Array;
  /** Interval sets of concatenations: the range's last key. */
  keyEnd?: Uint8Array;
  /** Maps: the value. */
  data?: Uint8Array;
  comment?: string;
  /** NFTA_SET_ELEM_FLAGS (e.g. interval end); 0 when absent. */
  flags?: number;
}

/** A rule, as much as callers need to recognise it. */
export interface NftRule {
  handle: bigint;
  /** Expression names in order ("meta", "cmp", "lookup", "masq", …). */
  exprs: string[];
  /** Sets the rule looks up ("@masq4" → "masq4"). */
  sets: string[];
}

/** Element changes of one set, applied in order within a commit. */
export interface NftElemChange {
  kind: "add" | "delete";
  set: string;
  elems: readonly NftSetElem[];
}

function nfgenmsg(family: number, resId = 0): Uint8Array {
  return struct(4, (v) => {
    v.setUint8(0, family);
    v.setUint16(2, resId, false);
  });
}

function msgType(cmd: number): number {
  return (NFNL_SUBSYS_NFTABLES << 8) | cmd;
}

/** A socket for nf_tables in the current netns, or in the netns of `netnsFd`. */
export function openNftSocket(netnsFd?: number): NetlinkSocket {
  return NetlinkSocket.open({ protocol: NETLINK_NETFILTER, netnsFd });
}

/** A dump of nf_tables objects; undefined when what it names (table, set…) does not exist. */
function dumpUnlessMissing(
  sock: NetlinkSocket,
  cmd: number,
  family: number,
  attrs: Attr[],
  op: string,
): NlMsg[] | undefined {
  try {
    return sock.dump(msgType(cmd), nfgenmsg(family), attrs, op);
  } catch (err) {
    if (err instanceof SysError && err.code === "ENOENT") return undefined;
    throw err;
  }
}

export function nftTableExists(sock: NetlinkSocket, family: number, table: string): boolean {
  return (
    sock.get(
      msgType(NFT_MSG_GETTABLE),
      nfgenmsg(family),
      [attr.str(NFTA_TABLE_NAME, table)],
      `looking up nft table ${table}`,
    ) !== undefined
  );
}

export function nftChainExists(sock: NetlinkSocket, family: number, table: string, chain: string): boolean {
  return (
    sock.get(
      msgType(NFT_MSG_GETCHAIN),
      nfgenmsg(family),
      [attr.str(NFTA_CHAIN_TABLE, table), attr.str(NFTA_CHAIN_NAME, chain)],
      `looking up nft chain ${table} ${chain}`,
    ) !== undefined
  );
}

/** The names of a table's sets and maps; undefined when the table does not exist. */
export function nftListSets(sock: NetlinkSocket, family: number, table: string): string[] | undefined {
  if (!nftTableExists(sock, family, table)) return undefined;
  const msgs = sock.dump(
    msgType(NFT_MSG_GETSET),
    nfgenmsg(family),
    [attr.str(NFTA_SET_TABLE, table)],
    `listing the sets of nft table ${table}`,
  );
  const out: string[] = [];
  for (const m of msgs) {
    const attrs = parseAttrs(m.data.subarray(4));
    const t = attrs.get(NFTA_SET_TABLE);
    const name = attrs.get(NFTA_SET_NAME);
    if (name && t && read.str(t) === table) out.push(read.str(name));
  }
  return out;
}

/** A set's (or map's) elements; undefined when the table or the set does not exist. */
export function nftListElems(
  sock: NetlinkSocket,
  family: number,
  table: string,
  set: string,
): NftSetElem[] | undefined {
  const msgs = dumpUnlessMissing(
    sock,
    NFT_MSG_GETSETELEM,
    family,
    [attr.str(NFTA_SET_ELEM_LIST_TABLE, table), attr.str(NFTA_SET_ELEM_LIST_SET, set)],
    `listing the elements of nft set ${table} ${set}`,
  );
  if (!msgs) return undefined;
  const out: NftSetElem[] = [];
  for (const m of msgs) {
    const list = parseAttrs(m.data.subarray(4)).get(NFTA_SET_ELEM_LIST_ELEMENTS);
    if (!list) continue;
    for (const item of parseAttrList(list)) {
      if (item.type === NFTA_LIST_ELEM) out.push(decodeElem(item.value));
    }
  }
  return out;
}

function dataValue(nest: Uint8Array | undefined): Uint8Array | undefined {
  return nest && parseAttrs(nest).get(NFTA_DATA_VALUE)?.slice();
}

function decodeElem(b: Uint8Array): NftSetElem {
  const a = parseAttrs(b);
  const e: NftSetElem = { key: dataValue(a.get(NFTA_SET_ELEM_KEY)) ?? new Uint8Array(0) };
  const keyEnd = dataValue(a.get(NFTA_SET_ELEM_KEY_END));
  if (keyEnd) e.keyEnd = keyEnd;
  const data = dataValue(a.get(NFTA_SET_ELEM_DATA));
  if (data) e.data = data;
  const flags = a.get(NFTA_SET_ELEM_FLAGS);
  if (flags) e.flags = read.be32(flags);
  const udata = a.get(NFTA_SET_ELEM_USERDATA);
  const comment = udata && userDataComment(udata);
  if (comment !== undefined) e.comment = comment;
  return e;
}

/** The comment TLV of libnftnl's user data: [type u8][len u8][value], the value NUL-terminated. */
function userDataComment(b: Uint8Array): string | undefined {
  for (let off = 0; off + 2 <= b.length; ) {
    const type = b[off]!;
    const len = b[off + 1]!;
    const value = b.subarray(off + 2, off + 2 + len);
    if (type === NFTNL_UDATA_SET_ELEM_COMMENT) {
      const end = value.indexOf(0);
      return new TextDecoder().decode(end < 0 ? value : value.subarray(0, end));
    }
    off += 2 + len;
  }
  return undefined;
}

function commentUserData(comment: string): Uint8Array {
  const text = new TextEncoder().encode(comment);
  // nft caps comments at 128 bytes; the TLV length is one byte (value + NUL).
  if (text.length > 254) throw new SysError(`nft element comment too long (${text.length} bytes)`, 22);
  const out = new Uint8Array(2 + text.length + 1);
  out[0] = NFTNL_UDATA_SET_ELEM_COMMENT;
  out[1] = text.length + 1;
  out.set(text, 2);
  return out;
}

function encodeElem(e: NftSetElem, withExtras: boolean): Attr {
  const value = (type: number, bytes: Uint8Array) =>
    attr.nested(type, [attr.bytes(NFTA_DATA_VALUE, bytes)], true);
  const parts: Attr[] = [value(NFTA_SET_ELEM_KEY, e.key)];
  if (e.keyEnd) parts.push(value(NFTA_SET_ELEM_KEY_END, e.keyEnd));
  if (e.data) parts.push(value(NFTA_SET_ELEM_DATA, e.data));
  if (e.flags) parts.push(attr.be32(NFTA_SET_ELEM_FLAGS, e.flags));
  if (withExtras && e.comment !== undefined) {
    parts.push(attr.bytes(NFTA_SET_ELEM_USERDATA, commentUserData(e.comment)));
  }
  return attr.nested(NFTA_LIST_ELEM, parts, true);
}

/** A chain's rules; none when the table or the chain does not exist (the dump filter just matches nothing). */
export function nftListRules(sock: NetlinkSocket, family: number, table: string, chain: string): NftRule[] {
  const msgs =
    dumpUnlessMissing(
      sock,
      NFT_MSG_GETRULE,
      family,
      [attr.str(NFTA_RULE_TABLE, table), attr.str(NFTA_RULE_CHAIN, chain)],
      `listing the rules of nft chain ${table} ${chain}`,
    ) ?? [];
  const out: NftRule[] = [];
  for (const m of msgs) {
    const a = parseAttrs(m.data.subarray(4));
    const c = a.get(NFTA_RULE_CHAIN);
    const t = a.get(NFTA_RULE_TABLE);
    if (!c || !t || read.str(c) !== chain || read.str(t) !== table) continue;
    const rule: NftRule = { handle: 0n, exprs: [], sets: [] };
    const handle = a.get(NFTA_RULE_HANDLE);
    if (handle) rule.handle = structView(handle).getBigUint64(0, false);
    for (const item of parseAttrList(a.get(NFTA_RULE_EXPRESSIONS) ?? new Uint8Array(0))) {
      if (item.type !== NFTA_LIST_ELEM) continue;
      const ea = parseAttrs(item.value);
      const name = ea.get(NFTA_EXPR_NAME);
      if (!name) continue;
      const exprName = read.str(name);
      rule.exprs.push(exprName);
      const data = ea.get(NFTA_EXPR_DATA);
      if ((exprName === "lookup" || exprName === "dynset") && data) {
        const set = parseAttrs(data).get(NFTA_LOOKUP_SET);
        if (set) rule.sets.push(read.str(set));
      }
    }
    out.push(rule);
  }
  return out;
}

/**
 * Applies element changes of one table as ONE transaction: all or nothing. `add` does not replace an
 * element whose key exists with another value: the kernel refuses (EEXIST), which aborts the batch —
 * callers build compare-and-delete from it ("add {k : v}; delete {k}"). Deleting a missing element
 * aborts with ENOENT. Errors are SysErrors naming `op`.
 */
export function nftCommitElems(
  sock: NetlinkSocket,
  family: number,
  table: string,
  changes: readonly NftElemChange[],
  op: string,
): void {
  const msgs = changes
    .filter((c) => c.elems.length > 0)
    .map((c) => ({
      type: msgType(c.kind === "add" ? NFT_MSG_NEWSETELEM : NFT_MSG_DELSETELEM),
      flags: NLM_F_ACK | (c.kind === "add" ? NLM_F_CREATE : 0),
      header: nfgenmsg(family),
      attrs: [
        attr.str(NFTA_SET_ELEM_LIST_TABLE, table),
        attr.str(NFTA_SET_ELEM_LIST_SET, c.set),
        attr.nested(
          NFTA_SET_ELEM_LIST_ELEMENTS,
          c.elems.map((e) => encodeElem(e, c.kind === "add")),
          true,
        ),
      ],
    }));
  if (msgs.length === 0) return;
  const batchMark = (type: number) => ({
    type,
    flags: 0,
    header: nfgenmsg(0, NFNL_SUBSYS_NFTABLES),
    attrs: [],
  });
  sock.batch([batchMark(NFNL_MSG_BATCH_BEGIN), ...msgs, batchMark(NFNL_MSG_BATCH_END)], op);
}
