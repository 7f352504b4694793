/**
 * Node subnet leases on etcd in flannel's layout (flannel-io/flannel pkg/subnet/etcd), so a cluster
 * flanneld configured is read the same way:
 *
 *   <prefix>/config                      {"Network": "10.244.0.0/16", "SubnetLen": 24, "SubnetMin"?,
 *                                         "SubnetMax"?, "Backend": {"Type": "vxlan", "VNI": 1, "Port": 8472}}
 *   <prefix>/subnets/10.244.1.0-24       {"PublicIP": "192.168.50.1", "BackendType": "vxlan",
 *                                         "BackendData": {"VNI": 1, "VtepMAC": "…"}}, under an etcd lease (TTL)
 *
 * A node takes a subnet with one transaction (the key must not exist: create revision 0), keeps the
 * subnet it already holds (same PublicIP → same subnet, across restarts), and renews by re-putting the
 * key under a fresh etcd lease while its value is still the one it wrote. IPv4 only for now.
 */
import type { EtcdClient, KeyValue } from "../etcd/client.ts";
import {
  type Addr,
  formatAddr,
  formatSubnet,
  parseAddr,
  parseNetwork,
  type Subnet,
  subnetSize,
} from "../ipam-common/ipmath.ts";

export const DEFAULT_PREFIX = "/coreos.com/network";

export interface NetworkConfig {
  network: string;
  subnetLen: number;
  /** First and last subnet a node may take (flannel's SubnetMin/SubnetMax). */
  subnetMin: string;
  subnetMax: string;
  backend: { type: string; vni: number; port: number };
}

export interface Lease {
  /** "10.244.1.0/24". */
  subnet: string;
  publicIP: string;
  backendType: string;
  vni?: number;
  vtepMAC?: string;
}

export interface HeldLease {
  lease: Lease;
  key: string;
  /** The etcd lease id the key lives under, and the key's mod revision when we last wrote it. */
  etcdLease: string;
  modRevision: number;
}

function parseCidr4(cidr: string, what: string): Subnet {
  const n = parseNetwork(cidr);
  if (n?.net.ip.family !== 4) throw new Error(`${what}: not an IPv4 CIDR: ${JSON.stringify(cidr)}`);
  return n.net;
}

function parseIp4(ip: string, what: string): Addr {
  const a = parseAddr(ip);
  if (a?.family !== 4) throw new Error(`${what}: not an IPv4 address: ${JSON.stringify(ip)}`);
  return a;
}

/** Parses <prefix>/config as flanneld does (SubnetLen default 24, or Network's length + 4 if ≥ 24). */
export function parseNetworkConfig(text: string): NetworkConfig {
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new Error(`network config is not JSON: ${err instanceof Error ? err.message : err}`);
  }
  if (typeof raw.Network !== "string")
    throw new Error('network config: "Network" (an IPv4 CIDR) is required');
  const net = parseCidr4(raw.Network, "Network");
  const subnetLen =
    typeof raw.SubnetLen === "number" ? raw.SubnetLen : net.prefix < 24 ? 24 : Math.min(30, net.prefix + 4);
  if (!Number.isInteger(subnetLen) || subnetLen <= net.prefix || subnetLen > 30) {
    throw new Error(`network config: SubnetLen ${subnetLen} must be between ${net.prefix + 1} and 30`);
  }
  const size = subnetSize({ ip: net.ip, prefix: subnetLen });
  const first = net.ip.value + size; // flannel skips the network's first subnet
  const last = net.ip.value + subnetSize(net) - size;
  const min = typeof raw.SubnetMin === "string" ? parseIp4(raw.SubnetMin, "SubnetMin").value : first;
  const max = typeof raw.SubnetMax === "string" ? parseIp4(raw.SubnetMax, "SubnetMax").value : last;
  if (min < net.ip.value || max > last || min > max)
    throw new Error("network config: SubnetMin/SubnetMax outside Network");
  const v4 = (value: bigint): string => formatAddr({ family: 4, value });
  const b = (raw.Backend ?? {}) as Record<string, unknown>;
  return {
    network: formatSubnet(net),
    subnetLen,
    subnetMin: v4(min),
    subnetMax: v4(max),
    backend: {
      type: typeof b.Type === "string" ? b.Type : "udp",
      vni: typeof b.VNI === "number" ? b.VNI : 1,
      port: typeof b.Port === "number" ? b.Port : 8472,
    },
  };
}

