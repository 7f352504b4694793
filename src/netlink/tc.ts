/**
 * Traffic control (vishvananda/netlink qdisc_linux.go, class_linux.go), the parts the bandwidth plugin
 * needs: tc handles, tbf, ingress and htb qdiscs, htb classes. Filters are in tc-filter.ts.
 *
 * Units are the kernel's: rates in BYTES per second, tbf/htb buffers in psched ticks, limits in bytes.
 * `tbfParams` converts upstream bandwidth's bits/s + burst bits into those units exactly like upstream.
 */
import { readFile } from "../sys/fs.ts";
import { invalid, linkName } from "./addr.ts";
import {
  type Attr,
  attr,
  NLM_F_CREATE,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  type NlMsg,
  parseAttrs,
  read,
  struct,
  structView,
} from "./codec.ts";
import type { NetlinkSocket } from "./socket.ts";

export const RTM_NEWQDISC = 36;
export const RTM_DELQDISC = 37;
export const RTM_GETQDISC = 38;
export const RTM_NEWTCLASS = 40;
export const RTM_DELTCLASS = 41;

export const TCA_KIND = 1;
export const TCA_OPTIONS = 2;
const TCA_TBF_PARMS = 1;
const TCA_TBF_RATE64 = 4;
const TCA_HTB_PARMS = 1;
const TCA_HTB_INIT = 2;
const TCA_HTB_RATE64 = 6;
const TCA_HTB_CEIL64 = 7;

export const TC_H_ROOT = 0xffffffff;
export const TC_H_INGRESS = 0xfffffff1;
/** A tc handle: a number, or "1:", "1:10", "ffff:", "root", "ingress". */
export type Handle = number | string;

export function parseHandle(h: Handle): number {
  if (typeof h === "number") return h >>> 0;
  if (h === "root") return TC_H_ROOT;
  if (h === "ingress") return TC_H_INGRESS;
  if (h === "none") return 0;
  const m = /^([0-9a-fA-F]{0,4}):([0-9a-fA-F]{0,4})$/.exec(h);
  if (!m) throw invalid(`parsing tc handle ${JSON.stringify(h)}`, "expected MAJOR:MINOR in hex");
  return ((Number.parseInt(m[1] || "0", 16) << 16) | Number.parseInt(m[2] || "0", 16)) >>> 0;
}

/** "1:", "1:a", "ffff:fff1", "root" — like tc prints them. */
export function formatHandle(h: number): string {
  if (h === TC_H_ROOT) return "root";
  const min = h & 0xffff;
  return `${(h >>> 16).toString(16)}:${min ? min.toString(16) : ""}`;
}

// ---- psched clock (vishvananda initClock) ----

interface Clock {
  tickInUsec: number;
  hz: number;
}
let clock: Clock | undefined;

/** /proc/net/psched: ticks per microsecond and HZ, for converting times to the kernel's ticks. */
function psched(): Clock {
  if (clock) return clock;
  clock = { tickInUsec: 1, hz: 100 };
  try {
    const v = readFile("/proc/net/psched", "utf8")
      .trim()
      .split(/\s+/)
      .map((x) => Number.parseInt(x, 16));
    let [t2us = 1, us2t = 1, res = 1e6, hz = 100] = v;
    if (res === 1e9) t2us = us2t; // compatibility with old kernels, as iproute2
    clock = { tickInUsec: (t2us / us2t) * (res / 1e6), hz: res === 1e6 ? hz : 100 };
  } catch {
    // no /proc/net/psched: keep 1 tick per microsecond, like vishvananda without it
  }
  return clock;
}

const TIME_UNITS_PER_SEC = 1e6;

function time2Tick(usec: number): number {
  return Math.trunc(usec * psched().tickInUsec) >>> 0;
}

/** Ticks to send `size` bytes at `rate` bytes/s (vishvananda Xmittime). */
function xmitTime(rate: number, size: number): number {
  return time2Tick(Math.trunc((TIME_UNITS_PER_SEC * size) / rate) >>> 0);
}

export interface TbfParams {
  /** Bytes per second. */
  rate: number;
  /** Psched ticks. */
  buffer: number;
  /** Bytes. */
  limit: number;
}

/**
 * Upstream bandwidth's createTBF arithmetic: rate and burst in bits, latency 25 ms by default.
 * Note that upstream computes the limit from the burst in bytes, not from the buffer.
 */
export function tbfParams(o: { rateBits: number; burstBits: number; latencyMs?: number }): TbfParams {
  const rate = Math.floor(o.rateBits / 8);
  const burst = Math.floor(o.burstBits / 8) >>> 0;
  if (!(rate > 0)) throw invalid("computing tbf parameters", `invalid rate: ${o.rateBits}`);
  if (!(burst > 0)) throw invalid("computing tbf parameters", `invalid burst: ${o.burstBits}`);
  const latencyUsec = TIME_UNITS_PER_SEC * ((o.latencyMs ?? 25) / 1000);
  return {
    rate,
    buffer: xmitTime(rate, burst),
    limit: ((Math.trunc((rate * latencyUsec) / TIME_UNITS_PER_SEC) >>> 0) + burst) >>> 0,
  };
}

