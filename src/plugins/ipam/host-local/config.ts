/**
 * host-local's configuration (upstream allocator/config.go LoadIPAMConfig): the range sets in
 * allocation order (runtimeConfig.ipRanges, then the legacy top-level range, then ipam.ranges), the
 * requested IPs (CNI_ARGS IP=, args.cni.ips, runtimeConfig.ips), routes, dataDir and resolvConf.
 */

import { type Addr, formatAddr, parseAddr } from "../../../ipam-common/ipmath.ts";
import { loadArgs, parseIPRange, parseIPRanges, parseIPs } from "../../../spec/args.ts";
import { parseValidAttachments } from "../../../spec/conf.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import {
  field,
  getArray,
  getObject,
  getString,
  type JSONObject,
  parseJSONObject,
} from "../../../spec/json.ts";
import { parseResult } from "../../../spec/result.ts";
import type { GCAttachment, IPRange, Route } from "../../../spec/types.ts";
import { validateNetworkName } from "../../../spec/validate.ts";
import { compareVersions } from "../../../spec/version.ts";
import { DEFAULT_DATA_DIR } from "./files.ts";
import { canonicalizeRangeSet, type RangeSet, rangeSetsOverlap } from "./range.ts";

export interface HostLocalConf {
  /** The network name: the store's directory name. */
  name: string;
  cniVersion: string;
  ranges: RangeSet[];
  routes: Route[];
  dataDir: string;
  resolvConf?: string;
  /** Requested addresses in request order: CNI_ARGS, then args.cni.ips, then runtimeConfig.ips. */
  requestedIPs: Addr[];
  /** GC's cni.dev/valid-attachments; undefined when the key is absent. */
  validAttachments?: GCAttachment[];
}

function invalid(msg: string): CniError {
  return new CniError(ErrCode.InvalidNetworkConfig, msg);
}

/** An upstream ip.IP: an address, optionally with a prefix that is ignored. */
function requestedAddr(text: string): Addr | undefined {
  return parseAddr(text.includes("/") ? text.slice(0, text.indexOf("/")) : text);
}

function envRequestedIPs(cniArgs: string): Addr[] {
  const ip = loadArgs(cniArgs, ["IP"]).get("IP");
  if (ip === undefined || ip === "") return [];
  return ip.split(",").map((item) => {
    const a = requestedAddr(item.trim());
    if (!a) {
      throw new CniError(
        ErrCode.InvalidEnvironmentVariables,
        `ARGS: error parsing value of pair "IP=${ip}": invalid IP address ${item.trim()}`,
      );
    }
    return a;
  });
}

/** ipam.routes through the result decoder, so they are checked and printed exactly like a result's. */
export function parseIpamRoutes(ipam: JSONObject): Route[] {
  const routes = getArray(ipam, "routes", "ipam");
  if (!routes) return [];
  try {
    return parseResult({ cniVersion: "1.1.0", routes }).routes ?? [];
  } catch (err) {
    throw CniError.from(err, "ipam");
  }
}

function rawRangeSets(conf: JSONObject, ipam: JSONObject): IPRange[][] {
  const sets: IPRange[][] = [];
  const rc = getObject(conf, "runtimeConfig");
  if (rc) sets.push(...parseIPRanges(field(rc, "ipRanges"), "runtimeConfig.ipRanges"));
  // The old single-range form: subnet/rangeStart/rangeEnd/gateway directly under ipam.
  const legacy = getString(ipam, "subnet", "ipam");
  if (legacy !== undefined && legacy !== "") sets.push([parseIPRange(ipam, "ipam")]);
  sets.push(...parseIPRanges(getArray(ipam, "ranges", "ipam"), "ipam.ranges"));
  return sets;
}

function requestedIPs(conf: JSONObject, cniArgs: string): Addr[] {
  const out = envRequestedIPs(cniArgs);
  const cni = getObject(getObject(conf, "args") ?? {}, "cni", "args");
  const fromArgs = cni ? parseIPs(field(cni, "ips"), "args.cni.ips") : [];
  const rc = getObject(conf, "runtimeConfig");
  const fromRuntime = rc ? parseIPs(field(rc, "ips"), "runtimeConfig.ips") : [];
  for (const text of [...fromArgs, ...fromRuntime]) out.push(requestedAddr(text)!);
  return out;
}

/** Parses and canonicalizes a host-local configuration (stdin) plus CNI_ARGS. */
export function loadHostLocalConf(stdin: Uint8Array | string, cniArgs: string): HostLocalConf {
  const conf = parseJSONObject(stdin, "network configuration");
  const ipam = getObject(conf, "ipam");
  if (!ipam) throw invalid("IPAM config missing 'ipam' key");
  const name = getString(conf, "name") ?? "";
  validateNetworkName(name);
  const cniVersion = getString(conf, "cniVersion") ?? "";

  const requested = requestedIPs(conf, cniArgs);
  const raw = rawRangeSets(conf, ipam);
  if (raw.length === 0) throw invalid("no IP ranges specified");
  const ranges = raw.map((set, i) => {
    try {
      return canonicalizeRangeSet(set);
    } catch (err) {
      throw CniError.from(err, `invalid range set ${i}`);
    }
  });

  // CNI 0.2.0 and below carry one address per family.
  const v4 = ranges.filter((s) => s[0]!.subnet.ip.family === 4).length;
  if ((v4 > 1 || ranges.length - v4 > 1) && olderThan030(cniVersion)) {
    throw invalid(`CNI version ${cniVersion} does not support more than 1 address per family`);
  }
  for (let i = 0; i < ranges.length; i++) {
    for (let j = i + 1; j < ranges.length; j++) {
      if (rangeSetsOverlap(ranges[i]!, ranges[j]!)) throw invalid(`range set ${i} overlaps with ${j}`);
    }
  }

  const out: HostLocalConf = {
    name,
    cniVersion,
    ranges,
    routes: parseIpamRoutes(ipam),
    dataDir: getString(ipam, "dataDir", "ipam") || DEFAULT_DATA_DIR,
    requestedIPs: dedupe(requested),
  };
  const resolvConf = getString(ipam, "resolvConf", "ipam");
  if (resolvConf) out.resolvConf = resolvConf;
  const valid = parseValidAttachments(conf);
  if (valid) out.validAttachments = valid;
  return out;
}

function olderThan030(version: string): boolean {
  try {
    return compareVersions(version, "0.3.0") < 0;
  } catch {
    return true;
  }
}

/** Upstream keys requested IPs by their text, so a repeated address counts once. */
function dedupe(ips: Addr[]): Addr[] {
  const seen = new Set<string>();
  return ips.filter((a) => {
    const k = formatAddr(a);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}
