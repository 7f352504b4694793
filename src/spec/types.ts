/**
 * Types of the CNI wire formats. The canonical in-memory result is `Result` (1.1.0 shape);
 * older versions are produced/consumed only by the conversions in result.ts.
 */

export const CNI_VERSIONS = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] as const;
export type CniVersion = (typeof CNI_VERSIONS)[number];
export const CURRENT_VERSION: CniVersion = "1.1.0";

export interface DNS {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

export interface Interface {
  name: string;
  mac?: string;
  mtu?: number;
  sandbox?: string;
  socketPath?: string;
  pciID?: string;
}

export interface IPConfig {
  /** Index into Result.interfaces. */
  interface?: number;
  /** CIDR with the host address, e.g. "10.22.0.5/16". */
  address: string;
  gateway?: string;
}

export interface Route {
  dst: string;
  gw?: string;
  mtu?: number;
  advmss?: number;
  priority?: number;
  table?: number;
  scope?: number;
}

/** Result in the 1.1.0 shape; `cniVersion` records the version it came from or will be printed as. */
export interface Result {
  cniVersion: string;
  interfaces?: Interface[];
  ips?: IPConfig[];
  routes?: Route[];
  dns?: DNS;
}

export interface IPAMConf {
  type: string;
  [key: string]: unknown;
}

/** A single plugin's network configuration, as sent on stdin. Unknown keys pass through. */
export interface NetConf {
  cniVersion: string;
  name: string;
  type: string;
  capabilities?: Record<string, boolean>;
  ipam?: IPAMConf;
  dns?: DNS;
  args?: Record<string, unknown>;
  runtimeConfig?: Record<string, unknown>;
  prevResult?: unknown;
  [key: string]: unknown;
}

export interface NetConfList {
  cniVersion: string;
  cniVersions?: string[];
  name: string;
  disableCheck: boolean;
  disableGC: boolean;
  loadOnlyInlinedPlugins: boolean;
  plugins: NetConf[];
  /** The raw JSON object the list was parsed from (keys untouched). */
  raw: Record<string, unknown>;
}

/** Capability argument types (runtimeConfig keys). */
export interface PortMapping {
  hostPort: number;
  containerPort: number;
  protocol: string;
  hostIP?: string;
}

export interface BandwidthEntry {
  ingressRate?: number;
  ingressBurst?: number;
  egressRate?: number;
  egressBurst?: number;
}

export interface IPRange {
  subnet: string;
  rangeStart?: string;
  rangeEnd?: string;
  gateway?: string;
}

/** GC: an attachment the runtime still uses (cni.dev/valid-attachments). */
export interface GCAttachment {
  containerID: string;
  ifname: string;
}
