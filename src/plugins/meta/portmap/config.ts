/**
 * portmap's configuration (upstream plugins/meta/portmap main.go parseConfig + ensureBackend): the
 * options, runtimeConfig.portMappings, and the container addresses picked from prevResult.
 *
 * Backend choice: `backend` when given; otherwise nftables, unless the config carries
 * iptables-only options (externalSetMarkChain, conditions written as iptables arguments), which
 * select iptables the way upstream detects them. Options of the other backend are an error.
 */
import { parsePortMappings } from "../../../spec/args.ts";
import { parseNetConf, parseValidAttachments } from "../../../spec/conf.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import { formatIP, parseCIDR, parseIP, toIPv4 } from "../../../spec/ipaddr.ts";
import { field, getBool, getInt, getObject, getString, getStringArray } from "../../../spec/json.ts";
import { parsePrevResult } from "../../../spec/result.ts";
import type { GCAttachment, PortMapping, Result } from "../../../spec/types.ts";

export type Backend = "nftables" | "iptables";
export type Protocol = "tcp" | "udp" | "sctp";

/** Kubernetes uses mark bits 14 and 15, Calico 20–31 (upstream DefaultMarkBit). */
export const DEFAULT_MARK_BIT = 13;

export interface Mapping {
  hostPort: number;
  containerPort: number;
  protocol: Protocol;
  /** Canonical host address; undefined when unset. "0.0.0.0"/"::" restrict the family only. */
  hostIP?: string;
}

/** One container address from prevResult. */
export interface ContainerAddr {
  family: 4 | 6;
  /** "10.22.0.5" */
  ip: string;
  /** The address's prefix length (from "10.22.0.5/24"). */
  prefix: number;
  /** The network of the address, "10.22.0.0/24". */
  subnet: string;
}

/** Whose mappings: one attachment of a container to a network. */
export type { Owner } from "../../../firewall/owner.ts";

export interface PortmapConf {
  cniVersion: string;
  name: string;
  backend: Backend;
  snat: boolean;
  masqAll: boolean;
  markMasqBit: number;
  /** iptables only: jump here instead of CNI-HOSTPORT-SETMARK (e.g. Kubernetes' KUBE-MARK-MASQ). */
  externalSetMarkChain?: string;
  /** Extra matches: iptables arguments, or nft expression fragments for the nftables backend. */
  conditionsV4: string[];
  conditionsV6: string[];
  portMappings: Mapping[];
  prevResult?: Result;
  /** The first IPv4 and IPv6 address of the container interface CNI_IFNAME (upstream ContIPv4/6). */
  addrs: ContainerAddr[];
  /** GC's cni.dev/valid-attachments; undefined when absent. */
  validAttachments?: GCAttachment[];
}

function invalid(msg: string): CniError {
  return new CniError(ErrCode.InvalidNetworkConfig, msg);
}

const PROTOCOLS: readonly string[] = ["tcp", "udp", "sctp"];

/** Validated mappings; duplicates of a (hostIP, protocol, hostPort) keep the first, as iptables would. */
function mappings(raw: PortMapping[]): Mapping[] {
  const out: Mapping[] = [];
  const seen = new Set<string>();
  raw.forEach((pm, i) => {
    const path = `runtimeConfig.portMappings[${i}]`;
    if (!PROTOCOLS.includes(pm.protocol)) {
      throw invalid(
        `${path}.protocol: unsupported protocol ${JSON.stringify(pm.protocol)} (tcp, udp or sctp)`,
      );
    }
    const m: Mapping = {
      hostPort: pm.hostPort,
      containerPort: pm.containerPort,
      protocol: pm.protocol as Protocol,
    };
    if (pm.hostIP !== undefined) {
      const ip = parseIP(pm.hostIP);
      if (!ip) throw invalid(`${path}.hostIP: invalid IP address ${JSON.stringify(pm.hostIP)}`);
      m.hostIP = formatIP(toIPv4(ip) ?? ip);
    }
    const key = `${m.hostIP ?? ""}|${m.protocol}|${m.hostPort}`;
    if (seen.has(key)) return;
    seen.add(key);
    out.push(m);
  });
  return out;
}

/** Upstream's detectBackendOfConditions: iptables arguments start with "-" or "!". */
function conditionsBackend(conds: string[]): Backend | undefined {
  const first = conds[0];
  if (first === undefined || first === "") return undefined;
  return first.startsWith("-") || first.startsWith("!") ? "iptables" : "nftables";
}

/** Chain names go into iptables-restore input: keep them to what iptables accepts unquoted. */
const CHAIN_RE = /^[A-Za-z0-9_.-]{1,28}$/;

