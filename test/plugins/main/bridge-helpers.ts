/**
 * Shared bits of the bridge tests: a throwaway host netns with a temp IPAM data dir, configs, and
 * ADD/DEL/CHECK of our bridge plugin (or upstream's) as processes inside the host netns.
 */
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { makeNetns, type TempNetns, tempDir } from "../../helpers/netns.ts";
import { type RunPluginResult, runPlugin } from "../_run.ts";

export interface World {
  host: TempNetns;
  dataDir: string;
}

export function makeWorld(): World {
  return { host: makeNetns("brh"), dataDir: tempDir("tscni-br-").path };
}

let subnetSeq = 0;

/** A fresh 10.x.y.0/24 per call, so tests never share addresses. */
export function subnet(): { cidr: string; prefix: string } {
  subnetSeq++;
  const x = 100 + ((process.pid + subnetSeq) % 100);
  const y = subnetSeq % 250;
  return { cidr: `10.${x}.${y}.0/24`, prefix: `10.${x}.${y}` };
}

/** A bridge config with host-local IPAM (`ranges` default: one fresh IPv4 /24). */
export function bridgeConf(
  w: World,
  extra: Record<string, unknown> = {},
  ranges?: unknown[][],
  ipamExtra: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    cniVersion: "1.1.0",
    name: "brnet",
    type: "bridge",
    bridge: "br0",
    ...extra,
    ipam: {
      type: "host-local",
      dataDir: w.dataDir,
      ranges: ranges ?? [[{ subnet: subnet().cidr }]],
      ...ipamExtra,
    },
  };
}

export interface CallOptions {
  containerID?: string;
  ifName?: string;
  cniArgs?: string;
  /** Default: our bridge; an absolute path runs that executable (upstream's). */
  plugin?: string;
  cniPath?: string;
}

export function call(
  w: World,
  command: string,
  ctr: TempNetns | string,
  config: object,
  o: CallOptions = {},
): Promise<RunPluginResult> {
  return runPlugin({
    plugin: o.plugin ?? "bridge",
    hostNetns: w.host.name,
    env: {
      CNI_COMMAND: command,
      CNI_NETNS: typeof ctr === "string" ? ctr : ctr.path,
      CNI_CONTAINERID: o.containerID ?? "ctr",
      CNI_IFNAME: o.ifName ?? "eth0",
      CNI_ARGS: o.cniArgs ?? "",
      ...(o.cniPath ? { CNI_PATH: o.cniPath } : {}),
    },
    config,
  });
}

/** ADD that must succeed; returns the printed result. */
// biome-ignore lint/suspicious/noExplicitAny: the plugin's JSON result
export async function add(w: World, ctr: TempNetns, config: object, o: CallOptions = {}): Promise<any> {
  const r = await call(w, "ADD", ctr, config, o);
  if (r.code !== 0) throw new Error(`ADD failed (${r.code}): ${r.stdout} ${r.stderr}`);
  return r.json;
}

export function ping(from: TempNetns, ip: string): boolean {
  return from.run(["ping", "-c", "1", "-W", "1", ip]).code === 0;
}

/** One entry of `ip -j addr`'s addr_info. */
export interface AddrJson {
  family: string;
  local: string;
  prefixlen: number;
  scope: string;
  tentative?: boolean;
}

/** The global (non link-local) addresses of `dev` in `ns`, of one family or both. */
export function globalAddrs(ns: TempNetns, dev: string, family?: 4 | 6): AddrJson[] {
  const args = family ? [`-${family}`, "addr", "show", "dev", dev] : ["addr", "show", "dev", dev];
  const info: AddrJson[] = ns.ip(...args)[0]?.addr_info ?? [];
  return info.filter((a) => a.scope === "global");
}

/** The address of `ifName` in `ns` of the family, without prefix. */
export function addrOf(ns: TempNetns, family: 4 | 6, ifName = "eth0"): string {
  const a = globalAddrs(ns, ifName, family)[0];
  if (!a) throw new Error(`no IPv${family} address on ${ifName} in ${ns.name}`);
  return a.local;
}

/** Names of the host netns's links enslaved to `bridge`. */
export function portsOf(host: TempNetns, bridge = "br0"): string[] {
  if (host.run(["ip", "link", "show", bridge]).code !== 0) return [];
  return linkNames(host, "master", bridge);
}

/** Names of the links `ip -j link show ...filter` lists in `ns`. */
export function linkNames(ns: TempNetns, ...filter: string[]): string[] {
  return (ns.ip("link", "show", ...filter) ?? []).map((l: { ifname: string }) => l.ifname);
}

/** Addresses host-local has reserved in `network` (files named by address). */
export function reservations(w: World, network = "brnet"): string[] {
  const dir = join(w.dataDir, network);
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((f) => /^[0-9a-f.:]+$/i.test(f) && (f.includes(".") || f.includes(":")));
}

/** bridge -j -d link of one port. */
// biome-ignore lint/suspicious/noExplicitAny: bridge -j output
export function portInfo(host: TempNetns, dev: string): any {
  return host.bridge("-d", "link", "show", "dev", dev)[0];
}
