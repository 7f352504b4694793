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

function ip4ToInt(ip: string): number {
  const p = ip.split(".").map(Number);
  if (p.length !== 4 || p.some((x) => !Number.isInteger(x) || x < 0 || x > 255)) {
    throw new Error(`not an IPv4 address: ${JSON.stringify(ip)}`);
  }
  return (((p[0]! << 24) >>> 0) + (p[1]! << 16) + (p[2]! << 8) + p[3]!) >>> 0;
}

function intToIp4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

function parseCidr4(cidr: string, what: string): { base: number; len: number } {
  const [ip, len] = cidr.split("/");
  const n = Number(len);
  if (!ip || !Number.isInteger(n) || n < 0 || n > 32)
    throw new Error(`${what}: not an IPv4 CIDR: ${JSON.stringify(cidr)}`);
  const mask = n === 0 ? 0 : (~0 << (32 - n)) >>> 0;
  return { base: (ip4ToInt(ip) & mask) >>> 0, len: n };
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
    typeof raw.SubnetLen === "number" ? raw.SubnetLen : net.len < 24 ? 24 : Math.min(30, net.len + 4);
  if (!Number.isInteger(subnetLen) || subnetLen <= net.len || subnetLen > 30) {
    throw new Error(`network config: SubnetLen ${subnetLen} must be between ${net.len + 1} and 30`);
  }
  const size = 2 ** (32 - subnetLen);
  const first = net.base + size; // flannel skips the network's first subnet
  const last = net.base + 2 ** (32 - net.len) - size;
  const min = typeof raw.SubnetMin === "string" ? ip4ToInt(raw.SubnetMin) : first;
  const max = typeof raw.SubnetMax === "string" ? ip4ToInt(raw.SubnetMax) : last;
  if (min < net.base || max > last || min > max)
    throw new Error("network config: SubnetMin/SubnetMax outside Network");
  const b = (raw.Backend ?? {}) as Record<string, unknown>;
  return {
    network: `${intToIp4(net.base)}/${net.len}`,
    subnetLen,
    subnetMin: intToIp4(min),
    subnetMax: intToIp4(max),
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
      const size = 2 ** (32 - cfg.subnetLen);
      let free: string | undefined;
      for (let s = ip4ToInt(cfg.subnetMin); s <= ip4ToInt(cfg.subnetMax); s += size) {
        const subnet = `${intToIp4(s)}/${cfg.subnetLen}`;
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
