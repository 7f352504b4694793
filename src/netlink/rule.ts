/**
 * Policy routing rules (vishvananda/netlink rule_linux.go): add, delete, list — what the sbr plugin needs.
 */

import { afOf, formatCidr, type IpVersion, invalid, maskBytes, parseCidr, versionOfAf } from "./addr.ts";
import { type Attr, attr, NLM_F_CREATE, NLM_F_EXCL, parseAttrs, read, struct, structView } from "./codec.ts";
import type { NetlinkSocket } from "./socket.ts";

export const RTM_NEWRULE = 32;
export const RTM_DELRULE = 33;
export const RTM_GETRULE = 34;

const FRA_DST = 1;
const FRA_SRC = 2;
const FRA_IIFNAME = 3;
const FRA_PRIORITY = 6;
const FRA_FWMARK = 10;
const FRA_TABLE = 15;
const FRA_FWMASK = 16;
const FRA_OIFNAME = 17;

const FR_ACT_TO_TBL = 1;
const FIB_RULE_INVERT = 0x2;

export interface RuleOptions {
  version: IpVersion;
  /** Rule preference; the kernel picks one below the previous rule when left out on add. */
  priority?: number;
  /** Lookup table; required on add. */
  table?: number;
  /** Source / destination prefixes ("192.168.1.0/24"). */
  src?: string;
  dst?: string;
  iifname?: string;
  oifname?: string;
  /** fwmark, and the mask it is compared under. */
  mark?: number;
  mask?: number;
  /** `ip rule add not …`. */
  invert?: boolean;
}

export interface RuleInfo {
  version: IpVersion;
  /** 0 for the rule without a preference (the local-table rule). */
  priority: number;
  table: number;
  /** FR_ACT_* (1 = lookup table). */
  action: number;
  src?: string;
  dst?: string;
  iifname?: string;
  oifname?: string;
  mark?: number;
  mask?: number;
  invert: boolean;
}

function ruleOp(verb: string, o: RuleOptions): string {
  const parts = [`${verb} IPv${o.version} rule`];
  if (o.priority !== undefined) parts.push(`priority ${o.priority}`);
  if (o.invert) parts.push("not");
  if (o.src) parts.push(`from ${o.src}`);
  if (o.dst) parts.push(`to ${o.dst}`);
  if (o.iifname) parts.push(`iif ${o.iifname}`);
  if (o.oifname) parts.push(`oif ${o.oifname}`);
  if (o.mark !== undefined) parts.push(`fwmark ${o.mark}`);
  if (o.table !== undefined) parts.push(`table ${o.table}`);
  return parts.join(" ");
}

function prefix(cidr: string, version: IpVersion, op: string): { bytes: Uint8Array; len: number } {
  const p = parseCidr(cidr, op);
  if (p.version !== version) throw invalid(op, `${cidr} is not an IPv${version} prefix`);
  return { bytes: maskBytes(p.bytes, p.prefixLen), len: p.prefixLen };
}

function ruleMessage(o: RuleOptions, op: string, add: boolean): { header: Uint8Array; attrs: Attr[] } {
  if (add && o.table === undefined) throw invalid(op, "a rule needs a table");
  const attrs: Attr[] = [];
  const src = o.src === undefined ? undefined : prefix(o.src, o.version, op);
  const dst = o.dst === undefined ? undefined : prefix(o.dst, o.version, op);
  if (dst) attrs.push(attr.bytes(FRA_DST, dst.bytes));
  if (src) attrs.push(attr.bytes(FRA_SRC, src.bytes));
  if (o.priority !== undefined) attrs.push(attr.u32(FRA_PRIORITY, o.priority));
  if (o.mark !== undefined) attrs.push(attr.u32(FRA_FWMARK, o.mark));
  if (o.mask !== undefined) attrs.push(attr.u32(FRA_FWMASK, o.mask));
  if (o.iifname !== undefined) attrs.push(attr.str(FRA_IIFNAME, o.iifname));
  if (o.oifname !== undefined) attrs.push(attr.str(FRA_OIFNAME, o.oifname));
  // The header's table is one byte: tables above 255 go only in FRA_TABLE (as vishvananda).
  if (o.table !== undefined) attrs.push(attr.u32(FRA_TABLE, o.table));
  const header = struct(12, (v) => {
    v.setUint8(0, afOf(o.version));
    v.setUint8(1, dst?.len ?? 0);
    v.setUint8(2, src?.len ?? 0);
    v.setUint8(4, o.table !== undefined && o.table < 256 ? o.table : 0);
    // A delete without a table matches any action.
    v.setUint8(7, o.table !== undefined ? FR_ACT_TO_TBL : 0);
    v.setUint32(8, o.invert ? FIB_RULE_INVERT : 0, true);
  });
  return { header, attrs };
}

/** `ip rule add`: EEXIST if an identical rule exists. */
export function ruleAdd(sock: NetlinkSocket, o: RuleOptions): void {
  const op = ruleOp("adding", o);
  const { header, attrs } = ruleMessage(o, op, true);
  sock.request(RTM_NEWRULE, NLM_F_CREATE | NLM_F_EXCL, header, attrs, op);
}

/** `ip rule del`: deletes the first rule matching what is given; ENOENT if none does. */
export function ruleDel(sock: NetlinkSocket, o: RuleOptions): void {
  const op = ruleOp("deleting", o);
  const { header, attrs } = ruleMessage(o, op, false);
  sock.request(RTM_DELRULE, 0, header, attrs, op);
}

/** `ip rule show` for one IP version. */
export function ruleList(sock: NetlinkSocket, version: IpVersion): RuleInfo[] {
  const header = struct(12, (v) => v.setUint8(0, afOf(version)));
  const out: RuleInfo[] = [];
  for (const m of sock.dump(RTM_GETRULE, header, [], `listing IPv${version} rules`)) {
    if (m.type !== RTM_NEWRULE) continue;
    const h = structView(m.data);
    const v = versionOfAf(h.getUint8(0));
    if (v !== version) continue;
    const attrs = parseAttrs(m.data.subarray(12));
    const table = attrs.get(FRA_TABLE);
    const prio = attrs.get(FRA_PRIORITY);
    const r: RuleInfo = {
      version: v,
      priority: prio ? read.u32(prio) : 0,
      table: table ? read.u32(table) : h.getUint8(4),
      action: h.getUint8(7),
      invert: (h.getUint32(8, true) & FIB_RULE_INVERT) !== 0,
    };
    const dst = attrs.get(FRA_DST);
    if (dst) r.dst = formatCidr(dst, h.getUint8(1));
    const src = attrs.get(FRA_SRC);
    if (src) r.src = formatCidr(src, h.getUint8(2));
    const iif = attrs.get(FRA_IIFNAME);
    if (iif) r.iifname = read.str(iif);
    const oif = attrs.get(FRA_OIFNAME);
    if (oif) r.oifname = read.str(oif);
    const mark = attrs.get(FRA_FWMARK);
    if (mark) r.mark = read.u32(mark);
    const mask = attrs.get(FRA_FWMASK);
    if (mask) r.mask = read.u32(mask);
    out.push(r);
  }
  return out;
}
