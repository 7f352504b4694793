/**
 * Writes flanneld's subnet file (default /run/flannel/subnet.env) for this node's lease, the file the
 * flannel CNI plugin reads: FLANNEL_NETWORK, FLANNEL_SUBNET (the subnet's first address, as flanneld
 * writes it), FLANNEL_IPV6_NETWORK and FLANNEL_IPV6_SUBNET when dual stack, FLANNEL_MTU (the VXLAN
 * device's: underlay − 50), FLANNEL_IPMASQ, in flanneld's order. Atomically (a temp file
 * renamed over it), so a plugin never reads half a file.
 */
import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { formatAddr, nextAddr, parseSubnet } from "../ipam-common/ipmath.ts";

export interface SubnetEnvOptions {
  network: string;
  /** "10.244.1.0/24". */
  subnet: string;
  /** Dual stack: "fd00:10::/56" and "fd00:10:0:1::/64". */
  ipv6Network?: string;
  ipv6Subnet?: string;
  mtu: number;
  ipMasq: boolean;
}

/** "10.244.1.0/24" → "10.244.1.1/24" (flannel's IncrementIP). */
function firstAddress(subnet: string): string {
  const s = parseSubnet(subnet);
  if (!s) throw new Error(`subnet.env: not a CIDR: ${JSON.stringify(subnet)}`);
  return `${formatAddr(nextAddr(s.ip))}/${s.prefix}`;
}

export function subnetEnvText(o: SubnetEnvOptions): string {
  let text = `FLANNEL_NETWORK=${o.network}\nFLANNEL_SUBNET=${firstAddress(o.subnet)}\n`;
  if (o.ipv6Network && o.ipv6Subnet)
    text += `FLANNEL_IPV6_NETWORK=${o.ipv6Network}\nFLANNEL_IPV6_SUBNET=${firstAddress(o.ipv6Subnet)}\n`;
  return `${text}FLANNEL_MTU=${o.mtu}\nFLANNEL_IPMASQ=${o.ipMasq}\n`;
}

export function writeSubnetEnv(path: string, o: SubnetEnvOptions): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, subnetEnvText(o), { mode: 0o644 });
  renameSync(tmp, path);
}
