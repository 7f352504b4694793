/**
 * Results of every spec version, parsed into the canonical 1.1.0 shape and printed back in any
 * version with upstream's conversions (pkg/types/020, 040, 100):
 *  - 0.1.0/0.2.0: `ip4`/`ip6` ({ip, gateway, routes}) and `dns`; converting down keeps the first IPv4 and
 *    the first IPv6 address and files each route under its family; no address at all cannot convert.
 *  - 0.3.x/0.4.0: `interfaces`, `ips[]` with `version` "4"/"6", `routes`, `dns`.
 *  - 1.0.0 drops `ips[].version`; 1.1.0 adds route mtu/advmss/priority/table/scope and interface
 *    mtu/socketPath/pciID, which older versions drop.
 * Addresses must parse (CIDR for addresses and destinations) and are printed as Go prints them.
 */
import { CniError, ErrCode } from "./errors.ts";
import { formatCIDR, formatIP, ipFamily, parseCIDR, parseIP } from "./ipaddr.ts";
import {
  field,
  getArray,
  getInt,
  getObject,
  getString,
  getStringArray,
  isObject,
  type JSONObject,
  joinPath,
  parseJSON,
  typeError,
} from "./json.ts";
import type { DNS, Interface, IPConfig, NetConf, Result, Route } from "./types.ts";
import { isSupportedVersion } from "./version.ts";

type Family = "02x" | "04x" | "1x";

function familyOf(version: string): Family {
  if (version === "0.1.0" || version === "0.2.0") return "02x";
  if (version === "0.3.0" || version === "0.3.1" || version === "0.4.0") return "04x";
  return "1x";
}

function decodeError(path: string, msg: string): CniError {
  return new CniError(ErrCode.DecodingFailure, `${path}: ${msg}`);
}

// ---------------------------------------------------------------------------------------------------
// Parsing

function cidrField(o: JSONObject, key: string, path: string): string {
  const p = joinPath(path, key);
  const v = getString(o, key, path);
  if (v === undefined) throw decodeError(p, "missing");
  const c = parseCIDR(v);
  if (!c) throw decodeError(p, `invalid CIDR address: ${v}`);
  return formatCIDR(c);
}

/** Go's net.IP: "" or absent is unset. */
function ipField(o: JSONObject, key: string, path: string): string | undefined {
  const v = getString(o, key, path);
  if (v === undefined || v === "") return undefined;
  const ip = parseIP(v);
  if (!ip) throw decodeError(joinPath(path, key), `invalid IP address: ${v}`);
  return formatIP(ip);
}

function list(o: JSONObject, key: string, path: string): [JSONObject, string][] {
  const arr = getArray(o, key, path) ?? [];
  return arr.map((item, i) => {
    const p = `${joinPath(path, key)}[${i}]`;
    if (!isObject(item)) throw typeError(p, "object", item);
    return [item, p];
  });
}

function parseDNS(o: JSONObject, path: string): DNS | undefined {
  const d = getObject(o, "dns", path);
  if (!d) return undefined;
  const p = joinPath(path, "dns");
  const out: DNS = {};
  const nameservers = getStringArray(d, "nameservers", p);
  const domain = getString(d, "domain", p);
  const search = getStringArray(d, "search", p);
  const options = getStringArray(d, "options", p);
  if (nameservers?.length) out.nameservers = nameservers;
  if (domain) out.domain = domain;
  if (search?.length) out.search = search;
  if (options?.length) out.options = options;
  return isDNSEmpty(out) ? undefined : out;
}

function parseRoute(o: JSONObject, path: string, v11: boolean): Route {
  const r: Route = { dst: cidrField(o, "dst", path) };
  const gw = ipField(o, "gw", path);
  if (gw !== undefined) r.gw = gw;
  if (v11) {
    // Go's int fields print only when non-zero; table and scope are pointers, so 0 is kept.
    for (const key of ["mtu", "advmss", "priority"] as const) {
      const n = getInt(o, key, path);
      if (n) r[key] = n;
    }
    for (const key of ["table", "scope"] as const) {
      const n = getInt(o, key, path);
      if (n !== undefined) r[key] = n;
    }
  }
  return r;
}

