/**
 * `tscni node-net [flags]`: flanneld's flag names (Go flag syntax: `--name value`, `--name=value`,
 * one dash or two; booleans alone or `=true/false`), and like flanneld each flag may come from the
 * environment as FLANNELD_<NAME> (FLANNELD_ETCD_ENDPOINTS=…); a flag on the command line wins.
 */
import { readFileSync } from "node:fs";
import type { EtcdTLS } from "../etcd/client.ts";
import type { NodeNetOptions } from "../overlay/node-net.ts";
import { UsageError } from "./shared.ts";

export const NODE_NET_USAGE = `tscni node-net [flags]   (flanneld's names; FLANNELD_<NAME> in the environment too)
  --etcd-endpoints URL,…            default http://127.0.0.1:4001,http://127.0.0.1:2379
  --etcd-prefix P                   default /coreos.com/network
  --etcd-cafile F --etcd-certfile F --etcd-keyfile F     TLS (PEM files)
  --etcd-username U --etcd-password P                    etcd auth
  --iface IF                        the underlay link (default eth0)
  --public-ip IP                    default: its first IPv4 address
  --public-ipv6 IP                  default: its first global IPv6 address (dual-stack networks)
  --subnet-file F                   default /run/flannel/subnet.env
  --subnet-lease-renew-margin MIN   renew this many minutes before the lease ends (default: at a third)
  --ttl SECONDS                     the lease's TTL (flanneld: 24 h, fixed)
  --poll-ms MS                      how often peers are re-read (default 5000)
  --ip-masq                         masquerade traffic leaving the cluster network
  --ip-masq-fully-random-disable    plain masquerade instead of fully-random
  --ip-masq-backend nftables|iptables   default nftables`;

const BOOLS = new Set(["ip-masq", "ip-masq-fully-random-disable"]);
const STRINGS = new Set([
  "etcd-endpoints",
  "etcd-prefix",
  "etcd-cafile",
  "etcd-certfile",
  "etcd-keyfile",
  "etcd-username",
  "etcd-password",
  "iface",
  "public-ip",
  "public-ipv6",
  "subnet-file",
  "subnet-lease-renew-margin",
  "ttl",
  "poll-ms",
  "ip-masq-backend",
]);

/** The flags as name → value ("true"/"false" for booleans), the environment's first. */
export function parseNodeNetFlags(
  argv: readonly string[],
  environ: Record<string, string | undefined> = process.env,
): Map<string, string> {
  const out = new Map<string, string>();
  for (const name of [...BOOLS, ...STRINGS]) {
    const v = environ[`FLANNELD_${name.toUpperCase().replace(/-/g, "_")}`];
    if (v !== undefined && v !== "") out.set(name, v);
  }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    const m = /^--?([a-z0-9-]+)(?:=(.*))?$/s.exec(a);
    if (!m) throw new UsageError(`unexpected argument ${a}\n${NODE_NET_USAGE}`);
    const name = m[1] as string;
    if (BOOLS.has(name)) {
      const v = m[2] ?? "true";
      if (v !== "true" && v !== "false") throw new UsageError(`--${name}: true or false, not ${v}`);
      out.set(name, v);
    } else if (STRINGS.has(name)) {
      const v = m[2] ?? argv[++i];
      if (v === undefined) throw new UsageError(`--${name} needs a value`);
      out.set(name, v);
    } else throw new UsageError(`unknown flag ${a}\n${NODE_NET_USAGE}`);
  }
  return out;
}

function readPem(flag: string, path: string | undefined): string | undefined {
  if (path === undefined || path === "") return undefined;
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    throw new UsageError(`--${flag} ${path}: ${err instanceof Error ? err.message : err}`);
  }
}

function num(flags: Map<string, string>, name: string): number | undefined {
  const v = flags.get(name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`--${name}: a positive number, not ${v}`);
  return n;
}

/** The daemon's options from the flags (without `stop` and `log`). */
export function nodeNetOptions(flags: Map<string, string>): NodeNetOptions {
  const endpoints = (flags.get("etcd-endpoints") ?? "http://127.0.0.1:4001,http://127.0.0.1:2379")
    .split(",")
    .map((e) => e.trim())
    .filter(Boolean);
  if (endpoints.length === 0) throw new UsageError("--etcd-endpoints: no endpoint given");
  const tls: EtcdTLS = {};
  const ca = readPem("etcd-cafile", flags.get("etcd-cafile"));
  const cert = readPem("etcd-certfile", flags.get("etcd-certfile"));
  const key = readPem("etcd-keyfile", flags.get("etcd-keyfile"));
  if (!!cert !== !!key) throw new UsageError("--etcd-certfile and --etcd-keyfile go together");
  if (ca) tls.ca = ca;
  if (cert && key) Object.assign(tls, { cert, key });
  const backend = flags.get("ip-masq-backend");
  if (backend !== undefined && backend !== "nftables" && backend !== "iptables")
    throw new UsageError(`--ip-masq-backend: nftables or iptables, not ${backend}`);
  const margin = num(flags, "subnet-lease-renew-margin");
  const o: NodeNetOptions = { endpoints, ipMasq: flags.get("ip-masq") === "true" };
  if (Object.keys(tls).length > 0) o.tls = tls;
  const set = <K extends keyof NodeNetOptions>(k: K, v: NodeNetOptions[K] | undefined) => {
    if (v !== undefined) o[k] = v;
  };
  set("prefix", flags.get("etcd-prefix"));
  set("username", flags.get("etcd-username"));
  set("password", flags.get("etcd-password"));
  set("iface", flags.get("iface"));
  set("publicIP", flags.get("public-ip"));
  set("publicIPv6", flags.get("public-ipv6"));
  set("subnetFile", flags.get("subnet-file"));
  set("ttlSeconds", num(flags, "ttl"));
  set("renewMarginSeconds", margin === undefined ? undefined : margin * 60);
  set("pollMs", num(flags, "poll-ms"));
  set("ipMasqBackend", backend as NodeNetOptions["ipMasqBackend"]);
  if (flags.get("ip-masq-fully-random-disable") === "true") o.ipMasqFullyRandomDisable = true;
  return o;
}

export async function nodeNetCmd(argv: readonly string[]): Promise<void> {
  if (argv.includes("-h") || argv.includes("--help")) {
    process.stdout.write(`${NODE_NET_USAGE}\n`);
    return;
  }
  const o = nodeNetOptions(parseNodeNetFlags(argv));
  const { runNodeNet } = await import("../overlay/node-net.ts");
  const stop = new Promise<void>((resolve) => {
    process.once("SIGTERM", () => resolve());
    process.once("SIGINT", () => resolve());
  });
  await runNodeNet({ ...o, stop });
}