// ---- messages ----

export function tcmsg(index: number, handle: number, parent: number, info = 0): Uint8Array {
  return struct(20, (v) => {
    v.setInt32(4, index, true);
    v.setUint32(8, handle, true);
    v.setUint32(12, parent, true);
    v.setUint32(16, info, true);
  });
}

/** tc_ratespec: only the rate is set (no rate table; the kernel computes its own). */
function ratespec(v: DataView, off: number, rate: number): void {
  v.setUint32(off + 8, Math.min(rate, 0xffffffff), true);
}

export interface TcObject {
  index: number;
  /** Name of the link, used only in error messages. */
  devName?: string;
}

export type QdiscOptions = TcObject & {
  /** Default: kernel-chosen (ingress: "ffff:"). */
  handle?: Handle;
  /** Default "root" (ingress: "ingress"). */
  parent?: Handle;
} & (
    | { kind: "tbf"; rate: number; buffer: number; limit: number }
    | { kind: "ingress" }
    | { kind: "htb"; defcls?: number; r2q?: number }
  );

function qdiscMessage(o: QdiscOptions): { header: Uint8Array; attrs: Attr[] } {
  const ingress = o.kind === "ingress";
  const handle = parseHandle(o.handle ?? (ingress ? "ffff:" : 0));
  const parent = parseHandle(o.parent ?? (ingress ? "ingress" : "root"));
  const attrs: Attr[] = [attr.str(TCA_KIND, o.kind)];
  if (o.kind === "tbf") {
    const parms = struct(36, (v) => {
      ratespec(v, 0, o.rate);
      v.setUint32(24, o.limit, true);
      v.setUint32(28, o.buffer, true);
    });
    const opts: Attr[] = [attr.bytes(TCA_TBF_PARMS, parms)];
    if (o.rate >= 2 ** 32) opts.push(attr.u64(TCA_TBF_RATE64, o.rate));
    attrs.push(attr.nested(TCA_OPTIONS, opts));
  } else if (o.kind === "htb") {
    const glob = struct(20, (v) => {
      v.setUint32(0, 3, true); // HTB protocol version
      v.setUint32(4, o.r2q ?? 10, true);
      v.setUint32(8, o.defcls ?? 0, true);
    });
    attrs.push(attr.nested(TCA_OPTIONS, [attr.bytes(TCA_HTB_INIT, glob)]));
  }
  return { header: tcmsg(o.index, handle, parent), attrs };
}

function qdiscOp(
  verb: string,
  o: { kind?: string; index: number; devName?: string; handle?: Handle },
): string {
  const h = o.handle === undefined ? "" : ` ${formatHandle(parseHandle(o.handle))}`;
  return `${verb} ${o.kind ?? ""} qdisc${h} ${verb === "deleting" ? "from" : "on"} ${linkName(o.index, o.devName)}`.replace(
    /\s+/g,
    " ",
  );
}

/** `tc qdisc add`: EEXIST if the parent already has a qdisc of its own. */
export function qdiscAdd(sock: NetlinkSocket, o: QdiscOptions): void {
  const op = qdiscOp("adding", o);
  const { header, attrs } = qdiscMessage(o);
  sock.request(RTM_NEWQDISC, NLM_F_CREATE | NLM_F_EXCL, header, attrs, op);
}

/** `tc qdisc replace`. */
export function qdiscReplace(sock: NetlinkSocket, o: QdiscOptions): void {
  const op = qdiscOp("replacing", o);
  const { header, attrs } = qdiscMessage(o);
  sock.request(RTM_NEWQDISC, NLM_F_CREATE | NLM_F_REPLACE, header, attrs, op);
}

export interface QdiscDelOptions extends TcObject {
  /** "root" (default), "ingress" or a class. */
  parent?: Handle;
  handle?: Handle;
}

/** `tc qdisc del`: ENOENT if there is none (the default qdisc cannot be deleted either). */
export function qdiscDel(sock: NetlinkSocket, o: QdiscDelOptions): void {
  const op = qdiscOp("deleting", o);
  const header = tcmsg(o.index, parseHandle(o.handle ?? 0), parseHandle(o.parent ?? "root"));
  sock.request(RTM_DELQDISC, 0, header, [], op);
}

export interface QdiscInfo {
  index: number;
  kind: string;
  handle: number;
  parent: number;
  tbf?: TbfParams;
  htb?: { defcls: number; r2q: number; version: number };
}

