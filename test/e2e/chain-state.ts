/**
 * Snapshots of everything a CNI chain can leave behind, for the kubelet-chain e2e test: per netns the
 * links, addresses, routes (all tables), qdiscs, the nftables ruleset and iptables-save output
 * (IPv4 + IPv6); and the files under given state dirs. Every value comes from an independent oracle
 * (`ip -j`, `tc -j`, `nft -j`, `iptables-save`) run in the netns with `nsenter --net=<path>`.
 *
 *   netnsState(path, sysctls?) → NetnsState
 *   dirFiles(dir) → { "relative/path": "content" }   ({} when dir is missing)
 *   nftSplit(ruleset, tables) → { shared, other }      objects of the named inet tables vs the rest
 *   nftElements(ruleset, table, map) → elements         of one map or set ([] when none)
 *   nftStructure(objs) → objs                          without handles and map elements (layout
 *                                                      sets keep theirs): what is shared infrastructure
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";

// biome-ignore lint/suspicious/noExplicitAny: parsed `ip -j` / `tc -j` / `nft -j` output
type Json = any;

export interface NetnsState {
  links: Json[];
  addrs: Json[];
  routes4: Json[];
  routes6: Json[];
  qdiscs: Json[];
  /** `nft -j list ruleset`'s nftables array. */
  nft: Json[];
  /** iptables-save and ip6tables-save output without comment lines (they carry timestamps). */
  iptables: string;
  ip6tables: string;
  /** Values of the sysctls asked for ("net.core.somaxconn" → "4096"). */
  sysctls: Record<string, string>;
}

export function nsRun(netnsPath: string, cmd: string[]): string {
  const p = Bun.spawnSync(["nsenter", `--net=${netnsPath}`, ...cmd], { stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== 0) {
    throw new Error(`${cmd.join(" ")} in ${netnsPath} failed (${p.exitCode}): ${p.stderr.toString().trim()}`);
  }
  return p.stdout.toString();
}

function nsJson(netnsPath: string, cmd: string[]): Json {
  const out = nsRun(netnsPath, cmd).trim();
  return out === "" ? [] : JSON.parse(out);
}

function withoutComments(text: string): string {
  return text
    .split("\n")
    .filter((l) => !l.startsWith("#"))
    .join("\n");
}

export function netnsState(netnsPath: string, sysctls: string[] = []): NetnsState {
  const values: Record<string, string> = {};
  for (const key of sysctls) values[key] = nsRun(netnsPath, ["sysctl", "-n", key]).trim();
  return {
    links: nsJson(netnsPath, ["ip", "-j", "-d", "link", "show"]),
    addrs: nsJson(netnsPath, ["ip", "-j", "addr", "show"]),
    routes4: nsJson(netnsPath, ["ip", "-4", "-j", "route", "show", "table", "all"]),
    routes6: nsJson(netnsPath, ["ip", "-6", "-j", "route", "show", "table", "all"]),
    qdiscs: nsJson(netnsPath, ["tc", "-j", "qdisc", "show"]),
    nft: nsJson(netnsPath, ["nft", "-j", "list", "ruleset"]).nftables,
    iptables: withoutComments(nsRun(netnsPath, ["iptables-save"])),
    ip6tables: withoutComments(nsRun(netnsPath, ["ip6tables-save"])),
    sysctls: values,
  };
}

/** Every regular file under `dir` with its content, keyed by its path relative to `dir`. */
export function dirFiles(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (!existsSync(dir)) return out;
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out[relative(dir, p)] = readFileSync(p, "utf8");
    }
  };
  walk(dir);
  return out;
}

function kindOf(o: Json): string {
  return Object.keys(o)[0] ?? "";
}

function tableOf(o: Json): string | undefined {
  const kind = kindOf(o);
  const body = o[kind];
  if (kind === "metainfo") return undefined;
  return `${body.family} ${kind === "table" ? body.name : body.table}`;
}

/** Splits a ruleset into the objects of the `tables` ("inet tscni_hostport") and everything else. */
export function nftSplit(ruleset: Json[], tables: string[]): { shared: Json[]; other: Json[] } {
  const shared: Json[] = [];
  const other: Json[] = [];
  for (const o of ruleset) {
    const t = tableOf(o);
    (t !== undefined && tables.includes(t) ? shared : other).push(o);
  }
  return { shared, other };
}

/** The elements of map or set `name` in inet table `table`. */
export function nftElements(ruleset: Json[], table: string, name: string): Json[] {
  const o = ruleset.find(
    (x) =>
      (x.map ?? x.set)?.table === table &&
      (x.map ?? x.set)?.name === name &&
      (x.map ?? x.set)?.family === "inet",
  );
  return (o?.map ?? o?.set)?.elem ?? [];
}

/**
 * The shared structure of a table's objects: handles dropped, maps' elements dropped. Sets keep
 * their elements: portmap's `layout_<hash>` set holds one marker saying which chain layout is built,
 * which is infrastructure, not an attachment's state.
 */
export function nftStructure(objs: Json[]): Json[] {
  return objs.map((o) => {
    const kind = kindOf(o);
    const { handle: _h, elem, ...body } = o[kind];
    return { [kind]: kind === "set" && elem !== undefined ? { ...body, elem } : body };
  });
}
