/**
 * Orchestration of the differential suite: loads the corpus (cases/*.json), prepares the two CNI_PATH
 * dirs (upstream's /usr/lib/cni; ours = links to the compiled multicall binary, or `bun main.ts`
 * wrappers for plugins the CLI registry does not know yet), runs each case once per implementation —
 * each run in its own fresh "host" and container netns, both runs at the same time — and judges it.
 *
 *   prepareImpls() → Impls              the CNI_PATH dirs (cleanup() removes ours)
 *   skipReason(c) → string?             why a case cannot run here (kernel lacks, plugin not written)
 *   runCase(c, impls) → CaseResult      both runs, compared and judged
 */
import { existsSync, linkSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { installablePlugins } from "../../src/cli/registry.ts";
import { createNamedNetns, deleteNamedNetns } from "../../src/ns/index.ts";
import { buildTscni, REPO } from "../helpers/build.ts";
import { skipUnlessBridgeVlan } from "../helpers/netns.ts";
import { runWithDeadline } from "../helpers/proc.ts";
import {
  BRIDGE_PLACEHOLDER,
  type DiffCase,
  expectedIds,
  macsIn,
  NFT_REASON,
  PLUGIN_KINDS,
  pluginTypes,
  substitute,
  VERSION_REASON,
} from "./cases.ts";
import { type Aspect, type Comparison, compareRuns, type NRun } from "./compare.ts";
import type { DriverArgs, DriverOutput, Outcome } from "./driver.ts";
import { KNOWN_ADJUSTMENTS } from "./known.ts";
import { makeNormaliser, type Normaliser, normaliseOutcome, normaliseState } from "./normalise.ts";

export const DIFF_DIR = import.meta.dir;
export const BUN = join(REPO, "node_modules/.bin/bun");
export const UPSTREAM_DIR = "/usr/lib/cni";
/** Upstream 1.1.1 speaks up to this version; newer cases run upstream at it. */
export const UPSTREAM_MAX_VERSION = "1.0.0";

// ---------------------------------------------------------------------------------------------------

export interface Impls {
  upstream: string[];
  ours: string[];
  /** Plugin name → how ours runs ("binary" or "bun main.ts"). */
  ourKinds: Record<string, string>;
  cleanup(): void;
}

function ourMain(name: string): string | undefined {
  const kind = PLUGIN_KINDS[name];
  const p = kind ? join(REPO, "src/plugins", kind, name, "main.ts") : "";
  return kind && existsSync(p) ? p : undefined;
}

/** Why our side of `name` cannot run, or undefined. */
function ourPluginMissing(name: string): string | undefined {
  if (installablePlugins().includes(name) || ourMain(name)) return undefined;
  return `our ${name} plugin is not written yet`;
}

export function prepareImpls(): Impls {
  const dir = mkdtempSync(join(tmpdir(), "tscni-diff-path-"));
  // Our own hard link of the build: the suite keeps working whatever happens to the build dir.
  const bin = join(dir, ".tscni");
  linkSync(buildTscni(), bin);
  const registered = new Set(installablePlugins());
  const ourKinds: Record<string, string> = {};
  for (const name of Object.keys(PLUGIN_KINDS)) {
    const main = ourMain(name);
    if (registered.has(name)) {
      symlinkSync(bin, join(dir, name));
      ourKinds[name] = "binary";
    } else if (main) {
      writeFileSync(join(dir, name), `#!/bin/sh\nexec ${BUN} ${main} "$@"\n`, { mode: 0o755 });
      ourKinds[name] = "bun main.ts";
    }
  }
  return {
    upstream: [UPSTREAM_DIR],
    ours: [dir],
    ourKinds,
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

export function skipReason(c: DiffCase): string | undefined {
  if (c.requires?.includes("bridge-vlan")) {
    const why = skipUnlessBridgeVlan();
    if (why) return why.startsWith("kernel lacks") ? why.split(":")[0] : `kernel lacks: ${why}`;
  }
  for (const t of pluginTypes(c)) {
    const why = ourPluginMissing(t);
    if (why) return why;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------------

export interface RunInfo {
  /** One-line outcome ("ADD ok · CHECK ok · DEL ok"). */
  summary: string;
  raw: DriverOutput;
  norm: NRun;
}

export interface CaseResult {
  name: string;
  description: string;
  status: "pass" | "fail" | "skip";
  verdict: string;
  upstream: string;
  ours: string;
  notes: string[];
  comparison?: Comparison;
}

function tag(): string {
  return Math.random().toString(36).slice(2, 8).padEnd(6, "0");
}

function sysctlKeys(c: DiffCase, ifName: string, vars: Record<string, string>) {
  const container = [
    `net.ipv4.conf.${ifName}.arp_notify`,
    `net.ipv6.conf.${ifName}.accept_dad`,
    `net.ipv6.conf.${ifName}.disable_ipv6`,
  ];
  for (const p of (c.conflist.plugins as Record<string, unknown>[] | undefined) ?? []) {
    if (p.type === "tuning" && p.sysctl && typeof p.sysctl === "object")
      container.push(...Object.keys(p.sysctl));
  }
  const host = ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"];
  return substitute(
    {
      container: [...container, ...(c.sysctls?.container ?? [])],
      host: [...host, ...(c.sysctls?.host ?? [])],
    },
    vars,
  );
}

export interface RunSpec {
  c: DiffCase;
  cniPath: string[];
  bridge: string;
  containerID: string;
  /** Run the list at this cniVersion instead of its own. */
  version?: string;
}

/** The links a case asks the host netns to have before it runs (DiffCase.hostLinks). */
export function prepareHostLinks(c: DiffCase, hostNs: string): void {
  if (c.hostLinks !== "veth-master") return;
  for (const cmd of [
    ["link", "add", "up0", "type", "veth", "peer", "name", "down0"],
    ["link", "set", "up0", "up"],
    ["link", "set", "down0", "up"],
  ]) {
    const r = Bun.spawnSync(["ip", "-n", hostNs, ...cmd]);
    if (r.exitCode !== 0) throw new Error(`ip ${cmd.join(" ")}: ${r.stderr}`);
  }
}

export async function runOnce(s: RunSpec): Promise<RunInfo> {
  const t = tag();
  const hostNs = `tscni-d-${t}-h`;
  const ctrNs = `tscni-d-${t}-c`;
  const tmp = mkdtempSync(join(tmpdir(), "tscni-diff-"));
  const ifName = s.c.ifName ?? "eth0";
  const vars = { BRIDGE: s.bridge, DATADIR: join(tmp, "ipam") };
  const conflist = substitute(s.c.conflist, vars);
  if (s.version) conflist.cniVersion = s.version;
  const args: DriverArgs = {
    cniPath: s.cniPath,
    cacheDir: join(tmp, "cache"),
    conflist: JSON.stringify(conflist),
    containerID: s.containerID,
    ifName,
    ctrNetns: ctrNs,
    sysctls: sysctlKeys(s.c, ifName, vars),
    dataDir: vars.DATADIR,
    cniArgs: Object.entries(substitute(s.c.cniArgs ?? {}, vars)),
    capabilityArgs: substitute(s.c.capabilityArgs ?? {}, vars),
  };
  createNamedNetns(hostNs);
  try {
    prepareHostLinks(s.c, hostNs);
    createNamedNetns(ctrNs);
    const raw = await runDriver(hostNs, args);
    const n = makeNormaliser({
      containerID: s.containerID,
      ctrNetns: ctrNs,
      tempDirs: [tmp, ...s.cniPath],
      keepMacs: macsIn(s.c),
      names: { [s.bridge]: BRIDGE_PLACEHOLDER },
    });
    return { summary: summarise(raw), raw, norm: normaliseRun(raw, n) };
  } finally {
    for (const ns of [ctrNs, hostNs]) {
      try {
        deleteNamedNetns(ns);
      } catch {
        // the ctr netns may not exist if its creation failed
      }
    }
    rmSync(tmp, { recursive: true, force: true });
  }
}

async function runDriver(hostNs: string, args: DriverArgs): Promise<DriverOutput> {
  const {
    code,
    stdout: out,
    stderr: err,
  } = await runWithDeadline([
    "ip",
    "netns",
    "exec",
    hostNs,
    BUN,
    join(DIFF_DIR, "driver.ts"),
    JSON.stringify(args),
  ]);
  const last = out.trim().split("\n").pop() ?? "";
  if (code !== 0 || !last.startsWith("{"))
    throw new Error(`driver failed (${code}): ${err.trim() || out.trim()}`);
  return JSON.parse(last) as DriverOutput;
}

function normaliseRun(r: DriverOutput, n: Normaliser): NRun {
  return {
    before: normaliseState(r.before, n),
    afterAdd: normaliseState(r.afterAdd, n),
    afterDel: normaliseState(r.afterDel, n),
    add: normaliseOutcome(r.add, n),
    check: normaliseOutcome(r.check, n),
    del: normaliseOutcome(r.del, n),
  };
}

function summarise(r: DriverOutput): string {
  const one = (verb: string, o: Outcome) => `${verb} ${o.ok ? "ok" : `err ${o.code}`}`;
  return [one("ADD", r.add), one("CHECK", r.check), one("DEL", r.del)].join(" · ");
}

export async function runCase(c: DiffCase, impls: Impls): Promise<CaseResult> {
  const base = { name: c.name, description: c.description };
  const skip = skipReason(c);
  if (skip)
    return { ...base, status: "skip", verdict: `skipped: ${skip}`, upstream: "—", ours: "—", notes: [] };

  const notes: string[] = [];
  const version = String(c.conflist.cniVersion ?? "");
  const upVersion = version === "1.1.0" ? UPSTREAM_MAX_VERSION : undefined;
  if (upVersion) notes.push(`upstream ran at ${upVersion} (${VERSION_REASON})`);
  const shared = { bridge: `tsd${tag()}`, containerID: `diff-${c.name}`.slice(0, 60) };
  const [up, ours] = await Promise.all([
    runOnce({ c, cniPath: impls.upstream, ...shared, ...(upVersion ? { version: upVersion } : {}) }),
    runOnce({ c, cniPath: impls.ours, ...shared }),
  ]);
  if (upVersion && up.norm.add.ok && up.norm.add.result) {
    // Same result shape; only the version label differs by construction.
    (up.norm.add.result as Record<string, unknown>).cniVersion = version;
  }
  const compareFirewall = (c.firewall ?? "compare") === "compare";
  const comparison = compareRuns(up.norm, ours.norm, {
    compareFirewall,
    ...(c.error ? { errorMatch: c.error.match } : {}),
    shared: [BRIDGE_PLACEHOLDER],
    known: expectedIds(c),
  });
  if (comparison.upstreamLeaks.length > 0)
    notes.push(`upstream leaves after DEL: ${comparison.upstreamLeaks.length} item(s)`);
  return {
    ...base,
    ...judge(c, ours.norm, comparison),
    upstream: up.summary,
    ours: ours.summary,
    notes,
    comparison,
  };
}

function judge(c: DiffCase, ours: NRun, cmp: Comparison): { status: "pass" | "fail"; verdict: string } {
  const aspects = Object.keys(cmp.diffs) as Aspect[];
  const problems: string[] = [];
  if (cmp.leaks.length > 0) problems.push(`our DEL leaves ${cmp.leaks.length} item(s)`);
  if (c.invalid && ours.add.ok) problems.push("our ADD accepted an invalid config");
  if (c.error && !ours.add.ok && !new RegExp(c.error.match, "i").test(ours.add.msg)) {
    problems.push(`our error message is not of class /${c.error.match}/`);
  }
  const ids = expectedIds(c);
  const generic = ids.filter((id) => !KNOWN_ADJUSTMENTS[id]);
  for (const id of ids) {
    if (KNOWN_ADJUSTMENTS[id] && !cmp.applied.includes(id))
      problems.push(`expected difference "${id}" did not occur (stale mark)`);
  }
  const allowed = c.expect && c.expect !== "same" ? c.expect.in : undefined;
  if (generic.length === 0 || allowed) {
    const unexpected = aspects.filter((a) => generic.length === 0 || !allowed?.includes(a));
    if (unexpected.length > 0) problems.push(`differs in ${unexpected.join(", ")}`);
  }
  if (generic.length > 0 && aspects.length === 0) {
    problems.push(`expected difference "${generic.join(", ")}" did not occur (stale mark)`);
  }
  if (problems.length > 0) return { status: "fail", verdict: `FAIL: ${problems.join("; ")}` };
  // An nftables-backend case's firewall is not compared: the difference is there by construction.
  const shown = c.firewall === "nftables" ? [...ids, NFT_REASON] : ids;
  if (shown.length === 0) return { status: "pass", verdict: "same" };
  const where = aspects.length > 0 ? ` (${aspects.join(", ")})` : "";
  return { status: "pass", verdict: `expected: ${shown.join(", ")}${where}` };
}
