/**
 * A throwaway L2 "underlay" for whereabouts tests whose nodes are separate netns:
 *
 *   const u = makeUnderlay("10.77.0");            // a host netns with bridge ul0, etcd at 10.77.0.1
 *   const c = await startEtcdCluster({host: u.etcdAddr, prepare: u.prepare});
 *   const a = u.node("a");                        // a netns with eth0 10.77.0.11/24 on ul0
 *   await runIn(a.name, [BUN, MAIN], {stdin, env})
 *   u.cleanup()
 *
 * The etcd netns and every node netns are veth peers of ports on ul0, so a node reaches the members
 * only over its link, as a real node does.
 */
import { join } from "node:path";
import { type ExecOptions, execIn } from "../../../helpers/etcd.ts";
import { makeNetns, type TempNetns } from "../../../helpers/netns.ts";
import type { ProcOutput } from "../../../helpers/proc.ts";

export const REPO = join(import.meta.dir, "../../../..");
export const BUN = join(REPO, "node_modules/.bin/bun");
export const WHEREABOUTS = join(REPO, "src/plugins/ipam/whereabouts/main.ts");

export interface Underlay {
  host: TempNetns;
  etcdAddr: string;
  /** For startEtcdCluster's `prepare`: gives the etcd netns eth0 = etcdAddr/24 on ul0. */
  prepare(netns: TempNetns): void;
  /** A node netns on ul0 (addresses .11, .12, … in order of creation). */
  node(tag: string): TempNetns;
  cleanup(): void;
}

function must(n: TempNetns, cmd: string[]): void {
  const r = n.run(cmd);
  if (r.code !== 0) throw new Error(`${cmd.join(" ")} in ${n.name}: ${r.stderr.trim()}`);
}

export function makeUnderlay(net24: string): Underlay {
  const host = makeNetns("wul");
  const made: TempNetns[] = [];
  let port = 0;
  try {
    must(host, ["ip", "link", "add", "ul0", "type", "bridge"]);
    must(host, ["ip", "link", "set", "ul0", "up"]);
  } catch (err) {
    host.cleanup();
    throw err;
  }
  /** A veth from ul0 into `n` named eth0 there, with `addr`/24. */
  const plug = (n: TempNetns, addr: string) => {
    const p = `p${port++}`;
    must(host, ["ip", "link", "add", p, "type", "veth", "peer", "name", "eth0", "netns", n.name]);
    must(host, ["ip", "link", "set", p, "master", "ul0", "up"]);
    must(n, ["ip", "link", "set", "lo", "up"]);
    must(n, ["ip", "addr", "add", `${addr}/24`, "dev", "eth0"]);
    must(n, ["ip", "link", "set", "eth0", "up"]);
  };
  return {
    host,
    etcdAddr: `${net24}.1`,
    prepare: (n) => plug(n, `${net24}.1`),
    node(tag) {
      const n = makeNetns(`wn${tag}`);
      made.push(n);
      plug(n, `${net24}.${11 + made.length - 1}`);
      return n;
    },
    cleanup() {
      for (const n of made) n.cleanup();
      host.cleanup();
    },
  };
}

export type RunOptions = ExecOptions;

/** A process inside the netns `netns` (by name), killed after timeoutMs. */
export const runIn: (netns: string, argv: string[], o?: RunOptions) => Promise<ProcOutput> = execIn;

export interface PluginOut extends ProcOutput {
  // biome-ignore lint/suspicious/noExplicitAny: the plugin's JSON
  json: any;
}

/** Runs a CNI plugin (argv) inside `netns` with the CNI_* env and conf on stdin. */
export async function cni(
  netns: string,
  argv: string[],
  env: { CNI_COMMAND: string; CNI_CONTAINERID?: string; CNI_NETNS?: string; CNI_IFNAME?: string },
  conf: object,
  cniPath = "/nonexistent",
): Promise<PluginOut> {
  const r = await runIn(netns, argv, {
    stdin: JSON.stringify(conf),
    env: {
      CNI_CONTAINERID: "ctr",
      CNI_NETNS: `/var/run/netns/${netns}`,
      CNI_IFNAME: "eth0",
      CNI_ARGS: "",
      CNI_PATH: cniPath,
      ...env,
    },
    timeoutMs: 90_000,
  });
  let json: unknown;
  try {
    json = r.stdout.trim() ? JSON.parse(r.stdout) : undefined;
  } catch {
    json = undefined;
  }
  return { ...r, json };
}

/** etcdctl in the cluster's netns: every key under `prefix` → value (auth and TLS flags as given). */
export async function etcdKeys(
  exec: (argv: string[], o?: RunOptions) => Promise<ProcOutput>,
  endpoints: string[],
  flags: string[],
  prefix = "/tscni/ipam/",
): Promise<Map<string, string>> {
  const r = await exec(
    ["etcdctl", `--endpoints=${endpoints.join(",")}`, ...flags, "get", "--prefix", prefix, "-w", "json"],
    { env: { ETCDCTL_API: "3" }, timeoutMs: 15_000 },
  );
  if (r.code !== 0) throw new Error(`etcdctl get failed: ${r.stderr}`);
  const body = JSON.parse(r.stdout) as { kvs?: { key: string; value?: string }[] };
  const from = (s: string) => Buffer.from(s, "base64").toString();
  return new Map((body.kvs ?? []).map((kv) => [from(kv.key), from(kv.value ?? "")]));
}
