/**
 * static IPAM configuration (upstream plugins/ipam/static LoadIPAMConfig). Addresses come from
 * ipam.addresses, plus CNI_ARGS IP= (appended; GATEWAY= sets the gateway of every address whose
 * subnet holds it); args.cni.ips replaces them all, and runtimeConfig.ips (the `ips` capability)
 * replaces them again: capability > args > CNI_ARGS + config.
 */
import { loadArgs } from "../../../spec/args.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import { formatIP, type IPBytes, parseCIDR, parseIP, toIPv4 } from "../../../spec/ipaddr.ts";
import {
  field,
  getArray,
  getObject,
  getString,
  isObject,
  type JSONObject,
  parseJSONObject,
  typeError,
} from "../../../spec/json.ts";
import { parseResult } from "../../../spec/result.ts";
import type { DNS, Route } from "../../../spec/types.ts";
import { compareVersions } from "../../../spec/version.ts";

export interface StaticAddress {
  /** The host address (IPv4-mapped folded to IPv4). */
  ip: IPBytes;
  prefix: number;
  gateway?: IPBytes;
}

export interface StaticConf {
  name: string;
  cniVersion: string;
  addresses: StaticAddress[];
  routes: Route[];
  dns?: DNS;
}

function canonical(ip: IPBytes): IPBytes {
  return toIPv4(ip) ?? ip;
}

function parseAddress(text: string, what: string): StaticAddress {
  const c = parseCIDR(text);
  if (!c) {
    throw new CniError(
      ErrCode.InvalidNetworkConfig,
      `${what} is expected to be in CIDR notation, got: '${text}'`,
    );
  }
  return { ip: canonical(c.ip), prefix: c.prefix };
}

/** Whether the subnet of `a` holds `ip` (same family, same first `prefix` bits). */
export function addressContains(a: StaticAddress, ip: IPBytes): boolean {
  const other = canonical(ip);
  if (other.length !== a.ip.length) return false;
  for (let bit = 0; bit < a.prefix; bit++) {
    const byte = bit >> 3;
    const mask = 0x80 >> (bit & 7);
    if ((a.ip[byte]! & mask) !== (other[byte]! & mask)) return false;
  }
  return true;
}

function configAddresses(ipam: JSONObject): StaticAddress[] {
  const list = getArray(ipam, "addresses", "ipam") ?? [];
  return list.map((item, i) => {
    const path = `ipam.addresses[${i}]`;
    if (!isObject(item)) throw typeError(path, "object", item);
    const a = parseAddress(getString(item, "address", path) ?? "", "the 'address' field");
    const gw = getString(item, "gateway", path);
    if (gw) {
      const ip = parseIP(gw);
      if (!ip) throw new CniError(ErrCode.DecodingFailure, `${path}.gateway: invalid IP address: ${gw}`);
      a.gateway = canonical(ip);
    }
    return a;
  });
}

/** CNI_ARGS IP=cidr,cidr is appended; GATEWAY=ip,ip then applies to the addresses holding it. */
function applyEnvArgs(addresses: StaticAddress[], cniArgs: string): void {
  const env = loadArgs(cniArgs, ["IP", "GATEWAY"]);
  const ips = env.get("IP") ?? "";
  if (ips !== "") {
    for (const item of ips.split(",")) addresses.push(parseAddress(item.trim(), "the 'ip' field"));
  }
  const gws = env.get("GATEWAY") ?? "";
  if (gws === "") return;
  for (const item of gws.split(",")) {
    const gw = parseIP(item.trim());
    if (!gw) throw new CniError(ErrCode.InvalidEnvironmentVariables, `invalid gateway address: ${item}`);
    for (const a of addresses) if (addressContains(a, gw)) a.gateway = canonical(gw);
  }
}

/** A list of CIDRs replacing every address (args.cni.ips, runtimeConfig.ips). */
function replacement(obj: JSONObject | undefined, path: string): StaticAddress[] | undefined {
  if (!obj) return undefined;
  const v = field(obj, "ips");
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v)) throw typeError(`${path}.ips`, "array", v);
  if (v.length === 0) return undefined;
  return v.map((s, i) => {
    if (typeof s !== "string") throw typeError(`${path}.ips[${i}]`, "string", s);
    return parseAddress(s, "an entry in the 'ips' field");
  });
}

function routesAndDNS(ipam: JSONObject): { routes: Route[]; dns?: DNS } {
  const routes = getArray(ipam, "routes", "ipam");
  const dns = getObject(ipam, "dns", "ipam");
  try {
    const r = parseResult({ cniVersion: "1.1.0", routes: routes ?? [], dns: dns ?? null });
    return r.dns ? { routes: r.routes ?? [], dns: r.dns } : { routes: r.routes ?? [] };
  } catch (err) {
    throw CniError.from(err, "ipam");
  }
}

export function loadStaticConf(stdin: Uint8Array | string, cniArgs: string): StaticConf {
  const conf = parseJSONObject(stdin, "network configuration");
  const ipam = getObject(conf, "ipam");
  if (!ipam) throw new CniError(ErrCode.InvalidNetworkConfig, "IPAM config missing 'ipam' key");
  const cniVersion = getString(conf, "cniVersion") ?? "";

  let addresses = configAddresses(ipam);
  applyEnvArgs(addresses, cniArgs);
  const args = getObject(conf, "args");
  addresses = replacement(args && getObject(args, "cni", "args"), "args.cni") ?? addresses;
  addresses = replacement(getObject(conf, "runtimeConfig"), "runtimeConfig") ?? addresses;

  // CNI 0.2.0 and below carry one address per family.
  const v4 = addresses.filter((a) => a.ip.length === 4).length;
  if (v4 > 1 || addresses.length - v4 > 1) {
    let old = true;
    try {
      old = compareVersions(cniVersion, "0.3.0") < 0;
    } catch {}
    if (old) {
      throw new CniError(
        ErrCode.InvalidNetworkConfig,
        `CNI version ${cniVersion} does not support more than 1 address per family`,
      );
    }
  }
  return { name: getString(conf, "name") ?? "", cniVersion, addresses, ...routesAndDNS(ipam) };
}

export function formatAddress(a: StaticAddress): string {
  return `${formatIP(a.ip)}/${a.prefix}`;
}
