/**
 * Writes flanneld's subnet file (default /run/flannel/subnet.env) for this node's lease, the file the
 * flannel CNI plugin reads: FLANNEL_NETWORK, FLANNEL_SUBNET (the subnet's first address, as flanneld
 * writes it), FLANNEL_MTU (the VXLAN device's: underlay − 50), FLANNEL_IPMASQ. Atomically (a temp file
 * renamed over it), so a plugin never reads half a file.
 */
import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";

export interface SubnetEnvOptions {
  network: string;
  /** "10.244.1.0/24". */
  subnet: string;
  mtu: number;
  ipMasq: boolean;
}

/** "10.244.1.0/24" → "10.244.1.1/24". */
function firstAddress(subnet: string): string {
  const [ip, len] = subnet.split("/");
  const p = (ip ?? "").split(".").map(Number);
  p[3] = (p[3] ?? 0) + 1;
  return `${p.join(".")}/${len}`;
}

export function subnetEnvText(o: SubnetEnvOptions): string {
  return (
    `FLANNEL_NETWORK=${o.network}\nFLANNEL_SUBNET=${firstAddress(o.subnet)}\n` +
    `FLANNEL_MTU=${o.mtu}\nFLANNEL_IPMASQ=${o.ipMasq}\n`
  );
}

export function writeSubnetEnv(path: string, o: SubnetEnvOptions): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, subnetEnvText(o), { mode: 0o644 });
  renameSync(tmp, path);
}
