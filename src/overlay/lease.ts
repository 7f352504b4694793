/**
 * Node subnet leases on etcd in flannel's layout (flannel-io/flannel pkg/subnet/etcd), so a cluster
 * flanneld configured is read the same way:
 *
 *   <prefix>/config                      {"Network": "10.244.0.0/16", "SubnetLen": 24, "SubnetMin"?,
 *                                         "SubnetMax"?, "Backend": {"Type": "vxlan", "VNI": 1, "Port": 8472}}
 *   <prefix>/subnets/10.244.1.0-24       {"PublicIP": "192.168.50.1", "PublicIPv6": null, "BackendType": "vxlan",
 *                                         "BackendData": {"VNI": 1, "VtepMAC": "…"}}, under an etcd lease (TTL)
 *
 * Dual stack (config "EnableIPv6": true, "IPv6Network", "IPv6SubnetLen"?, "IPv6SubnetMin/Max"?): the
 * key names both subnets, `10.244.1.0-24&fd00:10:0:1::-64`, and the value adds "PublicIPv6" and
 * "BackendV6Data" {VNI, VtepMAC of flannel-v6.<VNI>}. As with flanneld's etcd manager, IPv4 is always
 * there (its key needs the IPv4 subnet): "EnableIPv4": false is refused.
 *
 * A node takes a subnet with one transaction (the key must not exist: create revision 0), keeps the
 * subnet it already holds (same PublicIP → same subnet, across restarts), and renews by re-putting the
 * key under a fresh etcd lease while its value is still the one it wrote. A held lease that no longer
 * fits the config (IPv6 turned on or off, another SubnetLen) is deleted and a new one taken, as flanneld does.
 */
import type { EtcdClient, KeyValue } from "../etcd/client.ts";
import {
  type Addr,
  formatAddr,
  formatSubnet,
  parseAddr,
  parseNetwork,
  type Subnet,
  subnetContains,
  subnetSize,
} from "../ipam-common/ipmath.ts";

export const DEFAULT_PREFIX = "/coreos.com/network";

export interface NetworkConfig {
  network: string;
  subnetLen: number;
  /** First and last subnet a node may take (flannel's SubnetMin/SubnetMax). */
  subnetMin: string;
  subnetMax: string;
  /** The IPv6 half when "EnableIPv6" is true. */
  ipv6?: { network: string; subnetLen: number; subnetMin: string; subnetMax: string };
  backend: { type: string; vni: number; port: number };
}

export interface Lease {
  /** "10.244.1.0/24". */
  subnet: string;
  publicIP: string;
  backendType: string;
  vni?: number;
  vtepMAC?: string;
  /** Dual stack: "fd00:10:0:1::/64", the node's IPv6 underlay address and its flannel-v6 MAC. */
  ipv6Subnet?: string;
  publicIPv6?: string;
  vtepMACv6?: string;
}

export interface HeldLease {
  lease: Lease;
  key: string;
  /** The etcd lease id the key lives under, and the key's mod revision when we last wrote it. */
  etcdLease: string;
  modRevision: number;
}

function parseCidr(cidr: string, family: 4 | 6, what: string): Subnet {
  const n = parseNetwork(cidr);
  if (n?.net.ip.family !== family)
    throw new Error(`${what}: not an IPv${family} CIDR: ${JSON.stringify(cidr)}`);
  return n.net;
}

function parseIp(ip: string, family: 4 | 6, what: string): Addr {
  const a = parseAddr(ip);
  if (a?.family !== family) throw new Error(`${what}: not an IPv${family} address: ${JSON.stringify(ip)}`);
  return a;
}

/**
 * One family's half of the config, checked as flannel's CheckNetworkConfig: SubnetLen default 24 (64)
 * when the network is /22 (/62) or larger, else its length + 2; at most /30 (/126); the network must
 * hold at least four subnets; SubnetMin/Max inside it, on a subnet boundary, the first subnet skipped.
 */
