/**
 * whereabouts' IPAM configuration (k8snetworkplumbingwg/whereabouts pkg/types IPAMConfig), the etcd
 * datastore keys included, plus ours for node-affine blocks:
 *
 *   range "10.0.0.0/24" | "10.0.0.5/24" (start at .5) | "10.0.0.5-10.0.0.50/24"; range_start, range_end,
 *   exclude [CIDR…], gateway, ipRanges [{range, range_start, range_end, exclude}] (one address each),
 *   network_name (a separate pool for an overlapping range), routes, dns, datastore ("etcd" only),
 *   etcd_host ("host:port" or a URL; ours also takes a comma-separated list), etcd_username,
 *   etcd_password, etcd_key_file, etcd_cert_file, etcd_ca_cert_file, log_file / log_level (accepted).
 *   Ours: etcd_endpoints [URL…], etcd_prefix (default "/tscni/ipam"), etcd_timeout_ms, node_name
 *   (default $NODENAME, then the host name), block_size / block_size_v6 (the blocks' prefix length;
 *   default /26 and /122).
 */
import type { EtcdOptions } from "../etcd/client.ts";
import {
  type Addr,
  formatAddr,
  lastAddr,
  networkAddr,
  parseAddr as parseIPAddr,
  parseNetwork,
  type Subnet,
  subnetContains,
} from "../ipam-common/ipmath.ts";
import { parseCniArgs } from "../spec/args.ts";
import { parseValidAttachments } from "../spec/conf.ts";
import { CniError, ErrCode } from "../spec/errors.ts";
import {
  getArray,
  getInt,
  getObject,
  getString,
  getStringArray,
  isObject,
  type JSONObject,
  parseJSONObject,
} from "../spec/json.ts";
import type { DNS, GCAttachment, Route } from "../spec/types.ts";
import { validateNetworkName } from "../spec/validate.ts";
// Our fs, not node:fs/node:os: importing those costs ~3.5 ms of every plugin start-up (docs/startup.md).
import { readFile } from "../sys/fs.ts";

/** whereabouts' config tolerates spaces around addresses and CIDRs. */
function parseAddr(s: string): Addr | undefined {
  return parseIPAddr(s.trim());
}

function parseSubnet(s: string): ReturnType<typeof parseNetwork> {
  return parseNetwork(s.trim());
}

/** One pool: a CIDR, the allocatable span inside it and the addresses never handed out. */
export interface PoolRange {
  subnet: Subnet;
  start: Addr;
  end: Addr;
  exclude: Subnet[];
  gateway?: Addr;
  /** The pool's etcd key segment: network_name (if any) and the CIDR. */
  id: string;
  /** The block prefix length inside this range. */
  blockPrefix: number;
}

export interface WhereaboutsConf {
  name: string;
  cniVersion: string;
  ranges: PoolRange[];
  routes: Route[];
  dns?: DNS;
  etcd: EtcdOptions;
  prefix: string;
  node: string;
  podNamespace: string;
  podName: string;
  validAttachments?: GCAttachment[];
}

/** gethostname(2): the UTS namespace's node name, as node:os would give it. */
function hostname(): string {
  return readFile("/proc/sys/kernel/hostname", "utf8").trim();
}

function invalid(msg: string): CniError {
  return new CniError(ErrCode.InvalidNetworkConfig, `whereabouts: ${msg}`);
}

function readPem(path: string, key: string): string {
  try {
    return readFile(path, "utf8");
  } catch (err) {
    throw new CniError(ErrCode.IOFailure, `whereabouts: reading ${key} ${path}: ${(err as Error).message}`);
  }
}

/** "a.b.c.d/p", "a.b.c.d-e.f.g.h/p" → subnet, plus the start (and end) written into the range. */
function parseRangeText(text: string, path: string): { subnet: Subnet; start?: Addr; end?: Addr } {
  const slash = text.lastIndexOf("/");
  const dash = text.indexOf("-");
  if (dash > 0 && slash > dash) {
    const a = parseAddr(text.slice(0, dash));
    const b = parseAddr(text.slice(dash + 1, slash));
    const s = parseSubnet(`${text.slice(0, dash)}${text.slice(slash)}`);
    if (!a || !b || !s) throw invalid(`${path}: invalid range ${JSON.stringify(text)}`);
    return { subnet: s.net, start: a, end: b };
  }
  const s = parseSubnet(text);
  if (!s) throw invalid(`${path}: invalid range ${JSON.stringify(text)} (want CIDR)`);
  return s.hostBits ? { subnet: s.net, start: s.ip } : { subnet: s.net };
}