function parseInterface(o: JSONObject, path: string, v11: boolean): Interface {
  const intf: Interface = { name: getString(o, "name", path) ?? "" };
  const mac = getString(o, "mac", path);
  if (mac) intf.mac = mac;
  if (v11) {
    const mtu = getInt(o, "mtu", path);
    if (mtu) intf.mtu = mtu;
  }
  const sandbox = getString(o, "sandbox", path);
  if (sandbox) intf.sandbox = sandbox;
  if (v11) {
    const socketPath = getString(o, "socketPath", path);
    if (socketPath) intf.socketPath = socketPath;
    const pciID = getString(o, "pciID", path);
    if (pciID) intf.pciID = pciID;
  }
  return intf;
}

function parseIPConfig(o: JSONObject, path: string): IPConfig {
  const ipc: IPConfig = { address: cidrField(o, "address", path) };
  const intf = getInt(o, "interface", path);
  if (intf !== undefined) ipc.interface = intf;
  const gw = ipField(o, "gateway", path);
  if (gw !== undefined) ipc.gateway = gw;
  return ipc;
}

function parse02x(o: JSONObject, version: string): Result {
  const out: Result = { cniVersion: version };
  const ips: IPConfig[] = [];
  const routes: Route[] = [];
  for (const key of ["ip4", "ip6"]) {
    const ipc = getObject(o, key, "");
    if (!ipc) continue;
    const entry: IPConfig = { address: cidrField(ipc, "ip", key) };
    const gw = ipField(ipc, "gateway", key);
    if (gw !== undefined) entry.gateway = gw;
    ips.push(entry);
    for (const [r, p] of list(ipc, "routes", key)) routes.push(parseRoute(r, p, false));
  }
  if (ips.length) out.ips = ips;
  if (routes.length) out.routes = routes;
  const dns = parseDNS(o, "");
  if (dns) out.dns = dns;
  return out;
}

function parseModern(o: JSONObject, version: string): Result {
  const v11 = version === "1.1.0";
  const out: Result = { cniVersion: version };
  const interfaces = list(o, "interfaces", "").map(([x, p]) => parseInterface(x, p, v11));
  const ips = list(o, "ips", "").map(([x, p]) => parseIPConfig(x, p));
  const routes = list(o, "routes", "").map(([x, p]) => parseRoute(x, p, v11));
  if (interfaces.length) out.interfaces = interfaces;
  if (ips.length) out.ips = ips;
  if (routes.length) out.routes = routes;
  const dns = parseDNS(o, "");
  if (dns) out.dns = dns;
  return out;
}

/**
 * Parses a result of any version into the canonical shape. The version is the result's own
 * `cniVersion`, else `version` (the config's, as upstream injects it), else 0.1.0 (which may omit it).
 * Malformed results → CniError 6; an unknown version → CniError 1.
 */
export function parseResult(json: unknown, version?: string): Result {
  if (!isObject(json)) throw typeError("result", "object", json);
  const declared = getString(json, "cniVersion", "");
  const v = declared || version || "0.1.0";
  if (!isSupportedVersion(v)) {
    throw new CniError(ErrCode.IncompatibleVersion, `unsupported CNI result version "${v}"`);
  }
  return familyOf(v) === "02x" ? parse02x(json, v) : parseModern(json, v);
}

/** parseResult of JSON bytes (a plugin's stdout, a cache file). */
export function parseResultBytes(bytes: Uint8Array | string, version?: string): Result {
  return parseResult(parseJSON(bytes, "result"), version);
}

/** The config's prevResult parsed (undefined when there is none); errors say "could not parse prevResult". */
export function parsePrevResult(conf: NetConf): Result | undefined {
  const raw = field(conf, "prevResult");
  if (raw === undefined || raw === null) return undefined;
  try {
    return parseResult(raw, conf.cniVersion);
  } catch (err) {
    throw CniError.from(err, "could not parse prevResult", ErrCode.DecodingFailure);
  }
}

// ---------------------------------------------------------------------------------------------------
// Printing

export function isDNSEmpty(dns: DNS | undefined): boolean {
  return !dns || (!dns.nameservers?.length && !dns.domain && !dns.search?.length && !dns.options?.length);
}

function dnsJSON(dns: DNS | undefined): JSONObject {
  const out: JSONObject = {};
  if (!dns) return out;
  if (dns.nameservers?.length) out["nameservers"] = [...dns.nameservers];
  if (dns.domain) out["domain"] = dns.domain;
  if (dns.search?.length) out["search"] = [...dns.search];
  if (dns.options?.length) out["options"] = [...dns.options];
  return out;
}

function routeJSON(r: Route, v11: boolean): JSONObject {
  const out: JSONObject = { dst: r.dst };
  if (r.gw) out["gw"] = r.gw;
  if (v11) {
    if (r.mtu) out["mtu"] = r.mtu;
    if (r.advmss) out["advmss"] = r.advmss;
    if (r.priority) out["priority"] = r.priority;
    if (r.table !== undefined) out["table"] = r.table;
    if (r.scope !== undefined) out["scope"] = r.scope;
  }
  return out;
}

