/**
 * The corpus: test/diff/cases/*.json, one case per file (see DiffCase), and what can be read off a case.
 *
 *   loadCases(dir?) → DiffCase[]      the corpus, each file named after its case
 *   pluginTypes(c) → string[]         plugin types a case runs (types and ipam types)
 *   expectedIds(c) → string[]         the reason ids (docs/differences.md) it expects
 *   substitute(v, vars)               fills ${BRIDGE}, ${DATADIR} templates
 *   macsIn(c) → string[]              MACs the case sets on purpose
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Aspect } from "./compare.ts";

export const CASES_DIR = join(import.meta.dir, "cases");

/** The plugins the suite knows, by folder. */
export const PLUGIN_KINDS: Record<string, string> = {
  loopback: "main",
  bridge: "main",
  ptp: "main",
  "host-local": "ipam",
  static: "ipam",
  portmap: "meta",
  bandwidth: "meta",
  tuning: "meta",
  firewall: "meta",
  macvlan: "main",
  sbr: "meta",
  "host-device": "main",
  ipvlan: "main",
  vlan: "main",
  vrf: "meta",
};
export type KernelKind = "ipvlan" | "vlan" | "vrf";

export interface DiffCase {
  name: string;
  description: string;
  conflist: Record<string, unknown>;
  ifName?: string;
  capabilityArgs?: Record<string, unknown>;
  /** CNI_ARGS, as key → value. */
  cniArgs?: Record<string, string>;
  /**
   * "same" (default), or the reason ids (docs/differences.md) of the differences this case shows, and
   * optionally the only aspects they may show in.
   */
  expect?: "same" | { difference: string | string[]; in?: Aspect[] };
  invalid?: true;
  /** Message class of an invalid config's ADD error: a case-insensitive regex both messages match. */
  error?: { match: string };
  /** "compare" (default): firewall state must match; "nftables": our backend differs by design. */
  firewall?: "compare" | "nftables";
  /** Kernel features the case needs. */
  requires?: "bridge-vlan"[];
  /** Link kinds the case needs from the kernel; a host without them runs it in the VM lane. */
  kernel?: KernelKind[];
  /** Links the host netns gets first: "veth-master" is up0 ↔ down0, both up (a master, a device). */
  hostLinks?: "veth-master";
  /** Extra sysctls (dotted, templated) read in each netns. */
  sysctls?: { container?: string[]; host?: string[] };
}

/** How the case's bridge name appears in normalised output (it is random per case). */
export const BRIDGE_PLACEHOLDER = "<bridge>";
/** The reason id the runner itself gives nftables-backend cases' firewall (see docs/differences.md). */
export const NFT_REASON = "nftables-backend";
/** The note given to cases run upstream at an older version. */
export const VERSION_REASON = "cni-1.1.0";

export function loadCases(dir = CASES_DIR): DiffCase[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith(".json"))
    .sort()
    .map((f) => {
      const c = JSON.parse(readFileSync(join(dir, f), "utf8")) as DiffCase;
      if (`${c.name}.json` !== f) throw new Error(`case file ${f} has name ${c.name}`);
      if (!c.description || !c.conflist) throw new Error(`case ${f} needs description and conflist`);
      return c;
    });
}

/** Plugin types a case uses: every plugin's type and ipam.type. */
export function pluginTypes(c: DiffCase): string[] {
  const plugins = (c.conflist.plugins as Record<string, unknown>[] | undefined) ?? [];
  const types = new Set<string>();
  for (const p of plugins) {
    if (typeof p.type === "string") types.add(p.type);
    const ipam = p.ipam as Record<string, unknown> | undefined;
    if (typeof ipam?.type === "string") types.add(ipam.type);
  }
  return [...types].filter((t) => t in PLUGIN_KINDS);
}

/** The reason ids a case expects. */
export function expectedIds(c: DiffCase): string[] {
  const e = c.expect ?? "same";
  if (e === "same") return [];
  return Array.isArray(e.difference) ? e.difference : [e.difference];
}

/** Fills ${BRIDGE}, ${DATADIR}, … in every string of a JSON value. */
export function substitute<T>(v: T, vars: Record<string, string>): T {
  return JSON.parse(JSON.stringify(v), (_k, x) =>
    typeof x === "string" ? x.replace(/\$\{([A-Z0-9_]+)\}/g, (m, k: string) => vars[k] ?? m) : x,
  );
}

/** MAC literals the case sets on purpose (kept by the normaliser). */
export function macsIn(c: DiffCase): string[] {
  return (
    JSON.stringify([c.conflist, c.cniArgs, c.capabilityArgs]).match(
      /[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}/g,
    ) ?? []
  );
}
