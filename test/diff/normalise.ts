/**
 * Makes a run's output comparable across implementations and runs: removes what is random or
 * timing-dependent, and orders what the kernel lists in creation order.
 *
 *   makeNormaliser(ctx) → (value) => value   string rewrites + key drops, deep
 *   normaliseState(state, n) → NState         sorted sections, firewall reduced to its rules
 *   normaliseOutcome(outcome, n)              the result JSON, or {code, msg} of a failure
 *
 * Random: MACs (unless the case itself names them), veth names `veth[0-9a-f]{8}`, hash-named chains
 * and ifbs, link-local IPv6 addresses (derived from the random MAC), netns paths, temp dirs, the
 * container id. Timing: life times, bridge timers, IPv6 `tentative`, firewall counters and handles.
 * Kernel numbering: ifindex and peer indexes (they depend on the order links were made and moved).
 */
import type { Outcome } from "./driver.ts";
import type { FirewallState, SideState, State } from "./state.ts";

export interface NormaliseContext {
  containerID: string;
  /** Container netns name (its /var/run/netns path appears in results as `sandbox`). */
  ctrNetns: string;
  /** Per-run dirs (temp dir, CNI_PATH dirs): they show up in messages. */
  tempDirs: string[];
  /** MACs the case sets on purpose: kept, so the comparison sees they were applied. */
  keepMacs: string[];
  /** Per-run names (the bridge) → the placeholder they are written as ("<bridge>"). */
  names?: Record<string, string>;
}

export type Normaliser = (v: unknown) => unknown;

const DROP_KEYS = new Set([
  "ifindex",
  "link_index",
  "link_netnsid",
  "valid_life_time",
  "preferred_life_time",
  "tentative",
  "handle",
  "stats",
  "stats64",
  "operstate",
]);
const MAC = /\b[0-9a-f]{2}(?::[0-9a-f]{2}){5}\b/gi;
/** Bridge and root ids: priority + MAC, which `ip` prints without zero padding ("8000.1a:6:52:…"). */
const BRIDGE_ID = /\b([0-9a-f]{4})\.[0-9a-f]{1,2}(?::[0-9a-f]{1,2}){5}\b/gi;
const LINK_LOCAL6 = /\bfe80::[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){0,3}\b/gi;

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

export function makeNormaliser(ctx: NormaliseContext): Normaliser {
  const keep = new Set(ctx.keepMacs.map((m) => m.toLowerCase()));
  const literal: [RegExp, string][] = [
    [new RegExp(`/var/run/netns/${escapeRe(ctx.ctrNetns)}`, "g"), "<netns>"],
    [new RegExp(escapeRe(ctx.ctrNetns), "g"), "<netns>"],
    ...ctx.tempDirs.map((d): [RegExp, string] => [new RegExp(escapeRe(d), "g"), "<tmp>"]),
  ];
  if (ctx.containerID !== "") literal.push([new RegExp(escapeRe(ctx.containerID), "g"), "<cid>"]);
  for (const [name, to] of Object.entries(ctx.names ?? {}))
    literal.push([new RegExp(`\\b${escapeRe(name)}\\b`, "g"), to]);
  const str = (s: string): string => {
    let out = s;
    for (const [re, to] of literal) out = out.replace(re, to);
    return out
      .replace(BRIDGE_ID, "$1.<mac>")
      .replace(MAC, (m) => (keep.has(m.toLowerCase()) ? m.toLowerCase() : "<mac>"))
      .replace(LINK_LOCAL6, "fe80::<ll>")
      .replace(/\bveth[0-9a-f]{8}\b/g, "<veth>")
      .replace(/\b((?:CNI|CNI-DN|CNI-SN)-)[0-9a-f]{20,}\b/g, "$1<hash>")
      .replace(/\bbwp[0-9a-f]{8,}\b/g, "bwp<hash>");
  };
  const walk = (v: unknown): unknown => {
    if (typeof v === "string") return str(v);
    if (Array.isArray(v)) return v.map(walk);
    if (v && typeof v === "object") {
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) {
        if (DROP_KEYS.has(k) || k.endsWith("_timer")) continue;
        if (k === "counter" && x && typeof x === "object") {
          out[k] = {};
          continue;
        }
        out[str(k)] = walk(x);
      }
      return out;
    }
    return v;
  };
  return walk;
}

// ---------------------------------------------------------------------------------------------------

/** A side after normalising: the same shape as the state read from the kernel. */
export type NSide = SideState;

export interface NFirewall {
  /** iptables-save per family: rules and user chains, by table ("nat" → lines in order). */
  iptables: { v4: Record<string, string[]>; v6: Record<string, string[]> };
  /** nft ruleset items, without tables and base chains that hold no rule. */
  nft: unknown[];
}

export interface NState {
  container: NSide;
  host: NSide;
  firewall: NFirewall;
  store: Record<string, string>;
}

type Obj = Record<string, unknown>;

export function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, x) =>
    x && typeof x === "object" && !Array.isArray(x)
      ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : x,
  );
}

function sortedBy(items: unknown[], key: (x: Obj) => string): unknown[] {
  return [...items].sort((a, b) => {
    const ka = key(a as Obj) + canonical(a);
    const kb = key(b as Obj) + canonical(b);
    return ka < kb ? -1 : ka > kb ? 1 : 0;
  });
}

