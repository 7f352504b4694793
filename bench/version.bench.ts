/**
 * Start-up cost, in one interleaved run: the floor (an empty program compiled like tscni), Go's (an
 * upstream plugin's VERSION), every plugin of ours answering VERSION through its link, `tscni version`,
 * and real ADDs of the plugins that need no host set-up (loopback, host-local, static). Each side's
 * minor page faults come from `/usr/bin/time -f %R` runs after the timed ones: on a VM whose free
 * memory goes back to the hypervisor, faults are what start-up costs most.
 * Goals (issue 19): every plugin's VERSION ≤ 1.15× the empty executable, `tscni version` ≤ 1.3×.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { installablePlugins } from "../src/cli/registry.ts";
import { interleaved, machineLine, type Side, type Stats, writeSection } from "./lib.ts";

const repo = resolve(import.meta.dir, "..");
const ITERATIONS = Number(process.env.TSCNI_BENCH_ITERATIONS) || 60;
const dir = mkdtempSync(join(tmpdir(), "tscni-bench-version-"));
const bin = join(dir, "bin");
const netns = `tscni-bench-version-${process.pid}`;

function sh(cmd: string[], opts: { stdin?: Uint8Array; env?: Record<string, string> } = {}): string {
  const p = Bun.spawnSync(cmd, { stdin: opts.stdin, env: opts.env, stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`${cmd.join(" ")}: ${p.stdout}${p.stderr}`);
  return p.stdout.toString();
}

function buildEmpty(): string {
  const empty = join(dir, "empty");
  writeFileSync(join(dir, "empty.ts"), "");
  const flags = ["build", "--compile", "--minify", "--bytecode", "--format=esm"];
  sh([process.execPath, ...flags, join(dir, "empty.ts"), "--outfile", empty]);
  return empty;
}

const enc = new TextEncoder();
const versionEnv = { CNI_COMMAND: "VERSION", PATH: process.env.PATH ?? "" };
const versionStdin = enc.encode('{"cniVersion":"1.0.0"}');

interface Call {
  name: string;
  cmd: string[];
  env: Record<string, string>;
  stdin?: Uint8Array;
  /** Untimed clean-up after each timed call (the DEL of an ADD). */
  undo?: () => void;
}

function addCall(plugin: string, config: object): Call {
  const env = {
    PATH: process.env.PATH ?? "",
    CNI_COMMAND: "ADD",
    CNI_CONTAINERID: "bench-version",
    CNI_NETNS: `/var/run/netns/${netns}`,
    CNI_IFNAME: plugin === "loopback" ? "lo" : "eth0",
    CNI_PATH: bin,
  };
  const stdin = enc.encode(JSON.stringify({ cniVersion: "1.0.0", name: "bench", ...config }));
  return {
    name: `${plugin} ADD`,
    cmd: [join(bin, plugin)],
    env,
    stdin,
    undo: () => sh([join(bin, plugin)], { env: { ...env, CNI_COMMAND: "DEL" }, stdin }),
  };
}

function side(c: Call): Side {
  return {
    name: c.name,
    run: () => {
      sh(c.cmd, { env: c.env, stdin: c.stdin });
    },
    after: c.undo,
  };
}

/** Median minor page faults of `n` runs of the call (after the timed runs, so caches are alike). */
function faults(c: Call, n = 9): number {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const p = Bun.spawnSync(["/usr/bin/time", "-f", "%R", ...c.cmd], {
      env: c.env,
      stdin: c.stdin,
      stdout: "ignore",
      stderr: "pipe",
    });
    const last = p.stderr.toString().trim().split("\n").pop() ?? "";
    out.push(Number(last));
    c.undo?.();
  }
  return out.sort((a, b) => a - b)[Math.floor(n / 2)] ?? Number.NaN;
}

function fmt(ms: number): string {
  return `${ms.toFixed(2)} ms`;
}

