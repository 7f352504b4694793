/**
 * The tuning plugin's configuration (upstream plugins/meta/tuning parseConf): sysctls, and the link
 * attributes mac / mtu / promisc / allmulti / txQLen of the container interface.
 *
 * Where each value comes from, later wins (upstream's order): the config's top-level keys, then for
 * the MAC CNI_ARGS `MAC=`, then runtimeConfig.mac (the `mac` capability), then `args.cni.*` for every
 * key (args.cni.sysctl entries are merged over the config's).
 *
 * Sysctl keys are resolved here, before anything is written: dotted or slashed, `IFNAME` replaced by
 * the interface name, strictly under /proc/sys/net (".." or anything escaping it is code 7).
 */

import { sysctlPath } from "../../../netlink/sysctl.ts";
import { loadArgs, parseMac } from "../../../spec/args.ts";
import { parseNetConf, parseValidAttachments } from "../../../spec/conf.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import { getBool, getInt, getObject, getString, getStringMap, type JSONObject } from "../../../spec/json.ts";
import { parsePrevResult } from "../../../spec/result.ts";
import type { GCAttachment, Result } from "../../../spec/types.ts";

export const DEFAULT_DATA_DIR = "/run/cni/tuning";
/** Upstream's fixed allowlist: when the file exists, every sysctl key must match one of its regexes. */
export const ALLOWLIST_FILE = "/etc/cni/tuning/allowlist.conf";

/** A sysctl to set: the key as configured, and resolved (slashed, IFNAME replaced) for sysctlSetIn. */
export interface SysctlSetting {
  key: string;
  /** "net/ipv4/conf/eth0/forwarding": relative to /proc/sys, the form sysctlSet takes. */
  resolved: string;
  value: string;
}

/** The link attributes tuning may change (and backs up). */
export interface LinkTuning {
  mac?: string;
  mtu?: number;
  /** Only `true` changes anything: like upstream, promisc=false leaves the link alone. */
  promisc: boolean;
  allmulti?: boolean;
  txQLen?: number;
}

export interface TuningConf extends LinkTuning {
  name: string;
  cniVersion: string;
  dataDir: string;
  /** Raw keys in config order (args.cni.sysctl merged over the config's). */
  sysctl: Record<string, string>;
  prevResult?: Result;
  /** GC's cni.dev/valid-attachments; undefined when absent. */
  validAttachments?: GCAttachment[];
}

function invalid(msg: string): CniError {
  return new CniError(ErrCode.InvalidNetworkConfig, msg);
}

/** A MAC as Go's net.ParseMAC accepts it ("aa:bb…", "AA-BB-…", "aabb.ccdd.eeff"), as Go prints it. */
export function canonicalMac(mac: string): string {
  const hex = mac.replace(/[:.-]/g, "").toLowerCase();
  return hex.match(/../g)?.join(":") ?? "";
}

function macOf(value: string | undefined, path: string): string | undefined {
  const mac = parseMac(value, path);
  return mac === undefined ? undefined : canonicalMac(mac);
}

function nonNegative(v: number | undefined, path: string): number | undefined {
  if (v !== undefined && v < 0) throw invalid(`${path}: must not be negative, got ${v}`);
  return v;
}

/** Go's `mtu int` with omitempty semantics: 0 means "leave the MTU alone". */
function mtuOf(obj: JSONObject, path: string): number | undefined {
  const v = nonNegative(getInt(obj, "mtu", path), path ? `${path}.mtu` : "mtu");
  return v === 0 ? undefined : v;
}

/** Parses the stdin config plus CNI_ARGS into the effective settings. */
export function parseTuningConf(stdin: Uint8Array | string, cniArgs: string): TuningConf {
  const netconf = parseNetConf(stdin);
  const raw = netconf as unknown as JSONObject;
  const conf: TuningConf = {
    name: netconf.name,
    cniVersion: netconf.cniVersion,
    dataDir: getString(raw, "dataDir") || DEFAULT_DATA_DIR,
    sysctl: { ...(getStringMap(raw, "sysctl") ?? {}) },
    promisc: getBool(raw, "promisc") ?? false,
  };
  const mac = macOf(getString(raw, "mac"), "mac");
  if (mac) conf.mac = mac;
  const mtu = mtuOf(raw, "");
  if (mtu !== undefined) conf.mtu = mtu;
  const allmulti = getBool(raw, "allmulti");
  if (allmulti !== undefined) conf.allmulti = allmulti;
  const txQLen = nonNegative(getInt(raw, "txQLen"), "txQLen");
  if (txQLen !== undefined) conf.txQLen = txQLen;

  const envMac = loadArgs(cniArgs, ["MAC"]).get("MAC");
  if (envMac) conf.mac = macOf(envMac, "CNI_ARGS MAC") ?? conf.mac;
  const rc = getObject(raw, "runtimeConfig");
  const rcMac = rc ? macOf(getString(rc, "mac", "runtimeConfig"), "runtimeConfig.mac") : undefined;
  if (rcMac) conf.mac = rcMac;

  const cni = getObject(getObject(raw, "args") ?? {}, "cni", "args");
  if (cni) applyArgsCni(conf, cni);

  const prev = parsePrevResult(netconf);
  if (prev) conf.prevResult = prev;
  const valid = parseValidAttachments(raw);
  if (valid) conf.validAttachments = valid;
  return conf;
}