/**
 * Carrier and IPv6 link-local state settle asynchronously after a link goes up (the kernel's linkwatch
 * runs up to a second later; the link-local address and its fe80::/64 and local routes follow it), so a
 * snapshot right after ADD catches them at random points: they are left out.
 */
function settled(links: unknown[]): unknown[] {
  return (links as Obj[]).map((l) => {
    const out: Obj = { ...l };
    if (Array.isArray(l.flags)) out.flags = l.flags.filter((f) => f !== "NO-CARRIER");
    if (Array.isArray(l.addr_info)) {
      out.addr_info = (l.addr_info as Obj[]).filter((a) => !String(a.local ?? "").startsWith("fe80:"));
    }
    return out;
  });
}

function isLinkLocalRoute(r: unknown): boolean {
  return String((r as Obj).dst ?? "").startsWith("fe80:");
}

/** A route's "linkdown" flag follows the carrier through linkwatch too (late by up to a second). */
function withoutLinkdown(routes: unknown[]): unknown[] {
  return (routes as Obj[]).map((r) =>
    Array.isArray(r.flags) ? { ...r, flags: r.flags.filter((f) => f !== "linkdown") } : r,
  );
}

function side(s: SideState, n: Normaliser): NSide {
  const name = (x: Obj) => String(x.ifname ?? x.dev ?? "");
  return {
    links: sortedBy(n(settled(s.links)) as unknown[], name),
    addrs: sortedBy(n(settled(s.addrs)) as unknown[], name),
    routes: sortedBy(n(withoutLinkdown(s.routes.filter((r) => !isLinkLocalRoute(r)))) as unknown[], () => ""),
    rules: sortedBy(n(s.rules) as unknown[], () => ""),
    qdiscs: sortedBy(n(s.qdiscs) as unknown[], name),
    sysctls: n(s.sysctls) as Record<string, string>,
  };
}

/** iptables-save text → table → the lines that are not boilerplate (comments, built-in chain policies). */
export function iptablesRules(text: string, n: Normaliser): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  let table = "";
  let lines: string[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    if (line.startsWith("*")) {
      table = line.slice(1);
      lines = [];
    } else if (line === "COMMIT") {
      if (lines.length > 0) out[table] = lines;
    } else if (/^:[A-Z]+ (ACCEPT|DROP) /.test(line)) {
      // built-in chain and its policy: there whenever the table is
    } else {
      lines.push(n(line.replace(/\[\d+:\d+\]/g, "[0:0]")) as string);
    }
  }
  return out;
}

/** nft items minus empty scaffolding: tables and base chains that hold no rule (they stay after DEL). */
export function nftRules(items: unknown[], n: Normaliser): unknown[] {
  const norm = n(items) as Record<string, Record<string, unknown>>[];
  const ruled = new Set<string>();
  const userChains = new Set<string>();
  for (const i of norm) {
    if (i.rule) ruled.add(`${i.rule.family} ${i.rule.table} ${i.rule.chain}`);
    if (i.chain && !i.chain.hook) userChains.add(`${i.chain.family} ${i.chain.table}`);
  }
  const tableUsed = (f: unknown, t: unknown) =>
    [...ruled].some((k) => k.startsWith(`${f} ${t} `)) || userChains.has(`${f} ${t}`);
  const kept = norm.filter((i) => {
    if (i.table) return tableUsed(i.table.family, i.table.name);
    if (i.chain) return !i.chain.hook || ruled.has(`${i.chain.family} ${i.chain.table} ${i.chain.name}`);
    return true;
  });
  const where = (i: Record<string, Record<string, unknown>>) => {
    const o = Object.values(i)[0] ?? {};
    return `${o.family} ${o.table ?? o.name} ${o.chain ?? ""}`;
  };
  // Stable: rule order inside a chain is kept.
  return kept
    .map((i, idx) => ({ i, idx }))
    .sort((a, b) => {
      const ka = where(a.i);
      const kb = where(b.i);
      return ka < kb ? -1 : ka > kb ? 1 : a.idx - b.idx;
    })
    .map((x) => x.i);
}

function firewall(f: FirewallState, n: Normaliser): NFirewall {
  return {
    iptables: { v4: iptablesRules(f.iptables.v4, n), v6: iptablesRules(f.iptables.v6, n) },
    nft: nftRules(f.nft, n),
  };
}

/**
 * The store dir without our host-local index files (.tscni-*: an addition upstream never reads); JSON
 * files (tuning's backups) compared by content, not layout.
 */
function store(files: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [f, text] of Object.entries(files)) {
    if (/(^|\/)\.tscni-/.test(f)) continue;
    try {
      out[f] = f.endsWith(".json") ? JSON.stringify(JSON.parse(text), null, 1) : text;
    } catch {
      out[f] = text;
    }
  }
  return out;
}

export function normaliseState(s: State, n: Normaliser): NState {
  return {
    container: side(s.container, n),
    host: side(s.host, n),
    firewall: firewall(s.firewall, n),
    store: n(store(s.store)) as Record<string, string>,
  };
}

export type NOutcome = { ok: true; result?: unknown } | { ok: false; code: number; msg: string };

export function normaliseOutcome(o: Outcome, n: Normaliser): NOutcome {
  if (o.ok) return o.result === undefined ? { ok: true } : { ok: true, result: n(o.result) };
  return { ok: false, code: o.code, msg: n(`${o.msg}${o.details ? `: ${o.details}` : ""}`) as string };
}
