/**
 * Benchmark driver shared by every bench/*.bench.ts: A/B runs interleaved (so drift hits both sides
 * alike), medians and ratios, and a section of bench/RESULTS.md rewritten per benchmark.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface Side {
  name: string;
  /** One timed iteration; setup that must not be timed goes in `before`/`after`. */
  run: () => unknown | Promise<unknown>;
  before?: () => unknown | Promise<unknown>;
  after?: () => unknown | Promise<unknown>;
}

export interface Stats {
  name: string;
  n: number;
  medianMs: number;
  p10Ms: number;
  p90Ms: number;
}

function stats(name: string, samples: number[]): Stats {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.max(0, Math.round((s.length - 1) * q)))]!;
  return { name, n: s.length, medianMs: at(0.5), p10Ms: at(0.1), p90Ms: at(0.9) };
}

/** Runs every side `iterations` times, interleaved A, B, A, B…; `warmup` untimed rounds first. */
export async function interleaved(sides: Side[], iterations: number, warmup = 3): Promise<Stats[]> {
  const samples = sides.map(() => [] as number[]);
  for (let i = 0; i < warmup + iterations; i++) {
    for (const [k, side] of sides.entries()) {
      await side.before?.();
      const t0 = performance.now();
      await side.run();
      const dt = performance.now() - t0;
      await side.after?.();
      if (i >= warmup) samples[k]!.push(dt);
    }
  }
  return sides.map((s, k) => stats(s.name, samples[k]!));
}

export function fmtMs(ms: number): string {
  return ms < 1 ? `${(ms * 1000).toFixed(0)} µs` : `${ms.toFixed(2)} ms`;
}

/** A markdown table: one row per side, ratio against the `baseline` side (default: the last). */
export function table(results: Stats[], baseline = results[results.length - 1]!.name): string {
  const base = results.find((r) => r.name === baseline)!;
  const rows = results.map(
    (r) =>
      `| ${r.name} | ${r.n} | ${fmtMs(r.medianMs)} | ${fmtMs(r.p10Ms)} – ${fmtMs(r.p90Ms)} | ${(r.medianMs / base.medianMs).toFixed(2)}× |`,
  );
  return ["| side | n | median | p10 – p90 | vs " + baseline + " |", "|---|---|---|---|---|", ...rows].join(
    "\n",
  );
}

const RESULTS = join(import.meta.dir, "RESULTS.md");

/** Replaces (or appends) the section `<!-- id:start -->…<!-- id:end -->` of bench/RESULTS.md. */
export function writeSection(id: string, markdown: string): void {
  const start = `<!-- ${id}:start -->`;
  const end = `<!-- ${id}:end -->`;
  const block = `${start}\n${markdown.trim()}\n${end}`;
  let text = existsSync(RESULTS)
    ? readFileSync(RESULTS, "utf8")
    : "# Benchmark results\n\nWritten by `npm run bench` (bench/*.bench.ts). Medians of interleaved A/B runs on the\nproject's 2-core VM; ratios are against the named baseline.\n";
  const a = text.indexOf(start);
  const b = text.indexOf(end);
  text =
    a >= 0 && b > a
      ? text.slice(0, a) + block + text.slice(b + end.length)
      : `${text.trimEnd()}\n\n${block}\n`;
  writeFileSync(RESULTS, text);
}

export function machineLine(): string {
  return `_${new Date().toISOString().slice(0, 10)}, ${process.platform} ${process.arch}, bun ${Bun.version}_`;
}

const HOST_NETNS_ENV = "TSCNI_BENCH_HOST_NETNS";

/**
 * Runs `main(hostNetnsName)` inside a throwaway host netns, so a bench's bridges, firewall rules and
 * sysctls never touch the machine's: the first run re-execs `script` there under `nsenter --net` and
 * deletes the netns after; the re-exec'd run calls `main`.
 */
export async function inThrowawayHostNetns(
  script: string,
  prefix: string,
  main: (host: string) => Promise<void>,
): Promise<void> {
  const host = process.env[HOST_NETNS_ENV];
  if (host) return main(host);
  const name = `${prefix}-${process.pid}`;
  const add = Bun.spawnSync(["ip", "netns", "add", name], { stderr: "pipe" });
  if (add.exitCode !== 0) throw new Error(`ip netns add ${name}: ${add.stderr.toString().trim()}`);
  try {
    const p = Bun.spawnSync(["nsenter", `--net=/var/run/netns/${name}`, process.execPath, script], {
      env: { ...process.env, [HOST_NETNS_ENV]: name },
      stdout: "inherit",
      stderr: "inherit",
    });
    process.exitCode = p.exitCode ?? 1;
  } finally {
    Bun.spawnSync(["ip", "netns", "del", name]);
  }
}