/** `tc qdisc show`, optionally of one link. */
export function qdiscList(sock: NetlinkSocket, index?: number): QdiscInfo[] {
  const out: QdiscInfo[] = [];
  for (const m of sock.dump(RTM_GETQDISC, tcmsg(0, 0, 0), [], "listing qdiscs")) {
    if (m.type !== RTM_NEWQDISC) continue;
    const q = parseQdisc(m);
    if (index === undefined || q.index === index) out.push(q);
  }
  return out;
}

function parseQdisc(m: NlMsg): QdiscInfo {
  const h = structView(m.data);
  const attrs = parseAttrs(m.data.subarray(20));
  const kind = read.str(attrs.get(TCA_KIND) ?? new Uint8Array());
  const q: QdiscInfo = {
    index: h.getInt32(4, true),
    kind,
    handle: h.getUint32(8, true),
    parent: h.getUint32(12, true),
  };
  const opts = parseAttrs(attrs.get(TCA_OPTIONS) ?? new Uint8Array());
  const tbf = opts.get(TCA_TBF_PARMS);
  if (kind === "tbf" && tbf && tbf.byteLength >= 36) {
    const v = structView(tbf);
    const rate64 = opts.get(TCA_TBF_RATE64);
    q.tbf = {
      rate: rate64 ? Number(read.u64(rate64)) : v.getUint32(8, true),
      limit: v.getUint32(24, true),
      buffer: v.getUint32(28, true),
    };
  }
  const htb = opts.get(TCA_HTB_INIT);
  if (kind === "htb" && htb && htb.byteLength >= 12) {
    const v = structView(htb);
    q.htb = { version: v.getUint32(0, true), r2q: v.getUint32(4, true), defcls: v.getUint32(8, true) };
  }
  return q;
}

// ---- htb classes ----

export interface HtbClassOptions extends TcObject {
  parent: Handle;
  classid: Handle;
  /** Bytes per second. */
  rate: number;
  /** Bytes per second; default the rate. */
  ceil?: number;
  /** Bytes that may be sent at once at rate / ceil; default rate/HZ + 1600 (vishvananda NewHtbClass). */
  burst?: number;
  cburst?: number;
  prio?: number;
  quantum?: number;
}

function htbClassMessage(o: HtbClassOptions): { header: Uint8Array; attrs: Attr[] } {
  const ceil = o.ceil ?? o.rate;
  const { hz } = psched();
  const mtu = 1600;
  const buffer = xmitTime(o.rate, o.burst ?? Math.trunc(o.rate / hz + mtu));
  const cbuffer = xmitTime(ceil, o.cburst ?? Math.trunc(ceil / hz + mtu));
  const parms = struct(44, (v) => {
    ratespec(v, 0, o.rate);
    ratespec(v, 12, ceil);
    v.setUint32(24, buffer, true);
    v.setUint32(28, cbuffer, true);
    v.setUint32(32, o.quantum ?? 0, true);
    v.setUint32(40, o.prio ?? 0, true);
  });
  const opts: Attr[] = [attr.bytes(TCA_HTB_PARMS, parms)];
  if (o.rate >= 2 ** 32) opts.push(attr.u64(TCA_HTB_RATE64, o.rate));
  if (ceil >= 2 ** 32) opts.push(attr.u64(TCA_HTB_CEIL64, ceil));
  return {
    header: tcmsg(o.index, parseHandle(o.classid), parseHandle(o.parent)),
    attrs: [attr.str(TCA_KIND, "htb"), attr.nested(TCA_OPTIONS, opts)],
  };
}

function classOp(verb: string, o: { classid: Handle; index: number; devName?: string }): string {
  const id = formatHandle(parseHandle(o.classid));
  return `${verb} class ${id} ${verb === "deleting" ? "from" : "on"} ${linkName(o.index, o.devName)}`;
}

/** `tc class add … htb`. */
export function classAddHtb(sock: NetlinkSocket, o: HtbClassOptions): void {
  const { header, attrs } = htbClassMessage(o);
  sock.request(RTM_NEWTCLASS, NLM_F_CREATE | NLM_F_EXCL, header, attrs, classOp("adding htb", o));
}

/** `tc class replace … htb`. */
export function classReplaceHtb(sock: NetlinkSocket, o: HtbClassOptions): void {
  const { header, attrs } = htbClassMessage(o);
  sock.request(RTM_NEWTCLASS, NLM_F_CREATE | NLM_F_REPLACE, header, attrs, classOp("replacing htb", o));
}

export function classDel(sock: NetlinkSocket, o: TcObject & { classid: Handle; parent?: Handle }): void {
  const header = tcmsg(o.index, parseHandle(o.classid), parseHandle(o.parent ?? 0));
  sock.request(RTM_DELTCLASS, 0, header, [], classOp("deleting", o));
}