function addrKey(obj: JSONObject, key: string, path: string): Addr | undefined {
  const t = getString(obj, key, path);
  if (t === undefined || t === "") return undefined;
  const a = parseAddr(t);
  if (!a) throw invalid(`${path}.${key}: invalid IP ${JSON.stringify(t)}`);
  return a;
}

function parsePoolRange(
  obj: JSONObject,
  path: string,
  networkName: string,
  gateway: Addr | undefined,
  blockSizes: { v4?: number; v6?: number },
): PoolRange {
  const text = getString(obj, "range", path);
  if (!text) throw invalid(`${path}: missing "range"`);
  const r = parseRangeText(text, path);
  const { subnet } = r;
  const v4 = subnet.ip.family === 4;
  const first = networkAddr(subnet);
  const last = lastAddr(subnet);
  // IPv4 never hands out the network and broadcast addresses (whereabouts skips .0 and the last).
  const lo = v4 && subnet.prefix < 31 ? { family: 4 as const, value: first.value + 1n } : first;
  const hi = v4 && subnet.prefix < 31 ? { family: 4 as const, value: last.value - 1n } : last;
  let start = addrKey(obj, "range_start", path) ?? r.start ?? lo;
  let end = addrKey(obj, "range_end", path) ?? r.end ?? hi;
  for (const [k, a] of [
    ["range_start", start],
    ["range_end", end],
  ] as const) {
    if (!subnetContains(subnet, a)) throw invalid(`${path}.${k} ${formatAddr(a)} is outside ${text}`);
  }
  if (start.value < lo.value) start = lo;
  if (end.value > hi.value) end = hi;
  if (start.value > end.value) throw invalid(`${path}: range_start is after range_end`);
  const exclude = (getStringArray(obj, "exclude", path) ?? []).map((e, i) => {
    const s = parseSubnet(e.includes("/") ? e : `${e}/${v4 ? 32 : 128}`);
    if (!s || s.net.ip.family !== subnet.ip.family)
      throw invalid(`${path}.exclude[${i}]: invalid CIDR ${JSON.stringify(e)}`);
    return s.net;
  });
  const bits = v4 ? 32 : 128;
  const wanted = (v4 ? blockSizes.v4 : blockSizes.v6) ?? (v4 ? 26 : 122);
  if (wanted < 1 || wanted > bits)
    throw invalid(`block_size ${wanted} is not a prefix length for IPv${v4 ? 4 : 6}`);
  const blockPrefix = Math.max(subnet.prefix, wanted);
  const cidr = `${formatAddr(subnet.ip)}/${subnet.prefix}`.replace(/[/:]/g, "_");
  const id = networkName ? `${networkName}~${cidr}` : cidr;
  const out: PoolRange = { subnet, start, end, exclude, id, blockPrefix };
  if (gateway && gateway.family === subnet.ip.family) out.gateway = gateway;
  return out;
}

function parseRoutes(ipam: JSONObject): Route[] {
  return (getArray(ipam, "routes", "ipam") ?? []).map((r, i) => {
    if (!isObject(r)) throw invalid(`ipam.routes[${i}]: expected object`);
    const dst = getString(r, "dst", `ipam.routes[${i}]`);
    if (!dst || !parseSubnet(dst))
      throw invalid(`ipam.routes[${i}].dst: invalid CIDR ${JSON.stringify(dst)}`);
    const gw = getString(r, "gw", `ipam.routes[${i}]`);
    if (gw && !parseAddr(gw)) throw invalid(`ipam.routes[${i}].gw: invalid IP ${JSON.stringify(gw)}`);
    return gw ? { dst, gw } : { dst };
  });
}