function familyConfig(
  family: 4 | 6,
  raw: Record<string, unknown>,
  keys: { network: string; len: string; min: string; max: string },
) {
  const bits = family === 4 ? 32 : 128;
  const v = raw[keys.network];
  if (typeof v !== "string")
    throw new Error(`network config: "${keys.network}" (an IPv${family} CIDR) is required`);
  const net = parseCidr(v, family, keys.network);
  const maxLen = bits - 2;
  let subnetLen: number;
  if (typeof raw[keys.len] === "number" && raw[keys.len] !== 0) {
    subnetLen = raw[keys.len] as number;
    if (!Number.isInteger(subnetLen) || subnetLen > maxLen || subnetLen < net.prefix + 2)
      throw new Error(
        `network config: ${keys.len} ${subnetLen} must be between ${net.prefix + 2} and ${maxLen}`,
      );
  } else if (net.prefix > bits - 4) {
    throw new Error(`network config: ${keys.network} ${v} is too small (at most /${bits - 4})`);
  } else {
    const dflt = family === 4 ? 24 : 64;
    subnetLen = net.prefix <= dflt - 2 ? dflt : net.prefix + 2;
  }
  const size = subnetSize({ ip: net.ip, prefix: subnetLen });
  const first = net.ip.value + size; // flannel skips the network's first subnet
  const last = net.ip.value + subnetSize(net) - size;
  const bound = (key: string, dflt: bigint): bigint => {
    const s = raw[key];
    if (typeof s !== "string" || s === "") return dflt;
    const a = parseIp(s, family, key);
    if (!subnetContains(net, a))
      throw new Error(`network config: ${key} is not in the range of ${keys.network}`);
    if (a.value % size !== 0n)
      throw new Error(`network config: ${key} is not on a ${keys.len} boundary: ${s}`);
    return a.value;
  };
  const min = bound(keys.min, first);
  const max = bound(keys.max, last);
  const fmt = (value: bigint): string => formatAddr({ family, value });
  return { network: formatSubnet(net), subnetLen, subnetMin: fmt(min), subnetMax: fmt(max) };
}

/** Parses <prefix>/config as flanneld does (flannel pkg/subnet/config.go). */
export function parseNetworkConfig(text: string): NetworkConfig {
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new Error(`network config is not JSON: ${err instanceof Error ? err.message : err}`);
  }
  if (raw.EnableIPv4 === false)
    throw new Error(
      "network config: EnableIPv4 false (IPv6 only) is not supported with etcd, as in flanneld",
    );
  const v4 = familyConfig(4, raw, {
    network: "Network",
    len: "SubnetLen",
    min: "SubnetMin",
    max: "SubnetMax",
  });
  const b = (raw.Backend ?? {}) as Record<string, unknown>;
  const cfg: NetworkConfig = {
    ...v4,
    backend: {
      type: typeof b.Type === "string" ? b.Type : "udp",
      vni: typeof b.VNI === "number" ? b.VNI : 1,
      port: typeof b.Port === "number" ? b.Port : 8472,
    },
  };
  if (raw.EnableIPv6 === true) {
    cfg.ipv6 = familyConfig(6, raw, {
      network: "IPv6Network",
      len: "IPv6SubnetLen",
      min: "IPv6SubnetMin",
      max: "IPv6SubnetMax",
    });
  }
  return cfg;
}

/** flannel's MakeSubnetKey: "10.244.1.0-24", or "10.244.1.0-24&fd00:10:0:1::-64" with IPv6. */
export function subnetKey(prefix: string, subnet: string, ipv6Subnet?: string): string {
  const name = subnet.replace("/", "-") + (ipv6Subnet ? `&${ipv6Subnet.replace("/", "-")}` : "");
  return `${prefix}/subnets/${name}`;
}

/** flannel's ParseSubnetKey. */
const KEY_RE = /^(\d+\.\d+\.\d+\.\d+)-(\d+)(?:&([a-f\d:]+)-(\d+))?$/;