try {
  sh([join(repo, "node_modules/.bin/bun"), "run", "build"]);
  sh([join(repo, "dist/tscni"), "install", bin]);
  sh(["ip", "netns", "add", netns]);
  const data = join(dir, "ipam");
  const calls: Call[] = [
    { name: "empty Bun executable", cmd: [buildEmpty()], env: versionEnv, stdin: versionStdin },
    {
      name: "upstream host-local VERSION",
      cmd: ["/usr/lib/cni/host-local"],
      env: versionEnv,
      stdin: versionStdin,
    },
    ...installablePlugins().map((p) => ({
      name: `${p} VERSION`,
      cmd: [join(bin, p)],
      env: versionEnv,
      stdin: versionStdin,
    })),
    {
      name: "tscni version (CLI)",
      cmd: [join(repo, "dist/tscni"), "version"],
      env: { PATH: versionEnv.PATH },
    },
    addCall("loopback", { type: "loopback" }),
    addCall("host-local", {
      ipam: { type: "host-local", dataDir: data, ranges: [[{ subnet: "10.99.0.0/24" }]] },
    }),
    addCall("static", { ipam: { type: "static", addresses: [{ address: "10.98.0.2/24" }] } }),
    {
      name: "upstream host-local ADD",
      ...(() => {
        const c = addCall("host-local", {
          ipam: { type: "host-local", dataDir: join(dir, "ipam-go"), ranges: [[{ subnet: "10.97.0.0/24" }]] },
        });
        return {
          cmd: ["/usr/lib/cni/host-local"],
          env: c.env,
          stdin: c.stdin,
          undo: () =>
            sh(["/usr/lib/cni/host-local"], { env: { ...c.env, CNI_COMMAND: "DEL" }, stdin: c.stdin }),
        };
      })(),
    },
  ];
  const stats: Stats[] = await interleaved(calls.map(side), ITERATIONS, 5);
  const faultsOf = new Map(calls.map((c) => [c.name, faults(c)]));
  const floor = stats[0]!;
  const go = stats[1]!;
  const rows = stats.map((s) => {
    const f = faultsOf.get(s.name) ?? Number.NaN;
    return `| ${s.name} | ${s.n} | ${fmt(s.medianMs)} | ${fmt(s.p10Ms)} – ${fmt(s.p90Ms)} | ${(s.medianMs / floor.medianMs).toFixed(2)}× | ${(s.medianMs / go.medianMs).toFixed(2)}× | ${f} |`;
  });
  const versions = stats.filter((s) => s.name.endsWith(" VERSION") && !s.name.startsWith("upstream"));
  const worst = versions.reduce((a, b) => (b.medianMs > a.medianMs ? b : a));
  const cli = stats.find((s) => s.name.startsWith("tscni version"))!;
  const free = sh(["free", "-m"]).trim().split("\n").slice(0, 2).join("\n");
  const md = [
    "## Start-up: VERSION of every plugin, `tscni version`, small ADDs (process start-up included)",
    "",
    machineLine(),
    "",
    "| side | n | median | p10 – p90 | vs empty Bun | vs Go VERSION | minor faults |",
    "|---|---|---|---|---|---|---|",
    ...rows,
    "",
    `Goals: every plugin's VERSION ≤ 1.15× the empty executable — slowest ${worst.name} ` +
      `${(worst.medianMs / floor.medianMs).toFixed(2)}× (${worst.medianMs / floor.medianMs <= 1.15 ? "met" : "not met"}); ` +
      `\`tscni version\` ≤ 1.3× — ${(cli.medianMs / floor.medianMs).toFixed(2)}× (${cli.medianMs / floor.medianMs <= 1.3 ? "met" : "not met"}).`,
    "",
    "Page cache at the end of the run (`free -m`):",
    "",
    "```",
    free,
    "```",
  ].join("\n");
  console.log(md);
  writeSection("version", md);
} finally {
  Bun.spawnSync(["ip", "netns", "del", netns]);
  rmSync(dir, { recursive: true, force: true });
}