function etcdOptions(ipam: JSONObject): EtcdOptions {
  const list = getStringArray(ipam, "etcd_endpoints", "ipam");
  const host = getString(ipam, "etcd_host", "ipam");
  const endpoints =
    list ??
    (host
      ? host
          .split(",")
          .map((s) => s.trim())
          .filter(Boolean)
      : []);
  if (endpoints.length === 0) throw invalid('no etcd endpoints: set "etcd_host" (or "etcd_endpoints")');
  const o: EtcdOptions = { endpoints };
  const user = getString(ipam, "etcd_username", "ipam");
  if (user) {
    o.username = user;
    o.password = getString(ipam, "etcd_password", "ipam") ?? "";
  }
  const ca = getString(ipam, "etcd_ca_cert_file", "ipam");
  const cert = getString(ipam, "etcd_cert_file", "ipam");
  const key = getString(ipam, "etcd_key_file", "ipam");
  if (!!cert !== !!key) throw invalid("etcd_cert_file and etcd_key_file go together");
  if (ca || cert) {
    o.tls = {};
    if (ca) o.tls.ca = readPem(ca, "etcd_ca_cert_file");
    if (cert && key) {
      o.tls.cert = readPem(cert, "etcd_cert_file");
      o.tls.key = readPem(key, "etcd_key_file");
    }
  }
  const t = getInt(ipam, "etcd_timeout_ms", "ipam");
  if (t !== undefined) o.timeoutMs = t;
  return o;
}

export function loadWhereaboutsConf(stdin: Uint8Array | string, cniArgs: string): WhereaboutsConf {
  const conf = parseJSONObject(stdin, "network configuration");
  const ipam = getObject(conf, "ipam");
  if (!ipam) throw invalid("IPAM config missing 'ipam' key");
  const name = getString(conf, "name") ?? "";
  validateNetworkName(name);
  const datastore = getString(ipam, "datastore", "ipam") ?? "etcd";
  if (datastore !== "etcd")
    throw invalid(`datastore ${JSON.stringify(datastore)} is not supported (only "etcd")`);
  const networkName = getString(ipam, "network_name", "ipam") ?? "";
  if (networkName && !/^[A-Za-z0-9._-]+$/.test(networkName))
    throw invalid(`invalid network_name ${networkName}`);
  const gateway = addrKey(ipam, "gateway", "ipam");
  const blockSizes: { v4?: number; v6?: number } = {};
  const b4 = getInt(ipam, "block_size", "ipam");
  const b6 = getInt(ipam, "block_size_v6", "ipam");
  if (b4 !== undefined) blockSizes.v4 = b4;
  if (b6 !== undefined) blockSizes.v6 = b6;

  const ranges: PoolRange[] = [];
  if (getString(ipam, "range", "ipam"))
    ranges.push(parsePoolRange(ipam, "ipam", networkName, gateway, blockSizes));
  (getArray(ipam, "ipRanges", "ipam") ?? []).forEach((r, i) => {
    if (!isObject(r)) throw invalid(`ipam.ipRanges[${i}]: expected object`);
    ranges.push(parsePoolRange(r, `ipam.ipRanges[${i}]`, networkName, gateway, blockSizes));
  });
  if (ranges.length === 0) throw invalid('no range: set "range" or "ipRanges"');

  const prefix = (getString(ipam, "etcd_prefix", "ipam") ?? "/tscni/ipam").replace(/\/+$/, "");
  const node = getString(ipam, "node_name", "ipam") || process.env.NODENAME || hostname();
  if (!/^[A-Za-z0-9._-]+$/.test(node)) throw invalid(`invalid node name ${JSON.stringify(node)}`);
  const args = parseCniArgs(cniArgs);
  const out: WhereaboutsConf = {
    name,
    cniVersion: getString(conf, "cniVersion") ?? "",
    ranges,
    routes: parseRoutes(ipam),
    etcd: etcdOptions(ipam),
    prefix,
    node,
    podNamespace: args.get("K8S_POD_NAMESPACE") ?? "",
    podName: args.get("K8S_POD_NAME") ?? "",
  };
  const dns = getObject(ipam, "dns", "ipam");
  if (dns) out.dns = dns as DNS;
  const valid = parseValidAttachments(conf);
  if (valid) out.validAttachments = valid;
  return out;
}
