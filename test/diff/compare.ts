/**
 * Compares two normalised runs of one case (upstream's plugins vs ours), aspect by aspect:
 *   add       outcome: both succeed with the same result JSON, or both fail with the same code and a
 *             message of the expected class (the case's regex), never the exact text
 *   state     kernel state after ADD (container + host: links, addrs, routes, rules, qdiscs, sysctls)
 *             and the plugins' files (host-local's store, tuning's backups)
 *   firewall  iptables/nft rules after ADD (only when the case compares firewalls)
 *   check     CHECK outcome (ok / error code)
 *   del       DEL outcome (ok / error code)
 *   cleanup   what DEL left behind (state after DEL vs before ADD) is the same in both
 * plus `leaks`: what our DEL left behind that upstream's did not and that is not shared scaffolding
 * (the case's bridge, the container's lo); when firewalls are not compared, firewall leftovers that
 * still name the attachment (its container id, veth or addresses).
 * Known one-attribute differences (known.ts) are taken out of our run first, when the case names them.
 */
import { KNOWN_ADJUSTMENTS } from "./known.ts";
import { canonical, type NOutcome, type NState } from "./normalise.ts";

export interface Difference {
  path: string;
  upstream: unknown;
  ours: unknown;
}

export const ASPECTS = ["add", "state", "firewall", "check", "del", "cleanup"] as const;
export type Aspect = (typeof ASPECTS)[number];

export interface NRun {
  before: NState;
  afterAdd: NState;
  afterDel: NState;
  add: NOutcome;
  check: NOutcome;
  del: NOutcome;
}

export interface CompareOptions {
  /** Compare firewall state (false for nftables-backend cases: the backends differ by design). */
  compareFirewall: boolean;
  /** Regex (case-insensitive) both ADD failure messages must match. */
  errorMatch?: string;
  /** Names of shared links DEL leaves on purpose (a bridge). */
  shared: string[];
  /** Known-difference ids the case names (only those with an adjustment in known.ts act here). */
  known: string[];
}

export interface Comparison {
  diffs: Partial<Record<Aspect, Difference[]>>;
  /** Known-difference adjustments that changed something. */
  applied: string[];
  /** Our leftovers after DEL (see header). */
  leaks: string[];
  /** Upstream's leftovers that are not shared scaffolding (information only). */
  upstreamLeaks: string[];
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return !!v && typeof v === "object" && !Array.isArray(v);
}

/**
 * Deep structural difference. Arrays of links (objects with an `ifname`) are matched by name, other
 * arrays of objects as sets (an item only on one side is one difference), anything else by position.
 */
export function deepDiff(a: unknown, b: unknown, path = "", out: Difference[] = []): Difference[] {
  if (canonical(a) === canonical(b)) return out;
  if (Array.isArray(a) && Array.isArray(b)) {
    const objects = [...a, ...b].every(isObj);
    if (objects && [...a, ...b].every((x) => typeof (x as Obj).ifname === "string")) {
      const names = [...new Set([...a, ...b].map((x) => (x as Obj).ifname as string))].sort();
      for (const n of names) {
        const find = (xs: unknown[]) => xs.find((x) => (x as Obj).ifname === n);
        deepDiff(find(a), find(b), `${path}[${n}]`, out);
      }
    } else if (objects) {
      const ka = new Set(a.map(canonical));
      const kb = new Set(b.map(canonical));
      for (const x of a)
        if (!kb.has(canonical(x))) out.push({ path: `${path}[]`, upstream: x, ours: undefined });
      for (const x of b)
        if (!ka.has(canonical(x))) out.push({ path: `${path}[]`, upstream: undefined, ours: x });
    } else {
      for (let i = 0; i < Math.max(a.length, b.length); i++) deepDiff(a[i], b[i], `${path}[${i}]`, out);
    }
    return out;
  }
  if (!isObj(a) || !isObj(b)) {
    out.push({ path: path || ".", upstream: a, ours: b });
    return out;
  }
  for (const k of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) {
    deepDiff(a[k], b[k], path ? `${path}.${k}` : k, out);
  }
  return out;
}

function summary(o: NOutcome): string {
  return o.ok ? "ok" : `error ${o.code}: ${o.msg}`;
}

function outcomeDiff(up: NOutcome, ours: NOutcome, path: string, match?: string): Difference[] {
  if (up.ok !== ours.ok) return [{ path: `${path}.ok`, upstream: summary(up), ours: summary(ours) }];
  if (up.ok && ours.ok) return deepDiff(up.result, ours.result, `${path}.result`);
  if (up.ok || ours.ok) return [];
  const out: Difference[] = [];
  if (up.code !== ours.code) out.push({ path: `${path}.code`, upstream: up.code, ours: ours.code });
  if (match) {
    const re = new RegExp(match, "i");
    if (!re.test(up.msg) || !re.test(ours.msg)) {
      out.push({ path: `${path}.msg ~ /${match}/i`, upstream: up.msg, ours: ours.msg });
    }
  }
  return out;
}

