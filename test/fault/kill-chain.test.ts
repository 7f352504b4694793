/**
 * kill -9 at every step of the kubelet chain (issue 18 §2): bridge + host-local → portmap → bandwidth →
 * tuning, run through our libcni, every plugin a process of the compiled executable (host-local exec'd by
 * bridge). One plugin of the chain runs under `strace -f -e inject=SYSCALLS:signal=SIGKILL:when=N` (no hook
 * in the plugin; -f follows what it execs: host-local, nft), for each syscall family (netlink sends, file
 * writes, renames, execve) and N = 1… until the chain's ADD (or DEL) completes without a kill.
 *
 * - kill during ADD: DEL with the same arguments succeeds; afterwards the host netns holds nothing of the
 *   attachment (links, addresses, routes, qdiscs and ifb devices, nft rules and map elements, iptables
 *   rules: `ip -j`, `tc -j`, `nft -j`, `iptables-save`), the container netns only lo, host-local no
 *   reservation, libcni no cache file, tuning no saved state; then a fresh ADD and DEL succeed.
 * - kill during DEL (after a clean ADD): a second DEL succeeds and the same holds.
 *
 * Every kill point uses a fresh host and container netns, so a kill while the bridge or the shared nft tables
 * are being made is covered too. `npm test` checks TSCNI_FAULT_KILL_SAMPLE (10) points drawn by
 * TSCNI_FAULT_SEED from the points the full run found (KNOWN); `npm run test:fault` sets
 * TSCNI_FAULT_KILL_EVERY=1: every N of every (phase, plugin, family) until the phase completes (k: every
 * k-th N, the first one seeded).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { CNIConfig } from "../../src/libcni/api.ts";
import { netnsState } from "../e2e/chain-state.ts";
import { cleanupAll, makeNetns, type TempNetns, tempDir } from "../helpers/netns.ts";
import { CAP_ARGS, chainBin, chainList, hostLeftovers, NET, netExec, sharedInfra } from "./chain-kit.ts";

afterAll(cleanupAll);

const EVERY = Math.max(1, Number(process.env["TSCNI_FAULT_KILL_EVERY"] ?? 1));
const SEED = Number(process.env["TSCNI_FAULT_SEED"] ?? 18);
const MAX_N = Number(process.env["TSCNI_FAULT_KILL_MAX"] ?? 400);
/**
 * strace counts per process (and thread): when=N is the Nth call of the plugin or of any child it runs.
 * execve is limited with -P to what a plugin execs (delegated IPAM, nft, iptables-restore), so the kill
 * hits that exec and not the plugin's own start.
 */
const FAMILIES: [string, string, (bin: string) => string[]][] = [
  ["netlink send", "sendto,sendmsg", () => []],
  ["write", "write,pwrite64,writev", () => []],
  ["rename", "rename,renameat,renameat2", () => []],
  [
    "exec (of delegated IPAM, nft)",
    "execve",
    (bin) => ["-P", join(bin, "host-local"), "-P", "/usr/sbin/nft", "-P", "/usr/sbin/xtables-nft-multi"],
  ],
];
const PLUGINS = ["bridge", "portmap", "bandwidth", "tuning"];
const SUBNET = "10.79.0.0/24";
const ID = "killchain";

/** First N of a (phase, plugin, family) loop: 1…EVERY, from the seed. */
function firstN(key: string): number {
  let h = SEED >>> 0;
  for (const c of key) h = Math.imul(h ^ c.charCodeAt(0), 0x9e3779b1) >>> 0;
  return (h % EVERY) + 1;
}

interface Kit {
  dirs: { ipam: string; tuning: string; cache: string; log: string };
  host: TempNetns;
  cont: TempNetns;
  /** When set, this plugin type runs under strace with this inject spec. */
  inject?: { type: string; spec: string; extra: string[] };
  cni: CNIConfig;
}

function fresh(k: Kit | undefined): Kit {
  const host = makeNetns("kch");
  host.run(["ip", "link", "set", "lo", "up"]);
  const cont = makeNetns("kcc");
  const base = tempDir("tscni-killchain-").path;
  const dirs = k?.dirs ?? {
    ipam: join(base, "ipam"),
    tuning: join(base, "tuning"),
    cache: join(base, "cache"),
    log: join(base, "strace.log"),
  };
  const kit: Kit = { dirs, host, cont, cni: undefined as unknown as CNIConfig };
  const wrap = (type: string) =>
    kit.inject && kit.inject.type === type
      ? [
          "strace",
          "-f",
          "-qq",
          "-o",
          dirs.log,
          ...kit.inject.extra,
          "-e",
          `trace=${kit.inject.spec.split(":")[0]}`,
          "-e",
          `inject=${kit.inject.spec}`,
        ]
      : [];
  kit.cni = new CNIConfig({ path: [chainBin()], cacheDir: dirs.cache, exec: netExec(host.path, wrap) });
  return kit;
}

