/**
 * The dhcp IPAM configuration (upstream's IPAMConfig: daemonSocketPath, provide, request, priority)
 * and the two things made from it: the DHCP options every request carries, and the CNI result
 * built from an ACK.
 */
import { CniError, ErrCode } from "../../../spec/errors.ts";
import { parseJSONObject } from "../../../spec/json.ts";
import type { DNS, Result, Route } from "../../../spec/types.ts";
import {
  type DhcpMessage,
  maskToPrefix,
  Opt,
  optIPs,
  optText,
  parseClasslessRoutes,
  parseDomainSearch,
  parseStaticRoutes,
} from "./message.ts";

export const DEFAULT_SOCKET_PATH = "/run/cni/dhcp.sock";

export interface ProvideOption {
  option: string;
  value?: string;
  fromArg?: string;
}

export interface RequestOption {
  option?: string;
  skipDefault?: boolean;
}

export interface DhcpConf {
  cniVersion: string;
  name: string;
  socketPath: string;
  provide: ProvideOption[];
  request: RequestOption[];
  priority: number;
}

/** Upstream's optionNameToID (dhcp-options(5) names it accepts besides numbers). */
const OPTION_NAMES: Record<string, number> = {
  "dhcp-client-identifier": Opt.ClientIdentifier,
  "subnet-mask": Opt.SubnetMask,
  routers: Opt.Router,
  "host-name": Opt.HostName,
  "user-class": Opt.UserClass,
  "vendor-class-identifier": Opt.ClassIdentifier,
};

/**
 * The parameter request list when `request` does not say skipDefault: upstream asks for router and
 * subnet mask only; we also ask for DNS servers, domain name, search list and classless routes so
 * the result carries them (docs/differences.md).
 */
export const DEFAULT_REQUEST: readonly number[] = [
  Opt.Router,
  Opt.SubnetMask,
  Opt.DomainNameServer,
  Opt.DomainName,
  Opt.DomainSearch,
  Opt.ClasslessStaticRoutes,
];

function bad(msg: string): CniError {
  return new CniError(ErrCode.InvalidNetworkConfig, `dhcp: ${msg}`);
}

export function parseOptionName(option: string): number {
  const named = OPTION_NAMES[option];
  if (named !== undefined) return named;
  if (!/^\d{1,3}$/.test(option) || Number(option) > 255) {
    throw bad(`Can not parse option ${JSON.stringify(option)}: not a number or a known name`);
  }
  const code = Number(option);
  if (code === Opt.Pad || code === Opt.End) throw bad(`option ${code} cannot be sent`);
  return code;
}

function str(v: unknown, path: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === "number") return String(v); // "option": 12 means option "12"
  if (typeof v !== "string") throw bad(`${path} must be a string`);
  return v;
}

function list(v: unknown, path: string): Record<string, unknown>[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.some((e) => typeof e !== "object" || e === null || Array.isArray(e))) {
    throw bad(`${path} must be a list of objects`);
  }
  return v as Record<string, unknown>[];
}

export function loadDhcpConf(stdin: Uint8Array | string): DhcpConf {
  const raw = parseJSONObject(stdin, "network configuration");
  const ipam = raw.ipam;
  if (typeof ipam !== "object" || ipam === null || Array.isArray(ipam)) throw bad("missing 'ipam' section");
  const i = ipam as Record<string, unknown>;
  const name = typeof raw.name === "string" ? raw.name : "";
  const socketPath = str(i.daemonSocketPath, "ipam.daemonSocketPath") || DEFAULT_SOCKET_PATH;
  const provide = list(i.provide, "ipam.provide").map((p, n) => {
    const option = str(p.option, `ipam.provide[${n}].option`);
    if (!option) throw bad(`ipam.provide[${n}].option is required`);
    return {
      option,
      value: str(p.value, `ipam.provide[${n}].value`),
      fromArg: str(p.fromArg, `ipam.provide[${n}].fromArg`),
    };
  });
  const request = list(i.request, "ipam.request").map((r, n) => {
    const sd = r.skipDefault;
    if (sd !== undefined && typeof sd !== "boolean")
      throw bad(`ipam.request[${n}].skipDefault must be a boolean`);
    return { option: str(r.option, `ipam.request[${n}].option`), skipDefault: sd === true };
  });
  const priority = i.priority ?? 0;
  if (typeof priority !== "number" || !Number.isInteger(priority) || priority < 0) {
    throw bad("ipam.priority must be a non-negative integer");
  }
  return {
    cniVersion: typeof raw.cniVersion === "string" ? raw.cniVersion : "",
    name,
    socketPath,
    provide,
    request,
    priority,
  };
}

