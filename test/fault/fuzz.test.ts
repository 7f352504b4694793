/**
 * Fuzzed input (issue 18 §1): every plugin × verb with generated configs, environments and prevResults
 * (fuzz-gen.ts), through skel in-process (the multicall registry, in-memory I/O) and as a sample through
 * the compiled executable. The driver (fuzz-driver.ts) runs in a throwaway host netns and a private mount
 * namespace; this file makes the namespaces, starts it and checks its verdict and the kernel state after
 * it with the oracles (`ip -j`, `nft -j`).
 *
 * TSCNI_FAULT_RUNS (default 10000) and TSCNI_FAULT_SEED (default 18) pick the in-process run; the seed of
 * a failing run is in the failure message, rerun with it to reproduce.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { buildTscni } from "../helpers/build.ts";
import { cleanupAll, makeNetns, type TempNetns, tempDir } from "../helpers/netns.ts";

const RUNS = Number(process.env["TSCNI_FAULT_RUNS"] ?? 10000);
const EXEC_RUNS = Number(process.env["TSCNI_FAULT_EXEC_RUNS"] ?? 150);
const SEED = Number(process.env["TSCNI_FAULT_SEED"] ?? 18);
const BUN = join(import.meta.dir, "../../node_modules/.bin/bun");
const DRIVER = join(import.meta.dir, "fuzz-driver.ts");
// ~8 ms a case in-process on this 2-core machine, ~70 ms a case exec'd
const TIMEOUT = Math.max(170_000, RUNS * 25, EXEC_RUNS * 250);

afterAll(cleanupAll);

interface Verdict {
  runs: number;
  seed: number;
  byPlugin: Record<string, { runs: number; ok: number; addOk: number }>;
  failures: string[];
}

interface World {
  host: TempNetns;
  cont: TempNetns;
  meta: TempNetns;
  sandbox: string;
}

function world(): World {
  const host = makeNetns("fzh");
  const cont = makeNetns("fzc");
  const meta = makeNetns("fzm");
  // the meta plugins' container has its eth0 (a veth to the host netns), as a main plugin leaves it
  host.ip("link", "add", "fzh0", "type", "veth", "peer", "name", "eth0", "netns", meta.name);
  host.ip("link", "set", "fzh0", "up");
  meta.ip("link", "set", "eth0", "up");
  return { host, cont, meta, sandbox: tempDir("tscni-fuzz-").path };
}

async function drive(w: World, runs: number, seed: number, exe?: string): Promise<Verdict> {
  const driver = [BUN, DRIVER, "--seed", String(seed), "--runs", String(runs), "--sandbox", w.sandbox];
  driver.push("--netns", w.cont.path, "--meta-netns", w.meta.path, ...(exe ? ["--exec", exe] : []));
  // ip netns exec gives the driver a private mount namespace: tmpfs over the default data dirs there.
  // A host without them (no CNI runtime ran yet) gets the empty mount points for the run only.
  const script = [
    'made=""; for d in /var/lib/cni /run/cni; do [ -d "$d" ] || { mkdir "$d" && made="$made $d"; }; done',
    'mount -t tmpfs tmpfs /var/lib/cni && mount -t tmpfs tmpfs /run/cni && "$@"; rc=$?',
    'umount /var/lib/cni /run/cni 2>/dev/null; for d in $made; do rmdir "$d"; done; exit $rc',
  ].join("\n");
  const p = Bun.spawn(["ip", "netns", "exec", w.host.name, "sh", "-c", script, "sh", ...driver], {
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, TSCNI_DEBUG: "" },
  });
  const [out, err, code] = await Promise.all([
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
    p.exited,
  ]);
  const last = out.trim().split("\n").pop() ?? "";
  if (code !== 0 || !last.startsWith("{"))
    throw new Error(`fuzz driver exited ${code}: ${out.slice(-2000)} ${err.slice(-2000)}`);
  return JSON.parse(last);
}

/** What the kernel has after the run, by the oracles: links per netns and nft rules in the host. */
function leftovers(w: World): { host: string[]; cont: string[]; meta: string[]; nftRules: number } {
  const names = (n: TempNetns) =>
    (n.ip("-d", "link", "show") as { ifname: string; linkinfo?: { info_kind?: string } }[])
      .filter((l) => l.linkinfo?.info_kind !== "bridge")
      .map((l) => l.ifname)
      .sort();
  const nft = JSON.parse(w.host.run(["nft", "-j", "list", "ruleset"]).stdout || '{"nftables":[]}');
  // portmap's and ipMasq's tables keep their fixed rules and (empty) maps after the last DEL: per-container
  // state is map elements. Anything else is a leak: a rule of another table, an element in a map.
  const objs = nft.nftables as Record<string, { table?: string; name?: string; elem?: unknown[] }>[];
  const rules =
    objs.filter((o) => o.rule && !["tscni_hostport", "tscni_masquerade"].includes(o.rule.table ?? ""))
      .length +
    objs.filter((o) => {
      const m = o.map ?? o.set;
      return m && !m.name?.startsWith("layout_") && (m.elem?.length ?? 0) > 0;
    }).length;
  return { host: names(w.host), cont: names(w.cont), meta: names(w.meta), nftRules: rules };
}

function expectClean(w: World, v: Verdict, runs: number): void {
  if (v.failures.length) throw new Error(`seed ${v.seed}:\n${v.failures.join("\n")}`);
  expect(v.runs).toBeGreaterThanOrEqual(runs);
  const left = leftovers(w);
  // the bridges stay after DEL (upstream alike); nothing else
  expect(left.host).toEqual(["fzh0", "lo"]);
  expect(left.cont).toEqual(["lo"]);
  expect(left.meta).toEqual(["eth0", "lo"]);
  if (left.nftRules) console.log(w.host.run(["nft", "list", "ruleset"]).stdout);
  expect(left.nftRules).toBe(0);
  console.log(`fuzz: ${v.runs} cases, seed ${v.seed}: ${JSON.stringify(v.byPlugin)}`);
}

describe("fuzzed input", () => {
  test(
    `${RUNS} cases in-process: a CNI error or success, no stack trace, nothing left behind`,
    async () => {
      const w = world();
      const v = await drive(w, RUNS, SEED);
      expectClean(w, v, RUNS);
      // every plugin was reached and the valid ones succeeded often enough to exercise DEL
      for (const name of [
        "bridge",
        "ptp",
        "loopback",
        "portmap",
        "tuning",
        "bandwidth",
        "host-local",
        "static",
      ])
        expect(v.byPlugin[name]?.addOk ?? 0).toBeGreaterThan(0);
    },
    TIMEOUT,
  );

  test(
    `${EXEC_RUNS} cases through the compiled executable`,
    async () => {
      const exe = buildTscni();
      const w = world();
      const v = await drive(w, EXEC_RUNS, SEED + 1, exe);
      expectClean(w, v, EXEC_RUNS);
    },
    TIMEOUT,
  );
});