function validateConditions(conds: string[], key: string, backend: Backend): void {
  conds.forEach((c, i) => {
    // A newline would start a new command in the restore/nft script; ";" and "#" end an nft command.
    const bad = backend === "nftables" ? /[\n\r\0;#]/ : /[\n\r\0]/;
    if (bad.test(c)) throw invalid(`${key}[${i}]: invalid character in condition ${JSON.stringify(c)}`);
  });
}

function chooseBackend(
  requested: string | undefined,
  externalSetMarkChain: string | undefined,
  conds4: string[],
  conds6: string[],
): Backend {
  const wants: Record<Backend, string[]> = { iptables: [], nftables: [] };
  if (externalSetMarkChain !== undefined) wants.iptables.push("externalSetMarkChain");
  const b4 = conditionsBackend(conds4);
  if (b4) wants[b4].push("conditionsV4");
  const b6 = conditionsBackend(conds6);
  if (b6) wants[b6].push("conditionsV6");
  let backend: Backend;
  if (requested === undefined || requested === "") {
    backend = wants.iptables.length > 0 ? "iptables" : "nftables";
  } else if (requested === "nftables" || requested === "iptables") {
    backend = requested;
  } else {
    throw invalid(`backend: unknown backend ${JSON.stringify(requested)} (nftables or iptables)`);
  }
  const other: Backend = backend === "iptables" ? "nftables" : "iptables";
  if (wants[other].length > 0) {
    throw invalid(
      `backend: ${backend} backend was requested but configuration contains ${other}-specific options ${wants[other].join(", ")}`,
    );
  }
  return backend;
}

/**
 * The container's addresses like upstream: per family the first address that belongs to the
 * sandbox interface `ifName` (or names no interface).
 */
export function containerAddrs(result: Result | undefined, ifName: string): ContainerAddr[] {
  const out: ContainerAddr[] = [];
  for (const ipc of result?.ips ?? []) {
    if (ipc.interface !== undefined && ipc.interface >= 0) {
      const intf = result?.interfaces?.[ipc.interface];
      if (intf && (intf.name !== ifName || !intf.sandbox)) continue;
    }
    const c = parseCIDR(ipc.address);
    if (!c) continue;
    const v4 = toIPv4(c.ip);
    const ip = v4 ?? c.ip;
    const family = v4 ? 4 : 6;
    if (out.some((a) => a.family === family)) continue;
    const net = new Uint8Array(ip);
    for (let i = 0; i < net.length; i++) {
      const bits = Math.min(8, Math.max(0, c.prefix - i * 8));
      net[i] = net[i]! & ((0xff << (8 - bits)) & 0xff);
    }
    out.push({ family, ip: formatIP(ip), prefix: c.prefix, subnet: `${formatIP(net)}/${c.prefix}` });
  }
  return out;
}

/** Parses and validates portmap's stdin; bad values are code 7 naming the key. */
export function parseConfig(stdin: Uint8Array | string, ifName: string): PortmapConf {
  const raw = parseNetConf(stdin);
  const markBit = getInt(raw, "markMasqBit");
  const external = getString(raw, "externalSetMarkChain");
  if (markBit !== undefined && external !== undefined) {
    throw invalid("markMasqBit: cannot specify externalSetMarkChain and markMasqBit");
  }
  if (markBit !== undefined && (markBit < 0 || markBit > 31)) {
    throw invalid(`markMasqBit: must be between 0 and 31, got ${markBit}`);
  }
  if (external !== undefined && !CHAIN_RE.test(external)) {
    throw invalid(`externalSetMarkChain: invalid chain name ${JSON.stringify(external)}`);
  }
  const conditionsV4 = getStringArray(raw, "conditionsV4") ?? [];
  const conditionsV6 = getStringArray(raw, "conditionsV6") ?? [];
  const backend = chooseBackend(getString(raw, "backend"), external, conditionsV4, conditionsV6);
  validateConditions(conditionsV4, "conditionsV4", backend);
  validateConditions(conditionsV6, "conditionsV6", backend);
  const runtimeConfig = getObject(raw, "runtimeConfig");
  const portMappings = mappings(runtimeConfig ? parsePortMappings(field(runtimeConfig, "portMappings")) : []);
  const prevResult = parsePrevResult(raw);
  const conf: PortmapConf = {
    cniVersion: raw.cniVersion,
    name: raw.name,
    backend,
    snat: getBool(raw, "snat") ?? true,
    masqAll: getBool(raw, "masqAll") ?? false,
    markMasqBit: markBit ?? DEFAULT_MARK_BIT,
    conditionsV4,
    conditionsV6,
    portMappings,
    addrs: containerAddrs(prevResult, ifName),
  };
  if (external !== undefined) conf.externalSetMarkChain = external;
  if (prevResult) conf.prevResult = prevResult;
  const valid = parseValidAttachments(raw);
  if (valid) conf.validAttachments = valid;
  return conf;
}

/** The mappings that apply to a container address of `family`: no hostIP, or a hostIP of that family. */
export function mappingsFor(conf: Pick<PortmapConf, "portMappings">, family: 4 | 6): Mapping[] {
  return conf.portMappings.filter((m) => m.hostIP === undefined || m.hostIP.includes(":") === (family === 6));
}

/** Whether a mapping's hostIP restricts the destination address (unset and 0.0.0.0/:: do not). */
export function hostIPMatch(m: Mapping): string | undefined {
  return m.hostIP === undefined || m.hostIP === "0.0.0.0" || m.hostIP === "::" ? undefined : m.hostIP;
}