/** args.cni: every key overrides the config's (upstream IPAMArgs). */
function applyArgsCni(conf: TuningConf, cni: JSONObject): void {
  const path = "args.cni";
  Object.assign(conf.sysctl, getStringMap(cni, "sysctl", path) ?? {});
  const mac = getString(cni, "mac", path);
  if (mac !== undefined) {
    const parsed = macOf(mac, `${path}.mac`);
    if (parsed) conf.mac = parsed;
    else delete conf.mac;
  }
  const promisc = getBool(cni, "promisc", path);
  if (promisc !== undefined) conf.promisc = promisc;
  if (getInt(cni, "mtu", path) !== undefined) {
    const mtu = mtuOf(cni, path);
    if (mtu === undefined) delete conf.mtu;
    else conf.mtu = mtu;
  }
  const allmulti = getBool(cni, "allmulti", path);
  if (allmulti !== undefined) conf.allmulti = allmulti;
  const txQLen = nonNegative(getInt(cni, "txQLen", path), `${path}.txQLen`);
  if (txQLen !== undefined) conf.txQLen = txQLen;
}

/** Whether the config asks for any link attribute change (and so for a backup). */
export function changesLink(t: LinkTuning): boolean {
  return (
    t.mac !== undefined ||
    t.mtu !== undefined ||
    t.promisc ||
    t.allmulti !== undefined ||
    t.txQLen !== undefined
  );
}

/**
 * The key relative to /proc/sys of a configured key for interface `ifName`. Like upstream, a dotted key has its
 * dots turned into slashes before the first `IFNAME` is replaced, so an interface name with a dot
 * ("eth0.100") stays one path segment. Anything not strictly under /proc/sys/net → code 7.
 */
export function resolveSysctlKey(key: string, ifName: string): string {
  const slashed = key.includes("/") ? key : key.replaceAll(".", "/");
  const withIf = slashed.replace("IFNAME", ifName);
  try {
    sysctlPath(withIf, `resolving sysctl ${JSON.stringify(key)}`);
    return withIf;
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw invalid(`invalid net sysctl key ${JSON.stringify(key)}: ${why}`);
  }
}

/** Every configured sysctl resolved, or the first bad key as code 7 (nothing is written before). */
export function resolveSysctls(sysctl: Record<string, string>, ifName: string): SysctlSetting[] {
  return Object.entries(sysctl).map(([key, value]) => ({
    key,
    value,
    resolved: resolveSysctlKey(key, ifName),
  }));
}

// ---- allowlist ----

/** The allowlist file's regexes: one a line, blank lines skipped (upstream readAllowlist). */
export function parseAllowlist(text: string): string[] {
  return text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "");
}

/**
 * Whether `key` (as configured, before IFNAME substitution — what upstream matches) matches one of
 * the regexes. Like Go's regexp.MatchString the match is unanchored; anchor with ^…$ in the file.
 * A regex that does not compile is code 7.
 */
export function sysctlAllowed(key: string, allowlist: readonly string[]): boolean {
  return allowlist.some((pattern) => {
    let re: RegExp;
    try {
      re = new RegExp(pattern);
    } catch (err) {
      throw invalid(`tuning allowlist: invalid regex ${JSON.stringify(pattern)}: ${(err as Error).message}`);
    }
    return re.test(key);
  });
}

/** Code 7 for the first key the allowlist does not allow. */
export function checkAllowlist(keys: readonly string[], allowlist: readonly string[]): void {
  for (const key of keys) {
    if (!sysctlAllowed(key, allowlist)) {
      throw invalid(
        `Sysctl ${key} is not allowed. Only the following sysctls are allowed: [${allowlist.join(" ")}]`,
      );
    }
  }
}
