/**
 * Runtime-supplied arguments: CNI_ARGS ("K=V;K=V", upstream pkg/types/args.go) and the capability
 * arguments a runtime puts in `runtimeConfig` (CONVENTIONS.md). Capability values are decoded with Go's
 * rules (json.ts): containerd sends `{"HostPort":8080,"ContainerPort":80,"Protocol":"tcp","HostIP":""}`.
 */
import { CniError, ErrCode } from "./errors.ts";
import { parseCIDR, parseIP } from "./ipaddr.ts";
import {
  field,
  getInt,
  getString,
  getStringArray,
  isObject,
  type JSONObject,
  joinPath,
  typeError,
} from "./json.ts";
import type { BandwidthEntry, DNS, IPRange, PortMapping } from "./types.ts";
import { goQuoteList } from "./version.ts";

// ---------------------------------------------------------------------------------------------------
// CNI_ARGS

/**
 * Splits CNI_ARGS into key → value. Like upstream, each ';'-separated pair must hold exactly one '='
 * ("A=b=c" and a trailing ';' are invalid); a repeated key keeps its last value. Errors are code 4.
 */
export function parseCniArgs(args: string): Map<string, string> {
  const out = new Map<string, string>();
  if (args === "") return out;
  for (const pair of args.split(";")) {
    const kv = pair.split("=");
    if (kv.length !== 2) {
      throw new CniError(ErrCode.InvalidEnvironmentVariables, `ARGS: invalid pair ${JSON.stringify(pair)}`);
    }
    out.set(kv[0]!, kv[1]!);
  }
  return out;
}

/** Upstream's UnmarshallableBool: "1"/"true" or "0"/"false", any case. */
export function parseArgsBool(value: string, key: string): boolean {
  switch (value.toLowerCase()) {
    case "1":
    case "true":
      return true;
    case "0":
    case "false":
      return false;
  }
  throw new CniError(
    ErrCode.InvalidEnvironmentVariables,
    `ARGS: error parsing value of pair ${JSON.stringify(`${key}=${value}`)}: boolean unmarshal error: invalid input ${value.toLowerCase()}`,
  );
}

/**
 * Parses CNI_ARGS keeping the `known` keys (exact case, like Go's FieldByName). Any other key is an
 * error (code 4) unless the args contain IgnoreUnknown=1|true, which every upstream args struct accepts.
 */