function leaseOf(kv: KeyValue, prefix: string): Lease | undefined {
  const name = kv.key.slice(`${prefix}/subnets/`.length);
  const m = KEY_RE.exec(name);
  if (!m) return undefined;
  try {
    const v = JSON.parse(kv.value) as {
      PublicIP?: string;
      PublicIPv6?: string | null;
      BackendType?: string;
      BackendData?: { VNI?: number; VtepMAC?: string };
      BackendV6Data?: { VNI?: number; VtepMAC?: string };
    };
    if (typeof v.PublicIP !== "string") return undefined;
    const l: Lease = { subnet: `${m[1]}/${m[2]}`, publicIP: v.PublicIP, backendType: v.BackendType ?? "" };
    if (typeof v.BackendData?.VNI === "number") l.vni = v.BackendData.VNI;
    if (typeof v.BackendData?.VtepMAC === "string") l.vtepMAC = v.BackendData.VtepMAC;
    if (m[3]) l.ipv6Subnet = `${m[3]}/${m[4]}`;
    if (typeof v.PublicIPv6 === "string") l.publicIPv6 = v.PublicIPv6;
    if (typeof v.BackendV6Data?.VtepMAC === "string") l.vtepMACv6 = v.BackendV6Data.VtepMAC;
    return l;
  } catch {
    return undefined; // a value we cannot read is nobody's we can route to
  }
}

/** LeaseAttrs as flannel marshals them (PublicIPv6 null when absent, BackendV6Data omitted). */
function leaseValue(l: Lease): string {
  return JSON.stringify({
    PublicIP: l.publicIP,
    PublicIPv6: l.publicIPv6 ?? null,
    BackendType: l.backendType,
    BackendData: { VNI: l.vni, VtepMAC: l.vtepMAC },
    ...(l.ipv6Subnet && { BackendV6Data: { VNI: l.vni, VtepMAC: l.vtepMACv6 } }),
  });
}

export async function readNetworkConfig(etcd: EtcdClient, prefix = DEFAULT_PREFIX): Promise<NetworkConfig> {
  const r = await etcd.range(`${prefix}/config`);
  const kv = r.kvs[0];
  if (!kv) throw new Error(`no network config at ${prefix}/config`);
  return parseNetworkConfig(kv.value);
}

/** Every live lease (expired ones are gone: etcd deleted them with their etcd lease). */
export async function listLeases(etcd: EtcdClient, prefix = DEFAULT_PREFIX): Promise<Lease[]> {
  const r = await etcd.range(`${prefix}/subnets/`, { prefix: true });
  return r.kvs.map((kv) => leaseOf(kv, prefix)).filter((l): l is Lease => !!l);
}

export interface AcquireOptions {
  publicIP: string;
  vtepMAC: string;
  /** Needed when the config has IPv6. */
  publicIPv6?: string;
  vtepMACv6?: string;
  ttlSeconds: number;
  prefix?: string;
}

/** flannel's isSubnetConfigCompat and isIPv6SubnetConfigCompat. */
function fits(cfg: NetworkConfig, l: Lease): boolean {
  const inRange = (
    subnet: string | undefined,
    family: 4 | 6,
    c: { subnetLen: number; subnetMin: string; subnetMax: string },
  ) => {
    const s = subnet ? parseNetwork(subnet)?.net : undefined;
    if (s?.ip.family !== family || s.prefix !== c.subnetLen) return false;
    return (
      s.ip.value >= parseIp(c.subnetMin, family, "min").value &&
      s.ip.value <= parseIp(c.subnetMax, family, "max").value
    );
  };
  if (!inRange(l.subnet, 4, cfg)) return false;
  return cfg.ipv6 ? inRange(l.ipv6Subnet, 6, cfg.ipv6) : l.ipv6Subnet === undefined;
}

/** The first subnet of [min, max] (subnetLen long) that overlaps none of `taken`. */
function firstFree(
  family: 4 | 6,
  c: { network: string; subnetLen: number; subnetMin: string; subnetMax: string },
  taken: readonly (string | undefined)[],
): string {
  const nets = taken.flatMap((t) => {
    const n = t ? parseNetwork(t)?.net : undefined;
    return n?.ip.family === family ? [n] : [];
  });
  const min = parseIp(c.subnetMin, family, "SubnetMin");
  const max = parseIp(c.subnetMax, family, "SubnetMax");
  const size = subnetSize({ ip: min, prefix: c.subnetLen });
  for (let v = min.value; v <= max.value; v += size) {
    const s: Subnet = { ip: { family, value: v }, prefix: c.subnetLen };
    const overlaps = nets.some((n) => subnetContains(n, s.ip) || subnetContains(s, n.ip));
    if (!overlaps) return formatSubnet(s);
  }
  throw new Error(`no free subnet left in ${c.network}`);
}