/** CHECK/DEL are compared by outcome and code only (their messages describe different code paths); a
 * difference still shows both messages. */
function verbDiff(up: NOutcome, ours: NOutcome, path: string): Difference[] {
  const codeOnly = (o: NOutcome): NOutcome => (o.ok ? { ok: true } : { ok: false, code: o.code, msg: "" });
  const d = outcomeDiff(codeOnly(up), codeOnly(ours), path);
  return d.length === 0 ? d : [{ path, upstream: summary(up), ours: summary(ours) }];
}

/** Every item as "section: json", so two states can be compared as sets. */
function items(s: NState, withFirewall: boolean): Set<string> {
  const out = new Set<string>();
  for (const sideName of ["container", "host"] as const) {
    const side = s[sideName];
    for (const sec of ["links", "addrs", "routes", "rules", "qdiscs"] as const) {
      for (const x of side[sec]) out.add(`${sideName}.${sec}: ${canonical(x)}`);
    }
  }
  for (const f of Object.keys(s.store)) {
    // host-local remembers its last reservation on purpose; the reservations themselves must go.
    if (!/last_reserved_ip/.test(f)) out.add(`store: ${f}`);
  }
  if (withFirewall) {
    for (const fam of ["v4", "v6"] as const) {
      for (const [t, lines] of Object.entries(s.firewall.iptables[fam])) {
        for (const l of lines) out.add(`ip${fam === "v6" ? "6" : ""}tables ${t}: ${l}`);
      }
    }
    for (const x of s.firewall.nft) out.add(`nft: ${canonical(x)}`);
  }
  return out;
}

/** What DEL did not undo: items added since `before` (+) and items gone since (-). */
export function residue(before: NState, after: NState, withFirewall = true): string[] {
  const b = items(before, withFirewall);
  const a = items(after, withFirewall);
  const added = [...a].filter((x) => !b.has(x)).map((x) => `+ ${x}`);
  const removed = [...b].filter((x) => !a.has(x)).map((x) => `- ${x}`);
  return [...added, ...removed].sort();
}

/** Shared scaffolding DEL leaves on purpose: the host's bridge, the container's lo (loopback's DEL only downs it). */
function isShared(item: string, shared: string[]): boolean {
  const names = (x: string) => item.includes(`"ifname":"${x}"`) || item.includes(`"dev":"${x}"`);
  return shared.some(names) || (/^[+-] container\./.test(item) && names("lo"));
}

/** Strings that identify this attachment in firewall state: container id, veth, addresses. */
function markers(r: NRun): string[] {
  const result = r.add.ok ? (r.add.result as { ips?: { address?: string }[] } | undefined) : undefined;
  const ips = (result?.ips ?? []).map((i) => `"${String(i.address).split("/")[0]}"`);
  return ["<cid>", "<veth>", ...ips];
}

function firewallLeaks(r: NRun): string[] {
  const withoutFw = new Set(residue(r.before, r.afterDel, false));
  const marks = markers(r);
  return residue(r.before, r.afterDel, true).filter(
    (x) => !withoutFw.has(x) && marks.some((m) => x.includes(m)),
  );
}

function applyKnown(ours: NRun, up: NRun, ids: string[]): string[] {
  return ids.filter((id) => KNOWN_ADJUSTMENTS[id]?.(ours, up) ?? false);
}

export function compareRuns(up: NRun, ours: NRun, o: CompareOptions): Comparison {
  const applied = applyKnown(ours, up, o.known);
  const diffs: Partial<Record<Aspect, Difference[]>> = {};
  const put = (a: Aspect, d: Difference[]) => {
    if (d.length > 0) diffs[a] = d;
  };
  const stateOf = (s: NState) => ({ container: s.container, host: s.host, store: s.store });
  put("add", outcomeDiff(up.add, ours.add, "add", o.errorMatch));
  put("state", deepDiff(stateOf(up.afterAdd), stateOf(ours.afterAdd)));
  if (o.compareFirewall) put("firewall", deepDiff(up.afterAdd.firewall, ours.afterAdd.firewall, "firewall"));
  put("check", verbDiff(up.check, ours.check, "check"));
  put("del", verbDiff(up.del, ours.del, "del"));

  const upRes = residue(up.before, up.afterDel, o.compareFirewall);
  const ourRes = residue(ours.before, ours.afterDel, o.compareFirewall);
  put("cleanup", [
    ...upRes
      .filter((x) => !ourRes.includes(x))
      .map((x) => ({ path: "afterDel[]", upstream: x, ours: undefined })),
    ...ourRes
      .filter((x) => !upRes.includes(x))
      .map((x) => ({ path: "afterDel[]", upstream: undefined, ours: x })),
  ]);
  const upSet = new Set(upRes);
  return {
    diffs,
    applied,
    leaks: [
      ...ourRes.filter((x) => !isShared(x, o.shared) && !upSet.has(x)),
      ...(o.compareFirewall ? [] : firewallLeaks(ours)),
    ],
    upstreamLeaks: upRes.filter((x) => !isShared(x, o.shared)),
  };
}