export function loadArgs(args: string, known: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  const unknown: string[] = [];
  let ignoreUnknown = false;
  for (const [key, value] of parseCniArgs(args)) {
    if (key === "IgnoreUnknown") {
      ignoreUnknown = parseArgsBool(value, key);
      if (known.includes(key)) out.set(key, value);
    } else if (known.includes(key)) {
      out.set(key, value);
    } else {
      unknown.push(`${key}=${value}`);
    }
  }
  if (unknown.length > 0 && !ignoreUnknown) {
    throw new CniError(ErrCode.InvalidEnvironmentVariables, `ARGS: unknown args ${goQuoteList(unknown)}`);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Capability arguments (runtimeConfig)

/** runtimeConfig.dns: the capability spelling differs from a result's DNS (servers/searches). */
export interface RuntimeDNS {
  servers?: string[];
  searches?: string[];
  options?: string[];
}

/** Every conventional capability argument, decoded. Absent keys stay undefined. */
export interface CapabilityArgs {
  portMappings?: PortMapping[];
  bandwidth?: BandwidthEntry;
  ipRanges?: IPRange[][];
  ips?: string[];
  mac?: string;
  dns?: RuntimeDNS;
  /** Network name → DNS aliases of the container on that network (podman). */
  aliases?: Record<string, string[]>;
  deviceID?: string;
  infinibandGUID?: string;
  cgroupPath?: string;
  "io.kubernetes.cri.pod-annotations"?: Record<string, string>;
}

function invalid(path: string, msg: string): CniError {
  return new CniError(ErrCode.InvalidNetworkConfig, `${path}: ${msg}`);
}

function asList(value: unknown, path: string): unknown[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw typeError(path, "array", value);
  return value;
}

function asObject(value: unknown, path: string): JSONObject {
  if (!isObject(value)) throw typeError(path, "object", value);
  return value;
}

function asString(value: unknown, path: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string") throw typeError(path, "string", value);
  return value;
}

/** Go's net.IP text decoding: empty means unset, anything else must be an address (code 6). */
function optionalIP(obj: JSONObject, key: string, path: string): string | undefined {
  const v = getString(obj, key, path);
  if (v === undefined || v === "") return undefined;
  if (!parseIP(v)) {
    throw new CniError(ErrCode.DecodingFailure, `${joinPath(path, key)}: invalid IP address: ${v}`);
  }
  return v;
}

function port(obj: JSONObject, key: string, path: string): number {
  const v = getInt(obj, key, path) ?? 0;
  if (v < 1 || v > 65535) throw invalid(joinPath(path, key), `invalid port number ${v}`);
  return v;
}

/** runtimeConfig.portMappings: ports 1–65535, protocol lower-cased (default "tcp"), empty hostIP = any. */
export function parsePortMappings(value: unknown, path = "runtimeConfig.portMappings"): PortMapping[] {
  return asList(value, path).map((item, i) => {
    const p = `${path}[${i}]`;
    const o = asObject(item, p);
    const pm: PortMapping = {
      hostPort: port(o, "hostPort", p),
      containerPort: port(o, "containerPort", p),
      protocol: (getString(o, "protocol", p) || "tcp").toLowerCase(),
    };
    const hostIP = optionalIP(o, "hostIP", p);
    if (hostIP !== undefined) pm.hostIP = hostIP;
    return pm;
  });
}

/** runtimeConfig.bandwidth: rates in bit/s and bursts in bits, non-negative integers (Go uint64). */
export function parseBandwidth(value: unknown, path = "runtimeConfig.bandwidth"): BandwidthEntry | undefined {
  if (value === undefined || value === null) return undefined;
  const o = asObject(value, path);
  const out: BandwidthEntry = {};
  for (const key of ["ingressRate", "ingressBurst", "egressRate", "egressBurst"] as const) {
    const v = getInt(o, key, path);
    if (v === undefined) continue;
    if (v < 0) {
      throw new CniError(
        ErrCode.DecodingFailure,
        `${joinPath(path, key)}: expected unsigned integer, got ${v}`,
      );
    }
    out[key] = v;
  }
  return out;
}

/** One range of a range set (host-local's Range): subnet is a CIDR, the rest addresses. */
export function parseIPRange(value: unknown, path: string): IPRange {
  const o = asObject(value, path);
  const subnet = getString(o, "subnet", path);
  if (subnet === undefined || subnet === "") throw invalid(joinPath(path, "subnet"), "missing subnet");
  if (!parseCIDR(subnet)) {
    throw new CniError(
      ErrCode.DecodingFailure,
      `${joinPath(path, "subnet")}: invalid CIDR address: ${subnet}`,
    );
  }
  const r: IPRange = { subnet };
  for (const key of ["rangeStart", "rangeEnd", "gateway"] as const) {
    const v = optionalIP(o, key, path);
    if (v !== undefined) r[key] = v;
  }
  return r;
}

/** runtimeConfig.ipRanges: a list of range sets, each a list of ranges. */
export function parseIPRanges(value: unknown, path = "runtimeConfig.ipRanges"): IPRange[][] {
  return asList(value, path).map((set, i) =>
    asList(set, `${path}[${i}]`).map((r, j) => parseIPRange(r, `${path}[${i}][${j}]`)),
  );
}

/** runtimeConfig.ips: addresses, each plain ("10.0.0.5") or with a prefix ("10.0.0.5/24"). */
export function parseIPs(value: unknown, path = "runtimeConfig.ips"): string[] {
  return asList(value, path).map((v, i) => {
    const p = `${path}[${i}]`;
    const s = asString(v, p);
    if (s === undefined || !(s.includes("/") ? parseCIDR(s) : parseIP(s))) {
      throw new CniError(ErrCode.DecodingFailure, `${p}: invalid IP address: ${s ?? "null"}`);
    }
    return s;
  });
}

/** Whether s is a hardware address as Go's net.ParseMAC reads it, of `bytes` bytes. */
export function isHardwareAddr(s: string, bytes: number): boolean {
  const sep = s[2];
  if (sep === ":" || sep === "-") {
    const parts = s.split(sep);
    return parts.length === bytes && parts.every((p) => /^[0-9a-fA-F]{2}$/.test(p));
  }
  const parts = s.split(".");
  return parts.length * 2 === bytes && parts.every((p) => /^[0-9a-fA-F]{4}$/.test(p));
}

function hardwareAddr(value: unknown, path: string, bytes: number): string | undefined {
  const s = asString(value, path);
  if (s === undefined || s === "") return undefined;
  if (!isHardwareAddr(s, bytes))
    throw invalid(path, `invalid ${bytes * 8}-bit hardware address ${JSON.stringify(s)}`);
  return s;
}

/** runtimeConfig.mac: an Ethernet address. */
export function parseMac(value: unknown, path = "runtimeConfig.mac"): string | undefined {
  return hardwareAddr(value, path, 6);
}

/** runtimeConfig.infinibandGUID: a 64-bit GUID written like a MAC ("c2:11:22:33:44:55:66:77"). */
export function parseInfinibandGUID(
  value: unknown,
  path = "runtimeConfig.infinibandGUID",
): string | undefined {
  return hardwareAddr(value, path, 8);
}

/** runtimeConfig.dns: nameservers, search domains and resolver options the runtime wants. */
export function parseRuntimeDNS(value: unknown, path = "runtimeConfig.dns"): RuntimeDNS | undefined {
  if (value === undefined || value === null) return undefined;
  const o = asObject(value, path);
  const out: RuntimeDNS = {};
  const servers = getStringArray(o, "servers", path);
  const searches = getStringArray(o, "searches", path);
  const options = getStringArray(o, "options", path);
  if (servers) out.servers = servers;
  if (searches) out.searches = searches;
  if (options) out.options = options;
  return out;
}

/** runtimeConfig.aliases: network name → list of names. */
export function parseAliases(
  value: unknown,
  path = "runtimeConfig.aliases",
): Record<string, string[]> | undefined {
  if (value === undefined || value === null) return undefined;
  const o = asObject(value, path);
  const out: Record<string, string[]> = {};
  for (const key of Object.keys(o)) out[key] = getStringArray(o, key, path) ?? [];
  return out;
}

/** A string-valued capability (deviceID, cgroupPath). */
export function parseStringArg(value: unknown, path: string): string | undefined {
  const s = asString(value, path);
  return s === "" ? undefined : s;
}

/** runtimeConfig["io.kubernetes.cri.pod-annotations"]: annotation name → value. */
export function parsePodAnnotations(
  value: unknown,
  path = "runtimeConfig.io.kubernetes.cri.pod-annotations",
): Record<string, string> | undefined {
  if (value === undefined || value === null) return undefined;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(asObject(value, path))) out[k] = asString(v, `${path}.${k}`) ?? "";
  return out;
}

/** Converts a result-style DNS (nameservers/search) from runtimeConfig.dns (servers/searches). */
export function runtimeDNSToDNS(dns: RuntimeDNS): DNS {
  const out: DNS = {};
  if (dns.servers?.length) out.nameservers = [...dns.servers];
  if (dns.searches?.length) out.search = [...dns.searches];
  if (dns.options?.length) out.options = [...dns.options];
  return out;
}

/**
 * Decodes every conventional capability found in a config's runtimeConfig (keys matched like Go).
 * Unknown keys are ignored: they belong to other plugins.
 */
export function parseCapabilityArgs(runtimeConfig: unknown, path = "runtimeConfig"): CapabilityArgs {
  if (runtimeConfig === undefined || runtimeConfig === null) return {};
  const rc = asObject(runtimeConfig, path);
  const out: CapabilityArgs = {};
  const p = (k: string) => joinPath(path, k);
  const has = (k: string) => field(rc, k) !== undefined && field(rc, k) !== null;
  if (has("portMappings")) out.portMappings = parsePortMappings(field(rc, "portMappings"), p("portMappings"));
  const bandwidth = parseBandwidth(field(rc, "bandwidth"), p("bandwidth"));
  if (bandwidth) out.bandwidth = bandwidth;
  if (has("ipRanges")) out.ipRanges = parseIPRanges(field(rc, "ipRanges"), p("ipRanges"));
  if (has("ips")) out.ips = parseIPs(field(rc, "ips"), p("ips"));
  const mac = parseMac(field(rc, "mac"), p("mac"));
  if (mac) out.mac = mac;
  const dns = parseRuntimeDNS(field(rc, "dns"), p("dns"));
  if (dns) out.dns = dns;
  const aliases = parseAliases(field(rc, "aliases"), p("aliases"));
  if (aliases) out.aliases = aliases;
  const deviceID = parseStringArg(field(rc, "deviceID"), p("deviceID"));
  if (deviceID) out.deviceID = deviceID;
  const guid = parseInfinibandGUID(field(rc, "infinibandGUID"), p("infinibandGUID"));
  if (guid) out.infinibandGUID = guid;
  const cgroupPath = parseStringArg(field(rc, "cgroupPath"), p("cgroupPath"));
  if (cgroupPath) out.cgroupPath = cgroupPath;
  const annotations = parsePodAnnotations(
    field(rc, "io.kubernetes.cri.pod-annotations"),
    p("io.kubernetes.cri.pod-annotations"),
  );
  if (annotations) out["io.kubernetes.cri.pod-annotations"] = annotations;
  return out;
}