function interfaceJSON(i: Interface, v11: boolean): JSONObject {
  const out: JSONObject = { name: i.name };
  if (i.mac) out["mac"] = i.mac;
  if (v11 && i.mtu) out["mtu"] = i.mtu;
  if (i.sandbox) out["sandbox"] = i.sandbox;
  if (v11 && i.socketPath) out["socketPath"] = i.socketPath;
  if (v11 && i.pciID) out["pciID"] = i.pciID;
  return out;
}

/** 4 or 6 for an address or CIDR text; IPv4-mapped counts as 4, as upstream's To4() decides. */
export function addressFamily(addr: string): 4 | 6 {
  const c = parseCIDR(addr);
  const ip = c ? c.ip : parseIP(addr);
  if (!ip) throw decodeError("address", `invalid IP address: ${addr}`);
  return ipFamily(ip);
}

/** The result's IP configs split by family, in order. */
export function resultIPsByFamily(result: Result): { v4: IPConfig[]; v6: IPConfig[] } {
  const v4: IPConfig[] = [];
  const v6: IPConfig[] = [];
  for (const ipc of result.ips ?? []) (addressFamily(ipc.address) === 4 ? v4 : v6).push(ipc);
  return { v4, v6 };
}

function to02x(result: Result, version: string): JSONObject {
  const { v4, v6 } = resultIPsByFamily(result);
  const first4 = v4[0];
  const first6 = v6[0];
  // 0.2.0 and earlier require at least one address.
  if (!first4 && !first6) {
    throw new CniError(
      ErrCode.Internal,
      "cannot convert: no valid IP addresses",
      `to CNI version ${version}`,
    );
  }
  const block = (ipc: IPConfig, family: 4 | 6): JSONObject => {
    const out: JSONObject = { ip: ipc.address };
    if (ipc.gateway) out["gateway"] = ipc.gateway;
    const routes = (result.routes ?? []).filter((r) => addressFamily(r.dst) === family);
    if (routes.length) out["routes"] = routes.map((r) => routeJSON(r, false));
    return out;
  };
  const out: JSONObject = { cniVersion: version };
  if (first4) out["ip4"] = block(first4, 4);
  if (first6) out["ip6"] = block(first6, 6);
  out["dns"] = dnsJSON(result.dns);
  return out;
}

function toModern(result: Result, version: string): JSONObject {
  const is04x = familyOf(version) === "04x";
  const v11 = version === "1.1.0";
  const out: JSONObject = { cniVersion: version };
  if (result.interfaces?.length) out["interfaces"] = result.interfaces.map((i) => interfaceJSON(i, v11));
  if (result.ips?.length) {
    out["ips"] = result.ips.map((ipc) => {
      const o: JSONObject = {};
      if (is04x) o["version"] = String(addressFamily(ipc.address));
      if (ipc.interface !== undefined) o["interface"] = ipc.interface;
      o["address"] = ipc.address;
      if (ipc.gateway) o["gateway"] = ipc.gateway;
      return o;
    });
  }
  if (result.routes?.length) out["routes"] = result.routes.map((r) => routeJSON(r, v11));
  // Upstream prints "dns" even when empty (a non-pointer struct) up to 1.0.0, which the Go plugins of
  // this era speak; its 1.1.0 result type omits an empty one.
  if (version !== "1.1.0" || !isDNSEmpty(result.dns)) out["dns"] = dnsJSON(result.dns);
  return out;
}

/**
 * The result as the plain JSON object of `toVersion` ("" means 0.1.0, as upstream). Unknown version →
 * CniError 1; a result without addresses cannot become 0.1.0/0.2.0 → CniError 999 like upstream.
 */
export function convertResult(result: Result, toVersion: string): JSONObject {
  const v = toVersion || "0.1.0";
  if (!isSupportedVersion(v)) {
    throw new CniError(
      ErrCode.IncompatibleVersion,
      `no converter for CNI result version ${result.cniVersion} to ${toVersion}`,
    );
  }
  return familyOf(v) === "02x" ? to02x(result, v) : toModern(result, v);
}

/** The result printed in `version` exactly as upstream's PrintResult does (4-space indent, no newline). */
export function formatResult(result: Result, version: string): string {
  return JSON.stringify(convertResult(result, version), null, 4);
}
