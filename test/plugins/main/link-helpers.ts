/**
 * Shared by the macvlan, host-device and tap tests: a throwaway host netns with a host-local store,
 * running our plugin or upstream's against it, and `ip -j` views of a netns.
 *
 *   linkNet(prefix) → {host, dataDir}    the host netns and an IPAM data dir
 *   runIn(n, plugin, command, cont, config, {id, cniArgs, ifName, upstream})
 *   ipLink(ns, dev) · addrs(ns, dev) · links(ns) · routes(ns, family) · reservations(n, network) · ping(from, ip)
 */
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { makeNetns, type TempNetns, tempDir } from "../../helpers/netns.ts";
import { ipamPath, runPlugin, UPSTREAM_DIR } from "../_run.ts";

export interface LinkNet {
  host: TempNetns;
  dataDir: string;
}

export function linkNet(prefix: string): LinkNet {
  return { host: makeNetns(prefix), dataDir: tempDir(`tscni-${prefix}-`).path };
}

export function haveUpstream(plugin: string): boolean {
  return existsSync(`${UPSTREAM_DIR}/${plugin}`) && existsSync(`${UPSTREAM_DIR}/host-local`);
}

export interface RunOpts {
  id?: string;
  cniArgs?: string;
  ifName?: string;
  /** Run /usr/lib/cni/<plugin> with CNI_PATH=/usr/lib/cni instead of ours. */
  upstream?: boolean;
}

export function runIn(
  n: LinkNet,
  plugin: string,
  command: string,
  cont: { path: string } | string,
  config: object,
  o: RunOpts = {},
) {
  return runPlugin({
    plugin: o.upstream ? `${UPSTREAM_DIR}/${plugin}` : plugin,
    hostNetns: n.host.name,
    env: {
      CNI_COMMAND: command,
      CNI_CONTAINERID: o.id ?? "ctr1",
      CNI_NETNS: typeof cont === "string" ? cont : cont.path,
      CNI_IFNAME: o.ifName ?? "eth0",
      CNI_ARGS: o.cniArgs ?? "",
      CNI_PATH: o.upstream ? UPSTREAM_DIR : ipamPath(),
    },
    config,
  });
}

export interface PluginUnderTest {
  /** The plugin's config on `n`; `ipam: null` drops IPAM (as `noIpam` says), other keys override. */
  conf(n: LinkNet, opts?: { ipam?: object | null; [k: string]: unknown }): Record<string, unknown>;
  run(
    n: LinkNet,
    command: string,
    cont: TempNetns | string,
    config: object,
    o?: RunOpts,
  ): ReturnType<typeof runIn>;
  /** ADD that must succeed: its result. */
  // biome-ignore lint/suspicious/noExplicitAny: a CNI result as parsed JSON
  add(n: LinkNet, cont: TempNetns, config: object, o?: RunOpts): Promise<any>;
}

/** One plugin's config, runner and ADD for its test file: host-local on the LinkNet's data dir. */
export function pluginUnderTest(p: {
  type: string;
  network: string;
  /** Keys every config has (e.g. master). */
  base?: Record<string, unknown>;
  ipam: { subnet: string; gateway: string; routes: object[] };
  /** Without IPAM: no `ipam` key, or an empty one (macvlan's L2-only form). */
  noIpam: "omit" | "empty";
}): PluginUnderTest {
  const run: PluginUnderTest["run"] = (n, command, cont, config, o = {}) =>
    runIn(n, p.type, command, cont, config, o);
  return {
    conf(n, opts = {}) {
      const { ipam, ...rest } = opts;
      const full = {
        type: "host-local",
        dataDir: n.dataDir,
        ranges: [[{ subnet: p.ipam.subnet, gateway: p.ipam.gateway }]],
        routes: p.ipam.routes,
        ...ipam,
      };
      const ipamKey = ipam === null ? (p.noIpam === "empty" ? { ipam: {} } : {}) : { ipam: full };
      return { cniVersion: "1.0.0", name: p.network, type: p.type, ...p.base, ...rest, ...ipamKey };
    },
    run,
    async add(n, cont, config, o = {}) {
      const r = await run(n, "ADD", cont, config, o);
      if (r.code !== 0) throw new Error(`ADD failed: ${r.stdout} ${r.stderr}`);
      return r.json;
    },
  };
}

// biome-ignore lint/suspicious/noExplicitAny: parsed `ip -j -d link` entry
export function ipLink(n: TempNetns, dev: string): any {
  return n.ip("-d", "link", "show", "dev", dev)[0];
}

export function hasLink(n: TempNetns, dev: string): boolean {
  return (n.ip("link", "show") as { ifname: string }[]).some((l) => l.ifname === dev);
}

export function addrs(n: TempNetns, dev: string): string[] {
  const out = n.ip("addr", "show", "dev", dev) as { addr_info: { local: string; prefixlen: number }[] }[];
  return (out[0]?.addr_info ?? [])
    .filter((a) => !a.local.startsWith("fe80"))
    .map((a) => `${a.local}/${a.prefixlen}`)
    .sort();
}

export function links(n: TempNetns): string[] {
  return (n.ip("link", "show") as { ifname: string }[]).map((l) => l.ifname).filter((x) => x !== "lo");
}

export interface IpRoute {
  dst: string;
  gateway?: string;
  dev?: string;
  scope?: string;
  prefsrc?: string;
  table?: string;
}

/** Routes of every table (`ip -j route show table all`), without link-local, local and multicast noise. */
export function routes(n: TempNetns, family: "-4" | "-6", table = "main"): IpRoute[] {
  return (n.ip(family, "route", "show", "table", table) as (IpRoute & { type?: string })[])
    .filter(
      (r) => !r.dst.startsWith("fe80") && !r.dst.startsWith("ff00") && (r.type ?? "unicast") === "unicast",
    )
    .filter((r) => r.table !== "local")
    .map((r) => {
      const out: IpRoute = { dst: r.dst };
      for (const k of ["gateway", "dev", "scope", "prefsrc", "table"] as const) {
        if (r[k] !== undefined) out[k] = r[k];
      }
      return out;
    })
    .sort((a, b) => `${a.table}${a.dst}`.localeCompare(`${b.table}${b.dst}`));
}

export function reservations(n: { dataDir: string }, network: string): string[] {
  const dir = join(n.dataDir, network);
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((f) => /^[0-9a-f.:]+$/.test(f) && (f.includes(".") || f.includes(":")));
}

export function ping(from: TempNetns, ip: string): boolean {
  const six = ip.includes(":") ? ["-6"] : [];
  return from.run(["ping", ...six, "-c", "1", "-i", "0.2", "-w", "4", ip]).code === 0;
}

/** A veth pair `name` ↔ `${name}p` in `n`, both up: a master with carrier. */
export function upVeth(n: TempNetns, name: string, mtu = 1500): void {
  const r = n.run([
    "ip",
    "link",
    "add",
    name,
    "mtu",
    String(mtu),
    "type",
    "veth",
    "peer",
    "name",
    `${name}p`,
  ]);
  if (r.code !== 0) throw new Error(`veth ${name}: ${r.stderr}`);
  n.run(["ip", "link", "set", name, "up"]);
  n.run(["ip", "link", "set", `${name}p`, "up"]);
}
