/**
 * Captures the kernel state an attachment can touch, with independent oracles (`ip -j`, `tc -j`,
 * `iptables-save`, `nft -j`, /proc/sys). Runs inside the throwaway "host" netns (the driver is started
 * with `ip netns exec`), so "host" is simply everything in the current netns: that netns was made for
 * this one attachment, so all of it belongs to the attachment. The container side is read with `ip -n`.
 *
 *   captureState({ctrNetns, sysctls, dataDir}) → State   (raw; normalise.ts makes it comparable)
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

export interface SideState {
  links: unknown[];
  addrs: unknown[];
  routes: unknown[];
  rules: unknown[];
  qdiscs: unknown[];
  /** "net.ipv4.ip_forward" → value ("" when the key does not exist). */
  sysctls: Record<string, string>;
}

export interface FirewallState {
  /** iptables-save + ip6tables-save output, one string per family. */
  iptables: { v4: string; v6: string };
  /** `nft -j list ruleset`'s array (without metainfo). */
  nft: unknown[];
}

export interface State {
  container: SideState;
  host: SideState;
  firewall: FirewallState;
  /** host-local's store: file (relative path) → content. */
  store: Record<string, string>;
}

export interface CaptureOptions {
  /** Name of the container netns (`ip -n`). */
  ctrNetns: string;
  /** Sysctl keys (dotted) read in each netns. */
  sysctls: { container: string[]; host: string[] };
  /** host-local's dataDir, when the case has one. */
  dataDir?: string;
}

function run(cmd: string[]): string {
  const p = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== 0)
    throw new Error(`${cmd.join(" ")} failed (${p.exitCode}): ${p.stderr.toString().trim()}`);
  return p.stdout.toString();
}

function json(cmd: string[]): unknown[] {
  const out = run(cmd).trim();
  if (out === "") return [];
  const v = JSON.parse(out);
  return Array.isArray(v) ? v : [v];
}

/** `ip`/`tc` objects of one netns; `prefix` is [] for the current netns or ["-n", name]. */
function side(prefix: string[], tcPrefix: string[]): Omit<SideState, "sysctls"> {
  return {
    links: json(["ip", ...prefix, "-j", "-d", "link", "show"]),
    addrs: json(["ip", ...prefix, "-j", "addr", "show"]),
    routes: [
      ...json(["ip", ...prefix, "-j", "-4", "route", "show", "table", "all"]),
      ...json(["ip", ...prefix, "-j", "-6", "route", "show", "table", "all"]),
    ],
    rules: [
      ...json(["ip", ...prefix, "-j", "-4", "rule", "show"]),
      ...json(["ip", ...prefix, "-j", "-6", "rule", "show"]),
    ],
    qdiscs: json(["tc", ...tcPrefix, "-j", "qdisc", "show"]),
  };
}

function sysctlPath(key: string): string {
  return join("/proc/sys", key.replaceAll(".", "/"));
}

function readSysctls(keys: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of keys) {
    try {
      out[k] = readFileSync(sysctlPath(k), "utf8").trim();
    } catch {
      out[k] = "";
    }
  }
  return out;
}

/** Sysctls of another netns need a process in it: one `ip netns exec … sh` for all keys. */
function readSysctlsIn(netns: string, keys: string[]): Record<string, string> {
  if (keys.length === 0) return {};
  const script = 'for f; do printf "%s\\n" "$(cat "$f" 2>/dev/null)"; done';
  const out = run(["ip", "netns", "exec", netns, "sh", "-c", script, "sh", ...keys.map(sysctlPath)]);
  const lines = out.split("\n");
  return Object.fromEntries(keys.map((k, i) => [k, (lines[i] ?? "").trim()]));
}

function firewall(): FirewallState {
  const nft = json(["nft", "-j", "list", "ruleset"]).flatMap((doc) => {
    const items = (doc as { nftables?: unknown[] }).nftables ?? [];
    return items.filter((i) => !(i && typeof i === "object" && "metainfo" in i));
  });
  return { iptables: { v4: run(["iptables-save"]), v6: run(["ip6tables-save"]) }, nft };
}

function readStore(dir: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!dir || !existsSync(dir)) return out;
  const walk = (rel: string) => {
    for (const name of readdirSync(join(dir, rel)).sort()) {
      const r = rel === "" ? name : `${rel}/${name}`;
      const p = join(dir, r);
      if (statSync(p).isDirectory()) walk(r);
      else if (name !== "lock") out[r] = readFileSync(p, "utf8");
    }
  };
  walk("");
  return out;
}

export function captureState(o: CaptureOptions): State {
  return {
    container: {
      ...side(["-n", o.ctrNetns], ["-n", o.ctrNetns]),
      sysctls: readSysctlsIn(o.ctrNetns, o.sysctls.container),
    },
    host: { ...side([], []), sysctls: readSysctls(o.sysctls.host) },
    firewall: firewall(),
    store: readStore(o.dataDir),
  };
}
