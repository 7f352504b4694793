/**
 * Cluster IPAM (whereabouts on a 3-member etcd 3.4, test/helpers/etcd.ts) against host-local, both as
 * the compiled tscni: one ADD (goal ≤ 1.5× host-local), allocations/s at 64-way concurrency across 2
 * nodes, and whereabouts' failing case scaled to this machine (128 pods × 16 attachments = 2,048
 * allocations across 2 nodes: goal ≤ 60 s, 0 duplicates), each exec'd as a runtime does and through
 * the warm path (native launcher + resident helper, docs/warm-path.md). The measuring runs inside the
 * etcd netns (bench/ipam-etcd.driver.ts). TSCNI_BENCH_QUICK=1 leaves out the exec'd 2,048.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { buildTscni } from "../test/helpers/build.ts";
import { startEtcdCluster } from "../test/helpers/etcd.ts";
import { machineLine, type Stats, table, writeSection } from "./lib.ts";

const repo = resolve(import.meta.dir, "..");
const exe = existsSync(join(repo, "dist/tscni")) ? join(repo, "dist/tscni") : buildTscni();
const root = mkdtempSync(join(tmpdir(), "tscni-bench-etcd-"));
const bin = join(root, "bin");
const warmBin = join(root, "warm-bin");
// beside the executable, where `tscni warm serve` looks for it
const launcher = join(dirname(exe), "tscni-launcher");
const cc = Bun.spawnSync(["cc", "-O2", "-static", "-o", launcher, join(repo, "native/warm-launcher.c")]);
if (cc.exitCode !== 0) throw new Error(`building the launcher: ${cc.stderr}`);
Bun.spawnSync(["mkdir", "-p", bin, warmBin]);
for (const name of ["whereabouts", "host-local"]) {
  symlinkSync(exe, join(bin, name));
  symlinkSync(launcher, join(warmBin, name));
}

/** CPU seconds (user + system) the etcd members used so far. */
function etcdCpu(): number {
  let ticks = 0;
  for (const m of cluster.members) {
    if (!m.pid) continue;
    const f = readFileSync(`/proc/${m.pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
    ticks += Number(f[11]) + Number(f[12]);
  }
  return ticks / 100;
}

const cluster = await startEtcdCluster({ members: 3 });
try {
  const cpu0 = etcdCpu();
  const t0 = performance.now();
  const r = await cluster.runBun(
    join(import.meta.dir, "ipam-etcd.driver.ts"),
    [bin, cluster.endpoints.join(","), root, warmBin, exe],
    {
      timeoutMs: Number(process.env.TSCNI_BENCH_TIMEOUT_MS) || 900_000,
      env: { TSCNI_BENCH_QUICK: process.env.TSCNI_BENCH_QUICK ?? "" },
    },
  );
  if (r.code !== 0) throw new Error(`driver failed (${r.code}): ${r.stderr}`);
  process.stderr.write(r.stderr);
  const etcdSeconds = etcdCpu() - cpu0;
  const wallSeconds = (performance.now() - t0) / 1000;
  type Big = { pods: number; nets: number; ms: number; allocations: number; distinct: number };
  const m = JSON.parse(r.stdout) as {
    one: Stats[];
    oneWarm: Stats[];
    w64: { ms: number; distinct: number };
    big?: Big;
    bigWarm: Big;
    inproc: { ms: number; allocations: number; distinct: number };
  };
  const ratio = (m.one[0] as Stats).medianMs / (m.one[1] as Stats).medianMs;
  const ratioWarm = (m.oneWarm[0] as Stats).medianMs / (m.oneWarm[1] as Stats).medianMs;
  const bigLine = (b: Big) =>
    `${b.allocations} allocations in ${(b.ms / 1000).toFixed(1)} s (goal ≤ 60 s), ${(b.allocations / (b.ms / 1000)).toFixed(0)} allocations/s, ${b.allocations - b.distinct} duplicates`;
  const ops = 2 * (66 + 64) + 2 * ((m.big?.allocations ?? 0) + m.bigWarm.allocations + m.inproc.allocations);
  const md = [
    "## Cluster IPAM: whereabouts on a 3-member etcd vs host-local (process included)",
    "",
    machineLine(),
    "",
    "### One ADD (+ DEL untimed)",
    "",
    table(m.one),
    "",
    `whereabouts / host-local: ${ratio.toFixed(2)}× (goal ≤ 1.5×)`,
    "",
    "Through the warm path (launcher + resident helper), both sides:",
    "",
    table(m.oneWarm),
    "",
    `whereabouts / host-local, warm: ${ratioWarm.toFixed(2)}×`,
    "",
    "### 64 parallel ADDs across 2 nodes, one range (exec'd)",
    "",
    `${(m.w64.ms / 1000).toFixed(2)} s, ${((64 / m.w64.ms) * 1000).toFixed(0)} allocations/s, ${m.w64.distinct} distinct of 64`,
    "",
    `### ${m.bigWarm.pods} pods × ${m.bigWarm.nets} attachments across 2 nodes (whereabouts issue 313's case)`,
    "",
    `Exec'd, a process per allocation: ${m.big ? bigLine(m.big) : "not run (TSCNI_BENCH_QUICK=1)"}`,
    "",
    `Through the warm path (the runtime still execs a plugin per allocation: the launcher): ${bigLine(m.bigWarm)}`,
    "",
    "The same with the allocator in-process (128 concurrent pods, one client; what etcd and the txns sustain",
    "without a process per allocation):",
    "",
    `${m.inproc.allocations} allocations in ${(m.inproc.ms / 1000).toFixed(1)} s, ${(m.inproc.allocations / (m.inproc.ms / 1000)).toFixed(0)} allocations/s, ${m.inproc.allocations - m.inproc.distinct} duplicates`,
    "",
    `etcd members' CPU over the whole run (${wallSeconds.toFixed(0)} s, ~${ops} allocations and releases): ${etcdSeconds.toFixed(1)} s, ${((etcdSeconds / ops) * 1000).toFixed(1)} ms per operation; load average at the end: ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}`,
  ].join("\n");
  console.log(md);
  writeSection("ipam-etcd", md);
} finally {
  await cluster.stop();
  rmSync(root, { recursive: true, force: true });
}
