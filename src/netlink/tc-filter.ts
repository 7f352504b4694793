/**
 * Traffic control filters (vishvananda/netlink filter_linux.go): the u32 match-all filter with a mirred
 * redirect that upstream bandwidth hangs off a link's ingress qdisc to send its traffic through an ifb.
 */
import { invalid, linkName } from "./addr.ts";
import {
  attr,
  NLM_F_CREATE,
  NLM_F_EXCL,
  parseAttrList,
  parseAttrs,
  read,
  struct,
  structView,
} from "./codec.ts";
import type { NetlinkSocket } from "./socket.ts";
import { formatHandle, type Handle, parseHandle, TCA_KIND, TCA_OPTIONS, type TcObject, tcmsg } from "./tc.ts";

export const RTM_NEWTFILTER = 44;
export const RTM_DELTFILTER = 45;
export const RTM_GETTFILTER = 46;

const TCA_U32_CLASSID = 1;
const TCA_U32_SEL = 5;
const TCA_U32_ACT = 7;
const TCA_ACT_KIND = 1;
const TCA_ACT_OPTIONS = 2;
const TCA_MIRRED_PARMS = 2;
const TC_U32_TERMINAL = 1;

/** Mirred directions (TCA_*_REDIR / _MIRROR). */
export const MIRRED = { egressRedirect: 1, egressMirror: 2, ingressRedirect: 3, ingressMirror: 4 } as const;
/** Control actions (TC_ACT_*): what happens to the packet after an action. */
export const TC_ACT = { unspec: -1, pass: 0, reclassify: 1, shot: 2, pipe: 3, stolen: 4 } as const;
export type TcActName = keyof typeof TC_ACT;
/** Ethernet protocols for filters. */
export const ETH_P = { all: 0x0003, ip: 0x0800, arp: 0x0806, ipv6: 0x86dd } as const;

export type FilterProtocol = keyof typeof ETH_P | number;

function protocolNumber(p: FilterProtocol, op: string): number {
  if (typeof p === "number") return p;
  const n = ETH_P[p];
  if (n === undefined) throw invalid(op, `unknown protocol ${JSON.stringify(p)}`);
  return n;
}

/** tcm_info of a filter: priority in the high half, protocol in network order in the low half. */
function filterInfo(priority: number, protocol: number): number {
  return ((priority << 16) | ((protocol & 0xff) << 8) | (protocol >> 8)) >>> 0;
}

export interface MirredFilterOptions extends TcObject {
  /** The qdisc the filter hangs off, e.g. "ffff:" (ingress). */
  parent: Handle;
  /** Link that receives the packets (an ifb). */
  redirectToIndex: number;
  /** Default "all". */
  protocol?: FilterProtocol;
  /** Default 1. */
  priority?: number;
  /** Default "1:1", as upstream bandwidth. */
  classId?: Handle;
  /**
   * One mirred egress-redirect action per entry, with that control action. Default ["stolen"].
   * Upstream bandwidth installs two — ["stolen", "pass"] — because vishvananda prepends a mirred for
   * RedirIndex to the explicit one; pass that to leave the same filter as upstream.
   */
  controls?: TcActName[];
}

/**
 * `tc filter add dev X parent ffff: protocol all prio 1 u32 match u32 0 0 flowid 1:1
 *  action mirred egress redirect dev IFB`: every packet entering X leaves through the ifb.
 */
export function filterAddU32MatchAllMirred(sock: NetlinkSocket, o: MirredFilterOptions): void {
  const op = `adding u32 mirred filter redirecting ${linkName(o.index, o.devName)} to ifindex ${o.redirectToIndex}`;
  const protocol = protocolNumber(o.protocol ?? "all", op);
  // tc_u32_sel with one all-zero key (match anything), terminal.
  const sel = struct(32, (v) => {
    v.setUint8(0, TC_U32_TERMINAL);
    v.setUint8(2, 1);
  });
  const actions = (o.controls ?? ["stolen"]).map((control, i) => {
    const parms = struct(28, (v) => {
      v.setInt32(8, TC_ACT[control], true);
      v.setInt32(20, MIRRED.egressRedirect, true);
      v.setUint32(24, o.redirectToIndex, true);
    });
    return attr.nested(i + 1, [
      attr.str(TCA_ACT_KIND, "mirred"),
      attr.nested(TCA_ACT_OPTIONS, [attr.bytes(TCA_MIRRED_PARMS, parms)]),
    ]);
  });
  const options = attr.nested(TCA_OPTIONS, [
    attr.bytes(TCA_U32_SEL, sel),
    attr.u32(TCA_U32_CLASSID, parseHandle(o.classId ?? "1:1")),
    attr.nested(TCA_U32_ACT, actions),
  ]);
  const header = tcmsg(o.index, 0, parseHandle(o.parent), filterInfo(o.priority ?? 1, protocol));
  sock.request(RTM_NEWTFILTER, NLM_F_CREATE | NLM_F_EXCL, header, [attr.str(TCA_KIND, "u32"), options], op);
}