const list = (k: Kit) => chainList(k.dirs, SUBNET);
const rt = (k: Kit) => ({
  containerID: ID,
  netNS: k.cont.path,
  ifName: "eth0",
  args: [
    ["IgnoreUnknown", "1"],
    ["K8S_POD_NAME", "web-0"],
  ] as [string, string][],
  capabilityArgs: CAP_ARGS,
});

async function attempt(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return String((err as Error).message ?? err);
  }
}

/** Runs `fn` with `spec` injected into plugin `type`; whether strace killed something. */
async function injected(k: Kit, type: string, spec: string, extra: string[], fn: () => Promise<unknown>) {
  rmSync(k.dirs.log, { force: true });
  k.inject = { type, spec, extra };
  try {
    const error = await attempt(fn());
    const fired = existsSync(k.dirs.log) && readFileSync(k.dirs.log, "utf8").includes("killed by SIGKILL");
    return { error, fired };
  } finally {
    k.inject = undefined;
  }
}

function files(dir: string, keep: RegExp = /^$/): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(join(d, e.name), r);
      else if (!keep.test(e.name)) out.push(r);
    }
  };
  walk(dir, "");
  return out;
}

/** host-local's bookkeeping that may stay (upstream keeps lock and last_reserved_ip too). */
const IPAM_KEEP = /^(lock|last_reserved_ip\.\d+|\.tscni-index(\.\d+)?|\.tscni-new\..*)$/;

function leftovers(k: Kit, pristine: ReturnType<typeof netnsState>, infra: string[]): string[] {
  const out = hostLeftovers(k.host.path, pristine, infra);
  const cont = (k.cont.ip("link", "show") as { ifname: string }[]).map((l) => l.ifname);
  if (cont.join() !== "lo") out.push(`container links: ${cont.join(" ")}`);
  const ipam = files(k.dirs.ipam, IPAM_KEEP);
  if (ipam.length) out.push(`host-local: ${ipam.join(" ")}`);
  for (const f of files(join(k.dirs.ipam, NET)).filter(
    (f) => IPAM_KEEP.test(f) && f.startsWith(".tscni-index"),
  )) {
    if (readFileSync(join(k.dirs.ipam, NET, f), "utf8").includes(ID))
      out.push(`host-local index mentions ${ID}: ${f}`);
  }
  const cache = files(k.dirs.cache);
  if (cache.length) out.push(`libcni cache: ${cache.join(" ")}`);
  const tuning = files(k.dirs.tuning);
  if (tuning.length) out.push(`tuning: ${tuning.join(" ")}`);
  return out;
}

const tally: string[] = [];
afterAll(() => {
  if (tally.length)
    console.log(`kill-chain (${FULL ? `every ${EVERY}` : "sample"}, seed ${SEED}):\n  ${tally.join("\n  ")}`);
});

let pristine: ReturnType<typeof netnsState> | undefined;
let infra: string[] = [];

/** The fresh-netns state and the shared infrastructure one clean ADD + DEL leaves. */
async function reference(): Promise<void> {
  if (pristine) return;
  const k = fresh(undefined);
  pristine = netnsState(k.host.path);
  await k.cni.addNetworkList(list(k), rt(k));
  await k.cni.delNetworkList(list(k), rt(k));
  infra = sharedInfra(k.host.path);
  expect(leftovers(k, pristine, infra)).toEqual([]);
  k.host.cleanup();
  k.cont.cleanup();
}

type Phase = "ADD" | "DEL";
type Family = (typeof FAMILIES)[number];

/**
 * One kill point in a fresh pair of netns: the chain's `phase` with plugin `type` killed at its nth call of
 * `family`, then DEL (+ checks), then a fresh ADD and DEL (+ checks) when something was killed. Returns
 * whether strace killed anything (false: the phase ran to completion, and must have succeeded).
 */