/** "10.244.1.0/24" ↔ "10.244.1.0-24", flannel's key form. */
export function subnetKey(prefix: string, subnet: string): string {
  return `${prefix}/subnets/${subnet.replace("/", "-")}`;
}

function leaseOf(kv: KeyValue, prefix: string): Lease | undefined {
  const name = kv.key.slice(`${prefix}/subnets/`.length);
  const m = /^(\d+\.\d+\.\d+\.\d+)-(\d+)$/.exec(name);
  if (!m) return undefined;
  try {
    const v = JSON.parse(kv.value) as {
      PublicIP?: string;
      BackendType?: string;
      BackendData?: { VNI?: number; VtepMAC?: string };
    };
    if (typeof v.PublicIP !== "string") return undefined;
    const l: Lease = { subnet: `${m[1]}/${m[2]}`, publicIP: v.PublicIP, backendType: v.BackendType ?? "" };
    if (typeof v.BackendData?.VNI === "number") l.vni = v.BackendData.VNI;
    if (typeof v.BackendData?.VtepMAC === "string") l.vtepMAC = v.BackendData.VtepMAC;
    return l;
  } catch {
    return undefined; // a value we cannot read is nobody's we can route to
  }
}

function leaseValue(l: Lease): string {
  return JSON.stringify({
    PublicIP: l.publicIP,
    BackendType: l.backendType,
    BackendData: { VNI: l.vni, VtepMAC: l.vtepMAC },
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
  ttlSeconds: number;
  prefix?: string;
}

/** This node's lease: the subnet it holds already (same PublicIP), else the first free one. */
export async function acquireLease(
  etcd: EtcdClient,
  cfg: NetworkConfig,
  o: AcquireOptions,
): Promise<HeldLease> {
  const prefix = o.prefix ?? DEFAULT_PREFIX;
  const mine = (subnet: string): Lease => ({
    subnet,
    publicIP: o.publicIP,
    backendType: cfg.backend.type,
    vni: cfg.backend.vni,
    vtepMAC: o.vtepMAC,
  });
  for (let attempt = 0; attempt < 10; attempt++) {
    const r = await etcd.range(`${prefix}/subnets/`, { prefix: true });
    const held = r.kvs.find((kv) => leaseOf(kv, prefix)?.publicIP === o.publicIP);
    const granted = await etcd.leaseGrant(o.ttlSeconds);
    let key: string;
    let lease: Lease;
    let txn: Awaited<ReturnType<EtcdClient["txn"]>>;
    if (held) {
      // ours from before (a restart): keep the subnet, take it over under the new etcd lease
      lease = mine(leaseOf(held, prefix)?.subnet ?? "");
      key = held.key;
      txn = await etcd.txn({
        compare: [{ key, target: "MOD", result: "EQUAL", operand: held.modRevision }],
        success: [{ put: { key, value: leaseValue(lease), lease: granted.id } }],
      });
    } else {
      const taken = new Set(r.kvs.map((kv) => kv.key));
      const min = parseIp4(cfg.subnetMin, "SubnetMin");
      const max = parseIp4(cfg.subnetMax, "SubnetMax");
      const size = subnetSize({ ip: min, prefix: cfg.subnetLen });
      let free: string | undefined;
      for (let s = min.value; s <= max.value; s += size) {
        const subnet = formatSubnet({ ip: { family: 4, value: s }, prefix: cfg.subnetLen });
        if (!taken.has(subnetKey(prefix, subnet))) {
          free = subnet;
          break;
        }
      }
      if (!free) throw new Error(`no free subnet left in ${cfg.network}`);
      lease = mine(free);
      key = subnetKey(prefix, free);
      txn = await etcd.txn({
        compare: [{ key, target: "CREATE", result: "EQUAL", operand: 0 }],
        success: [{ put: { key, value: leaseValue(lease), lease: granted.id } }],
      });
    }
    if (txn.succeeded) {
      if (held && held.lease !== "0") await etcd.leaseRevoke(held.lease).catch(() => undefined);
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