export interface FilterDelOptions extends TcObject {
  parent: Handle;
  /** Deletes every filter of this priority (and protocol); both left out: every filter of the parent. */
  priority?: number;
  protocol?: FilterProtocol;
  handle?: Handle;
  kind?: string;
}

/** `tc filter del`. */
export function filterDel(sock: NetlinkSocket, o: FilterDelOptions): void {
  const op = `deleting filters of ${formatHandle(parseHandle(o.parent))} on ${linkName(o.index, o.devName)}`;
  const protocol = o.protocol === undefined ? 0 : protocolNumber(o.protocol, op);
  const header = tcmsg(
    o.index,
    parseHandle(o.handle ?? 0),
    parseHandle(o.parent),
    filterInfo(o.priority ?? 0, protocol),
  );
  sock.request(RTM_DELTFILTER, 0, header, o.kind ? [attr.str(TCA_KIND, o.kind)] : [], op);
}

export interface TcActionInfo {
  kind: string;
  /** Present for mirred actions. */
  mirred?: { direction: number; ifindex: number; control: number };
}

export interface FilterInfo {
  index: number;
  parent: number;
  handle: number;
  priority: number;
  /** Ethernet protocol, host order (ETH_P.all = 3). */
  protocol: number;
  kind: string;
  /** u32 filters that have a selector (not the hash-table entries the kernel also lists). */
  u32?: { classId: number; flags: number; keys: { mask: number; val: number; off: number }[] };
  actions: TcActionInfo[];
}

/** `tc filter show dev X parent P`. */
export function filterList(sock: NetlinkSocket, index: number, parent: Handle): FilterInfo[] {
  const p = parseHandle(parent);
  const op = `listing filters of ${formatHandle(p)} on ifindex ${index}`;
  const out: FilterInfo[] = [];
  for (const m of sock.dump(RTM_GETTFILTER, tcmsg(index, 0, p), [], op)) {
    if (m.type !== RTM_NEWTFILTER) continue;
    const h = structView(m.data);
    const info = h.getUint32(16, true);
    const attrs = parseAttrs(m.data.subarray(20));
    const f: FilterInfo = {
      index: h.getInt32(4, true),
      handle: h.getUint32(8, true),
      parent: h.getUint32(12, true),
      priority: info >>> 16,
      protocol: ((info & 0xff) << 8) | ((info >> 8) & 0xff),
      kind: read.str(attrs.get(TCA_KIND) ?? new Uint8Array()),
      actions: [],
    };
    const opts = parseAttrs(attrs.get(TCA_OPTIONS) ?? new Uint8Array());
    const sel = opts.get(TCA_U32_SEL);
    if (f.kind === "u32" && sel && sel.byteLength >= 16) {
      const v = structView(sel);
      const keys = [];
      for (let k = 0; k < v.getUint8(2) && 16 + k * 16 + 16 <= sel.byteLength; k++) {
        const o = 16 + k * 16;
        keys.push({
          mask: v.getUint32(o, false),
          val: v.getUint32(o + 4, false),
          off: v.getInt32(o + 8, true),
        });
      }
      const classId = opts.get(TCA_U32_CLASSID);
      f.u32 = { classId: classId ? read.u32(classId) : 0, flags: v.getUint8(0), keys };
    }
    const acts = opts.get(TCA_U32_ACT);
    if (acts) f.actions = parseActions(acts);
    out.push(f);
  }
  return out;
}

function parseActions(b: Uint8Array): TcActionInfo[] {
  return parseAttrList(b).map((a) => {
    const act = parseAttrs(a.value);
    const info: TcActionInfo = { kind: read.str(act.get(TCA_ACT_KIND) ?? new Uint8Array()) };
    const parms = parseAttrs(act.get(TCA_ACT_OPTIONS) ?? new Uint8Array()).get(TCA_MIRRED_PARMS);
    if (info.kind === "mirred" && parms && parms.byteLength >= 28) {
      const v = structView(parms);
      info.mirred = {
        control: v.getInt32(8, true),
        direction: v.getInt32(20, true),
        ifindex: v.getUint32(24, true),
      };
    }
    return info;
  });
}
