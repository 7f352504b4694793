/**
 * The firewall plugin's configuration (upstream plugins/meta/firewall FirewallNetConf + parseConf):
 * backend, iptablesAdminChainName, firewalldZone, ingressPolicy, and the container addresses and
 * bridge taken from prevResult. Ours: `dataDir`, where the iptables and firewalld backends record
 * which addresses an attachment was given (DEL without prevResult, GC).
 */
import { parseNetConf, parseValidAttachments } from "../../../spec/conf.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import { formatIP, parseCIDR, toIPv4 } from "../../../spec/ipaddr.ts";
import { getString } from "../../../spec/json.ts";
import { parsePrevResult } from "../../../spec/result.ts";
import type { GCAttachment, Result } from "../../../spec/types.ts";

export type Backend = "iptables" | "firewalld" | "nftables";
export type IngressPolicy = "open" | "same-bridge" | "isolated";

export const DEFAULT_ADMIN_CHAIN = "CNI-ADMIN";
export const DEFAULT_ZONE = "trusted";
export const DEFAULT_DATA_DIR = "/var/lib/cni/firewall";

/** A container address: family and the bare address ("10.22.0.5", "fd00::5"). */
export interface FwAddr {
  family: 4 | 6;
  ip: string;
}

export interface FirewallConf {
  cniVersion: string;
  name: string;
  /** undefined: like upstream, firewalld when it runs on the system bus, else iptables. */
  backend?: Backend;
  adminChain: string;
  zone: string;
  ingressPolicy: IngressPolicy;
  dataDir: string;
  prevResult?: Result;
  /** Every address of prevResult (upstream takes all of result.IPs), deduplicated. */
  addrs: FwAddr[];
  /** prevResult.interfaces[0].name: the bridge, for ingressPolicy. */
  bridge?: string;
  validAttachments?: GCAttachment[];
}

function invalid(msg: string): CniError {
  return new CniError(ErrCode.InvalidNetworkConfig, msg);
}

/** What iptables accepts as a chain name in restore input without quoting. */
const CHAIN_RE = /^[A-Za-z0-9_.-]{1,28}$/;
/** firewalld zone names: letters, digits, "_", "-", "/" (its check_name), at most 17 characters. */
const ZONE_RE = /^[A-Za-z0-9_/-]{1,17}$/;
/** Interface names as the kernel takes them, and nothing that could break an nft or restore line. */
export const IFNAME_RE = /^[^\s/:"'\\]{1,15}$/;

/** The addresses of a result, canonical, IPv4-mapped IPv6 as IPv4, without repeats. */
export function resultAddrs(result: Result | undefined): FwAddr[] {
  const out: FwAddr[] = [];
  for (const ipc of result?.ips ?? []) {
    const c = parseCIDR(ipc.address);
    if (!c) continue;
    const v4 = toIPv4(c.ip);
    const a: FwAddr = { family: v4 ? 4 : 6, ip: formatIP(v4 ?? c.ip) };
    if (!out.some((o) => o.ip === a.ip)) out.push(a);
  }
  return out;
}

function parseBackend(b: string | undefined): Backend | undefined {
  if (b === undefined || b === "") return undefined;
  if (b === "iptables" || b === "firewalld" || b === "nftables") return b;
  throw invalid(`backend: must be "iptables", "firewalld" or "nftables", got ${JSON.stringify(b)}`);
}

function parsePolicy(p: string | undefined): IngressPolicy {
  if (p === undefined || p === "") return "open";
  if (p === "open" || p === "same-bridge" || p === "isolated") return p;
  throw invalid(`ingressPolicy: unknown ingress policy ${JSON.stringify(p)} (open, same-bridge or isolated)`);
}

/** Parses and validates the plugin's stdin; bad values are code 7 naming the key. */
export function parseConfig(stdin: Uint8Array | string): FirewallConf {
  const raw = parseNetConf(stdin);
  const adminChain = getString(raw, "iptablesAdminChainName") || DEFAULT_ADMIN_CHAIN;
  if (!CHAIN_RE.test(adminChain)) {
    throw invalid(`iptablesAdminChainName: invalid chain name ${JSON.stringify(adminChain)}`);
  }
  const zone = getString(raw, "firewalldZone") || DEFAULT_ZONE;
  if (!ZONE_RE.test(zone)) throw invalid(`firewalldZone: invalid zone name ${JSON.stringify(zone)}`);
  const dataDir = getString(raw, "dataDir") || DEFAULT_DATA_DIR;
  if (!dataDir.startsWith("/") || dataDir.includes("\0")) {
    throw invalid(`dataDir: must be an absolute path, got ${JSON.stringify(dataDir)}`);
  }
  const prevResult = parsePrevResult(raw);
  const conf: FirewallConf = {
    cniVersion: raw.cniVersion,
    name: raw.name,
    backend: parseBackend(getString(raw, "backend")),
    adminChain,
    zone,
    ingressPolicy: parsePolicy(getString(raw, "ingressPolicy")),
    dataDir,
    addrs: resultAddrs(prevResult),
  };
  if (prevResult) {
    conf.prevResult = prevResult;
    const bridge = prevResult.interfaces?.[0]?.name;
    if (bridge) conf.bridge = bridge;
  }
  const valid = parseValidAttachments(raw);
  if (valid) conf.validAttachments = valid;
  return conf;
}

/** The bridge for ingressPolicy same-bridge/isolated, validated (upstream's errors when it is missing). */
export function requireBridge(conf: FirewallConf): string {
  if (!conf.prevResult?.interfaces?.length) {
    throw invalid(
      `interface needs to be set for ingress policy ${JSON.stringify(conf.ingressPolicy)}, make sure to chain "firewall" plugin with "bridge"`,
    );
  }
  const b = conf.bridge;
  if (!b) throw invalid("ingressPolicy: got empty bridge name in prevResult.interfaces[0]");
  if (!IFNAME_RE.test(b)) throw invalid(`ingressPolicy: invalid bridge name ${JSON.stringify(b)}`);
  return b;
}
