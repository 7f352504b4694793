/**
 * flannel's own config (upstream flannel-io/cni-plugin NetConf) and the delegate config it derives
 * (upstream doCmdAdd + getDelegateIPAM), key for key:
 *
 *   delegate = conf.delegate (must not hold `name` or `ipam`; `type` must be a string)
 *   delegate.runtimeConfig = conf.runtimeConfig           when present
 *   delegate.name = conf.name ; type ||= "bridge"
 *   ipMasq ||= !FLANNEL_IPMASQ ; mtu ||= FLANNEL_MTU ; bridge: isGateway ||= true
 *   delegate.cniVersion = conf.cniVersion                 when the config has one
 *   delegate.ipam = conf.ipam (type ||= "host-local") with
 *     ranges = [[{subnet: FLANNEL_SUBNET}], [{subnet: FLANNEL_IPV6_SUBNET}]]   (those present)
 *     routes = ipam.routes ++ [{dst: n} for n in FLANNEL_NETWORK ++ FLANNEL_IPV6_NETWORK]
 *
 * `||=` here means "unless the key is present" (upstream's hasKey), so `"ipMasq": false` stays false.
 */
import { CniError, ErrCode } from "../../../spec/errors.ts";
import { canonicalCIDR, canonicalIP } from "../../../spec/ipaddr.ts";
import { isObject, type JSONObject, jsonType, parseJSONObject } from "../../../spec/json.ts";
import { validateNetworkName } from "../../../spec/validate.ts";
import { netString, type SubnetEnv } from "./subnet-env.ts";

export const DEFAULT_SUBNET_FILE = "/run/flannel/subnet.env";
export const DEFAULT_DATA_DIR = "/var/lib/cni/flannel";

export interface FlannelConf {
  name: string;
  /** As written; "" when the config has none (then the delegate gets none either, like upstream). */
  cniVersion: string;
  subnetFile: string;
  dataDir: string;
  delegate: JSONObject;
  ipam?: JSONObject;
  runtimeConfig?: JSONObject;
}

function invalid(msg: string): CniError {
  return new CniError(ErrCode.InvalidNetworkConfig, msg);
}

function optString(raw: JSONObject, key: string): string | undefined {
  const v = raw[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string")
    throw invalid(`failed to load flannel netconf: ${key}: expected string, got ${jsonType(v)}`);
  return v;
}

function optObject(raw: JSONObject, key: string): JSONObject | undefined {
  const v = raw[key];
  if (v === undefined || v === null) return undefined;
  if (!isObject(v))
    throw invalid(`failed to load flannel netconf: ${key}: expected object, got ${jsonType(v)}`);
  return v;
}

export function parseConfig(stdin: Uint8Array): FlannelConf {
  const raw = parseJSONObject(stdin, "flannel netconf");
  const name = optString(raw, "name") ?? "";
  validateNetworkName(name);
  const dataDir = optString(raw, "dataDir") || DEFAULT_DATA_DIR;
  if (!dataDir.startsWith("/"))
    throw invalid(`flannel: dataDir must be an absolute path, got ${JSON.stringify(dataDir)}`);
  const conf: FlannelConf = {
    name,
    cniVersion: optString(raw, "cniVersion") ?? "",
    subnetFile: optString(raw, "subnetFile") || DEFAULT_SUBNET_FILE,
    dataDir,
    delegate: structuredClone(optObject(raw, "delegate") ?? {}),
  };
  const ipam = optObject(raw, "ipam");
  if (ipam) conf.ipam = structuredClone(ipam);
  const rc = optObject(raw, "runtimeConfig");
  if (rc) conf.runtimeConfig = rc;
  return conf;
}

/** Upstream's checks on `delegate` (cmdAdd). */
function checkDelegate(d: JSONObject): void {
  if ("type" in d && typeof d.type !== "string") {
    throw invalid("'delegate' dictionary, if present, must have (string) 'type' field");
  }
  if ("name" in d) throw invalid("'delegate' dictionary must not have 'name' field, it'll be set by flannel");
  if ("ipam" in d) throw invalid("'delegate' dictionary must not have 'ipam' field, it'll be set by flannel");
}

/** ipam.routes as upstream re-reads them (types.Route: dst, gw; other keys dropped). */
function ipamRoutes(ipam: JSONObject): JSONObject[] {
  if (!("routes" in ipam)) return [];
  const routes = ipam.routes;
  if (routes === null) return [];
  if (!Array.isArray(routes)) throw invalid("failed to read IPAM routes: ipam.routes: expected array");
  return routes.map((r, i) => {
    if (!isObject(r)) throw invalid(`failed to read IPAM routes: ipam.routes[${i}]: expected object`);
    const dst = typeof r.dst === "string" ? canonicalCIDR(r.dst) : undefined;
    if (!dst) throw invalid(`failed to read IPAM routes: ipam.routes[${i}].dst: invalid CIDR`);
    const out: JSONObject = { dst };
    if (r.gw !== undefined && r.gw !== null && r.gw !== "") {
      const gw = typeof r.gw === "string" ? canonicalIP(r.gw) : undefined;
      if (!gw) throw invalid(`failed to read IPAM routes: ipam.routes[${i}].gw: invalid IP`);
      out.gw = gw;
    }
    for (const k of ["mtu", "advmss", "priority", "table", "scope"]) {
      if (typeof r[k] === "number" && r[k] !== 0) out[k] = r[k];
    }
    return out;
  });
}

/** The delegate's config for this node's subnet.env. */
export function deriveDelegate(conf: FlannelConf, env: SubnetEnv): JSONObject {
  const d = structuredClone(conf.delegate);
  checkDelegate(d);
  if (conf.runtimeConfig) d.runtimeConfig = conf.runtimeConfig;
  d.name = conf.name;
  if (!("type" in d)) d.type = "bridge";
  if (!("ipMasq" in d)) d.ipMasq = !env.ipMasq;
  if (!("mtu" in d)) d.mtu = env.mtu;
  if (d.type === "bridge" && !("isGateway" in d)) d.isGateway = true;
  if (conf.cniVersion !== "") d.cniVersion = conf.cniVersion;
  const ipam: JSONObject = structuredClone(conf.ipam ?? {});
  if (!("type" in ipam)) ipam.type = "host-local";
  const ranges: JSONObject[][] = [];
  if (env.subnet) ranges.push([{ subnet: netString(env.subnet) }]);
  if (env.ip6Subnet) ranges.push([{ subnet: netString(env.ip6Subnet) }]);
  ipam.ranges = ranges;
  ipam.routes = [
    ...ipamRoutes(ipam),
    ...[...env.networks, ...env.ip6Networks].map((n) => ({ dst: netString(n) })),
  ];
  d.ipam = ipam;
  return d;
}

/** JSON with every object's keys sorted, as Go's json.Marshal of map[string]interface{} writes it. */
export function goMarshal(v: unknown): string {
  const sort = (x: unknown): unknown => {
    if (Array.isArray(x)) return x.map(sort);
    if (isObject(x)) {
      const out: JSONObject = {};
      for (const k of Object.keys(x).sort()) out[k] = sort(x[k]);
      return out;
    }
    return x;
  };
  return JSON.stringify(sort(v));
}