/** This node's lease: the subnet it holds already (same PublicIP), else the first free one. */
export async function acquireLease(
  etcd: EtcdClient,
  cfg: NetworkConfig,
  o: AcquireOptions,
): Promise<HeldLease> {
  const prefix = o.prefix ?? DEFAULT_PREFIX;
  if (cfg.ipv6 && (!o.publicIPv6 || !o.vtepMACv6))
    throw new Error(
      "the network config has IPv6: this node needs an IPv6 public address and flannel-v6 device",
    );
  const mine = (subnet: string, ipv6Subnet?: string): Lease => ({
    subnet,
    publicIP: o.publicIP,
    backendType: cfg.backend.type,
    vni: cfg.backend.vni,
    vtepMAC: o.vtepMAC,
    ...(ipv6Subnet && { ipv6Subnet, publicIPv6: o.publicIPv6, vtepMACv6: o.vtepMACv6 }),
  });
  for (let attempt = 0; attempt < 10; attempt++) {
    const r = await etcd.range(`${prefix}/subnets/`, { prefix: true });
    const all = r.kvs.map((kv) => ({ kv, lease: leaseOf(kv, prefix) }));
    const held = all.find((x) => x.lease?.publicIP === o.publicIP);
    if (held?.lease && !fits(cfg, held.lease)) {
      // ours, but from another config (IPv6 switched, other lengths): drop it, as flanneld does
      await etcd.txn({
        compare: [{ key: held.kv.key, target: "MOD", result: "EQUAL", operand: held.kv.modRevision }],
        success: [{ delete: { key: held.kv.key } }],
      });
      continue;
    }
    const granted = await etcd.leaseGrant(o.ttlSeconds);
    let key: string;
    let lease: Lease;
    let txn: Awaited<ReturnType<EtcdClient["txn"]>>;
    if (held?.lease) {
      // ours from before (a restart): keep the subnet, take it over under the new etcd lease
      lease = mine(held.lease.subnet, held.lease.ipv6Subnet);
      key = held.kv.key;
      txn = await etcd.txn({
        compare: [{ key, target: "MOD", result: "EQUAL", operand: held.kv.modRevision }],
        success: [{ put: { key, value: leaseValue(lease), lease: granted.id } }],
      });
    } else {
      const others = all.flatMap((x) => (x.lease ? [x.lease] : []));
      const free = firstFree(
        4,
        cfg,
        others.map((l) => l.subnet),
      );
      const free6 = cfg.ipv6
        ? firstFree(
            6,
            cfg.ipv6,
            others.map((l) => l.ipv6Subnet),
          )
        : undefined;
      lease = mine(free, free6);
      key = subnetKey(prefix, free, free6);
      txn = await etcd.txn({
        compare: [{ key, target: "CREATE", result: "EQUAL", operand: 0 }],
        success: [{ put: { key, value: leaseValue(lease), lease: granted.id } }],
      });
    }
    if (txn.succeeded) {
      if (held && held.kv.lease !== "0") await etcd.leaseRevoke(held.kv.lease).catch(() => undefined);
      return { lease, key, etcdLease: granted.id, modRevision: txn.revision };
    }
    // another node won that subnet (or changed ours) meanwhile: look again
    await etcd.leaseRevoke(granted.id).catch(() => undefined);
  }
  throw new Error("could not take a subnet lease after 10 attempts (too much contention)");
}

/**
 * Renews `held` under a fresh etcd lease, only while the key still holds what we wrote; returns the
 * renewed lease, or undefined when it was lost (expired and taken, or deleted): then acquire again.
 */
export async function renewLease(
  etcd: EtcdClient,
  held: HeldLease,
  ttlSeconds: number,
): Promise<HeldLease | undefined> {
  const granted = await etcd.leaseGrant(ttlSeconds);
  const txn = await etcd.txn({
    compare: [{ key: held.key, target: "MOD", result: "EQUAL", operand: held.modRevision }],
    success: [{ put: { key: held.key, value: leaseValue(held.lease), lease: granted.id } }],
  });
  if (!txn.succeeded) {
    await etcd.leaseRevoke(granted.id).catch(() => undefined);
    return undefined;
  }
  await etcd.leaseRevoke(held.etcdLease).catch(() => undefined);
  return { ...held, etcdLease: granted.id, modRevision: txn.revision };
}