function cniArgsMap(args: string): Map<string, string> {
  // Upstream's prepareOptions splits loosely (SplitN on "="), ignoring pairs without one.
  const out = new Map<string, string>();
  for (const pair of args.split(";")) {
    const at = pair.indexOf("=");
    if (at > 0) out.set(pair.slice(0, at), pair.slice(at + 1));
  }
  return out;
}

/** Upstream's prepareOptions: provided options (value, then fromArg), then the parameter request list. */
export function prepareOptions(conf: DhcpConf, cniArgs: string): [number, Uint8Array][] {
  const enc = new TextEncoder();
  const args = cniArgsMap(cniArgs);
  const out: [number, Uint8Array][] = [];
  const set = (code: number, value: Uint8Array) => {
    const at = out.findIndex(([c]) => c === code);
    if (at >= 0) out[at] = [code, value];
    else out.push([code, value]);
  };
  for (const p of conf.provide) {
    const code = parseOptionName(p.option);
    if (p.value) {
      if (p.value.length > 255) throw bad(`value too long for option ${JSON.stringify(p.option)}`);
      set(code, enc.encode(p.value));
    }
    const fromArg = p.fromArg !== undefined ? args.get(p.fromArg) : undefined;
    if (fromArg !== undefined) {
      if (fromArg.length > 255) {
        throw bad(`value too long for option ${JSON.stringify(p.option)} from CNI_ARGS ${p.fromArg}`);
      }
      set(code, enc.encode(fromArg));
    }
  }
  const prl: number[] = [];
  let skipDefault = false;
  for (const r of conf.request) {
    if (r.skipDefault) skipDefault = true;
    if (!r.option) continue;
    const code = parseOptionName(r.option);
    if (!prl.includes(code)) prl.push(code);
  }
  if (!skipDefault) for (const c of DEFAULT_REQUEST) if (!prl.includes(c)) prl.push(c);
  if (prl.length > 0) set(Opt.ParameterRequestList, Uint8Array.from(prl));
  return out;
}

const SCOPE_LINK = 253;

/** The CNI result for an ACK: the address with its mask, router as gateway, routes, DNS. */
export function resultFromAck(ack: DhcpMessage, priority: number, cniVersion = "1.1.0"): Result {
  const mask = ack.options.get(Opt.SubnetMask);
  if (mask?.length !== 4)
    throw new CniError(ErrCode.Internal, "DHCP option Subnet Mask not found in DHCPACK");
  const prefix = maskToPrefix(mask);
  if (prefix === undefined) throw new CniError(ErrCode.Internal, "DHCP option Subnet Mask is not contiguous");
  const gateway = optIPs(ack, Opt.Router)[0];
  const result: Result = {
    cniVersion,
    ips: [gateway ? { address: `${ack.yiaddr}/${prefix}`, gateway } : { address: `${ack.yiaddr}/${prefix}` }],
    routes: routesFromAck(ack, gateway),
  };
  if (priority) for (const r of result.routes!) r.priority = priority;
  const dns = dnsFromAck(ack);
  if (dns) result.dns = dns;
  return result;
}

/** RFC 3442: option 121, when present, replaces option 33 and the router (upstream's Routes()). */
export function routesFromAck(ack: DhcpMessage, gateway = optIPs(ack, Opt.Router)[0]): Route[] {
  const classless = ack.options.get(Opt.ClasslessStaticRoutes);
  if (classless && classless.length > 0) {
    return parseClasslessRoutes(classless).map((r) =>
      r.gw === "0.0.0.0" ? { dst: r.dst, gw: r.gw, scope: SCOPE_LINK } : { dst: r.dst, gw: r.gw },
    );
  }
  const routes: Route[] = [];
  const statics = ack.options.get(Opt.StaticRoutes);
  if (statics) for (const r of parseStaticRoutes(statics)) routes.push({ dst: r.dst, gw: r.gw });
  if (gateway) routes.push({ dst: "0.0.0.0/0", gw: gateway });
  return routes;
}

function dnsFromAck(ack: DhcpMessage): DNS | undefined {
  const dns: DNS = {};
  const servers = optIPs(ack, Opt.DomainNameServer);
  if (servers.length) dns.nameservers = servers;
  const domain = optText(ack, Opt.DomainName);
  if (domain) dns.domain = domain;
  const search = ack.options.get(Opt.DomainSearch);
  if (search?.length) {
    try {
      dns.search = parseDomainSearch(search);
    } catch {
      // a broken search list is left out rather than failing the ADD
    }
  }
  return Object.keys(dns).length ? dns : undefined;
}

/** Upstream's generateClientID: containerID/netName/ifName, at most 254 bytes. */
export function clientIDFor(containerID: string, netName: string, ifName: string): string {
  const id = `${containerID}/${netName}/${ifName}`;
  return id.length > 254 ? id.slice(0, 254) : id;
}