async function killPoint(phase: Phase, type: string, f: Family, n: number): Promise<boolean> {
  await reference();
  const ref = pristine as ReturnType<typeof netnsState>;
  const [, syscalls, paths] = f;
  const k = fresh(undefined);
  try {
    const spec = `${syscalls}:signal=SIGKILL:when=${n}`;
    const at = `${phase} ${type} ${spec}`;
    const run = () =>
      phase === "ADD" ? k.cni.addNetworkList(list(k), rt(k)) : k.cni.delNetworkList(list(k), rt(k));
    if (phase === "DEL") {
      const add = await attempt(k.cni.addNetworkList(list(k), rt(k)));
      if (add) throw new Error(`clean ADD before the DEL kill failed: ${add}`);
    }
    const r = await injected(k, type, spec, paths(chainBin()), run);
    if (!r.fired && r.error) throw new Error(`${at}: no kill, yet it failed: ${r.error}`);
    const del = await attempt(k.cni.delNetworkList(list(k), rt(k)));
    if (del) throw new Error(`DEL after a kill at ${at} failed: ${del}`);
    expect({ at, left: leftovers(k, ref, infra) }).toEqual({ at, left: [] });
    if (r.fired) {
      const again = await attempt(k.cni.addNetworkList(list(k), rt(k)));
      if (again) throw new Error(`fresh ADD after a kill at ${at} failed: ${again}`);
      const del2 = await attempt(k.cni.delNetworkList(list(k), rt(k)));
      if (del2) throw new Error(`DEL of the fresh ADD after ${at} failed: ${del2}`);
      expect({ at: `${at} (fresh)`, left: leftovers(k, ref, infra) }).toEqual({
        at: `${at} (fresh)`,
        left: [],
      });
    }
    return r.fired;
  } finally {
    k.host.cleanup();
    k.cont.cleanup();
  }
}

/**
 * Kill points per (phase, plugin, family) found by the full run (TSCNI_FAULT_KILL_EVERY=1, see REPORT.md):
 * where the sample of `npm test` draws from. A drawn point that no longer fires (the plugin changed) is
 * still checked as a completed run.
 */
const KNOWN: Record<string, number> = {
  "ADD bridge netlink send": 24,
  "ADD bridge write": 258, // host-local's first write to a fresh store builds its 256 index buckets
  "ADD bridge rename": 1,
  "ADD bridge exec": 1,
  "ADD portmap netlink send": 7,
  "ADD portmap write": 2,
  "ADD portmap exec": 1,
  "ADD bandwidth netlink send": 9,
  "ADD bandwidth write": 1,
  "ADD tuning netlink send": 2,
  "ADD tuning write": 3,
  "ADD tuning rename": 1,
  "DEL bridge netlink send": 10,
  "DEL bridge write": 2,
  "DEL bridge exec": 1,
  "DEL portmap netlink send": 11,
  "DEL bandwidth netlink send": 7,
  "DEL tuning netlink send": 2,
};
const SAMPLE = Number(process.env["TSCNI_FAULT_KILL_SAMPLE"] ?? 10);
const FULL = process.env["TSCNI_FAULT_KILL_EVERY"] !== undefined;

function familyOf(name: string): Family {
  const f = FAMILIES.find(([n]) => n.startsWith(name));
  if (!f) throw new Error(`no family ${name}`);
  return f;
}

if (!FULL) {
  describe("kill -9 in the chain, then DEL (a seeded sample; npm run test:fault runs every point)", () => {
    test(`${SAMPLE} kill points drawn by seed ${SEED} from ${Object.values(KNOWN).reduce((a, b) => a + b)} known ones`, async () => {
      let rnd = SEED >>> 0 || 1;
      const next = () => {
        rnd ^= rnd << 13;
        rnd ^= rnd >>> 17;
        rnd ^= rnd << 5;
        return (rnd >>> 0) / 2 ** 32;
      };
      // a (phase, plugin, family) uniformly, then one of its points: the 256 index writes do not crowd out the rest
      const keys = Object.keys(KNOWN);
      let kills = 0;
      for (let i = 0; i < SAMPLE; i++) {
        const key = keys[Math.floor(next() * keys.length)] ?? "ADD bridge write";
        const n = 1 + Math.floor(next() * (KNOWN[key] ?? 1));
        const [phase, type, ...fam] = key.split(" ");
        const fired = await killPoint(phase as Phase, type ?? "", familyOf(fam.join(" ")), n);
        if (fired) kills++;
        tally.push(`${key} #${n}: ${fired ? "killed" : "ran to completion"}, DEL cleaned it`);
      }
      expect(kills).toBeGreaterThan(0);
    }, 600_000);
  });
}

for (const phase of FULL ? (["ADD", "DEL"] as const) : []) {
  describe(`kill -9 during the chain's ${phase}, then DEL`, () => {
    for (const type of PLUGINS) {
      for (const f of FAMILIES) {
        test(`${type}: SIGKILL at its Nth ${f[0]}`, async () => {
          let kills = 0;
          let completed = false;
          for (let n = firstN(`${phase}/${type}/${f[0]}`); n <= MAX_N && !completed; n += EVERY) {
            if (await killPoint(phase, type, f, n)) kills++;
            else completed = true;
          }
          expect(completed).toBe(true);
          tally.push(`${phase} ${type} ${f[0]}: ${kills} kills`);
        }, 900_000);
      }
    }
  });
}
