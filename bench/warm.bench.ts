/**
 * Issue 19 part 3, measured before building: can a warm path bring a bridge + host-local ADD + DEL
 * cycle, exec'd the way containerd/CRI-O/kubelet exec plugins, to ≤ 0.8× upstream's?
 *
 * Design A — the resident helper (`tscni warm serve`, src/cli/warm.ts: our plugins in-process, one call
 * at a time in the caller's netns) reached from the native launcher (native/warm-launcher.c, a static C
 * program the runtime execs under the plugin's name; with no helper it execs tscni).
 * Design B — a launcher in JavaScript: any Bun-based client pays at least the empty compiled Bun
 * executable's start-up per call, measured here as its floor (no smaller JS runtime is installed).
 *
 * Sides, interleaved, through our libcni exec'ing each plugin as a runtime would: upstream's Go plugins,
 * ours exec'd (today), ours through launcher + helper, and the launcher with the helper gone (fallback).
 * TSCNI_BENCH_COLD=1 drops the page cache before every timed cycle (the cold-memory case).
 * Runs in a throwaway host netns (re-exec under nsenter), like bench/chain.
 */
import { spawn } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { CNIConfig, defaultExec, type RuntimeConf } from "../src/libcni/index.ts";
import { netConfFromObject } from "../src/spec/conf.ts";
import { buildTscni } from "../test/helpers/build.ts";
import {
  fmtMs,
  inThrowawayHostNetns,
  interleaved,
  machineLine,
  type Side,
  table,
  writeSection,
} from "./lib.ts";

const ITERATIONS = Number(process.env.TSCNI_BENCH_ITERATIONS) || 20;
const COLD = process.env.TSCNI_BENCH_COLD === "1";

function sh(cmd: string[]): string {
  const p = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`${cmd.join(" ")}: ${p.stderr.toString().trim()}`);
  return p.stdout.toString();
}

function linkDir(root: string, name: string, target: string): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  for (const p of ["bridge", "host-local"]) symlinkSync(target, join(dir, p));
  return dir;
}

function dropCaches(): void {
  if (!COLD) return;
  sh(["sync"]);
  writeFileSync("/proc/sys/vm/drop_caches", "3");
}

let seq = 0;
const containers = new Set<string>();

function cycleSide(
  name: string,
  cniPath: string,
  root: string,
  host: string,
  subnet: string,
  env = {},
): Side {
  const state = join(root, `state-${name.replace(/\W+/g, "-")}`);
  const conf = netConfFromObject({
    cniVersion: "1.0.0",
    name: "warm",
    type: "bridge",
    bridge: `wb${seq++}`,
    isGateway: true,
    ipam: { type: "host-local", dataDir: join(state, "ipam"), ranges: [[{ subnet }]] },
  });
  const exec = {
    findInPath: defaultExec.findInPath,
    execPlugin: (path: string, stdin: Uint8Array, e: Record<string, string>, signal?: AbortSignal) =>
      defaultExec.execPlugin(path, stdin, { ...e, ...env }, signal),
  };
  const cni = new CNIConfig({ path: [cniPath], cacheDir: join(state, "cache"), exec });
  let rt: RuntimeConf | undefined;
  let netns = "";
  return {
    name,
    before: () => {
      netns = `${host}-c${++seq}`;
      sh(["ip", "netns", "add", netns]);
      containers.add(netns);
      rt = { containerID: `warm-${process.pid}-${seq}`, netNS: `/var/run/netns/${netns}`, ifName: "eth0" };
      dropCaches();
    },
    run: async () => {
      if (!rt) throw new Error("no runtime conf");
      const r = await cni.addNetwork(conf, rt);
      if (!r.ips?.length) throw new Error(`${name}: no address: ${JSON.stringify(r)}`);
      await cni.delNetwork(conf, rt);
    },
    after: () => {
      sh(["ip", "netns", "del", netns]);
      containers.delete(netns);
    },
  };
}

function startHelper(tscni: string, sock: string): Promise<{ pid: number; stop: () => void }> {
  const p = spawn(tscni, ["warm", "serve", "--socket", sock], { stdio: ["ignore", "ignore", "pipe"] });
  return new Promise((resolve, reject) => {
    p.stderr?.once("data", () => resolve({ pid: p.pid ?? 0, stop: () => p.kill("SIGKILL") }));
    p.once("exit", (c) => reject(new Error(`helper exited ${c}`)));
  });
}

function rssMB(pid: number): number {
  const m = readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+)/);
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

async function main(host: string): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), "tscni-bench-warm-"));
  const built = buildTscni();
  const helpers: { stop: () => void }[] = [];
  try {
    // beside the executable, where `tscni warm serve` and `tscni install --warm` look for it
    const launcher = join(dirname(built), "tscni-launcher");
    sh(["cc", "-O2", "-static", "-o", launcher, join(import.meta.dir, "../native/warm-launcher.c")]);
    const empty = join(root, "empty");
    writeFileSync(join(root, "empty.ts"), "");
    writeFileSync(join(root, "empty.js"), "");
    sh([
      process.execPath,
      "build",
      "--compile",
      "--minify",
      "--bytecode",
      "--format=esm",
      join(root, "empty.ts"),
      "--outfile",
      empty,
    ]);

    const sock = join(root, "warm.sock");
    const helper = await startHelper(built, sock);
    helpers.push(helper);
    const env = { TSCNI_WARM_SOCK: sock, TSCNI_WARM_FALLBACK: built };
    const deadEnv = { TSCNI_WARM_SOCK: join(root, "absent.sock"), TSCNI_WARM_FALLBACK: built };
    const cycles: Side[] = [
      cycleSide(
        "A: launcher + resident helper",
        linkDir(root, "warm", launcher),
        root,
        host,
        "10.91.0.0/16",
        env,
      ),
      cycleSide(
        "A, helper gone: launcher → exec tscni",
        linkDir(root, "dead", launcher),
        root,
        host,
        "10.92.0.0/16",
        deadEnv,
      ),
      cycleSide("tscni exec'd (today)", linkDir(root, "ours", built), root, host, "10.93.0.0/16"),
      cycleSide("upstream (Go)", linkDir(root, "up", "/usr/lib/cni/bridge"), root, host, "10.94.0.0/16"),
    ];
    // upstream's host-local is its own binary
    rmSync(join(root, "up", "host-local"));
    symlinkSync("/usr/lib/cni/host-local", join(root, "up", "host-local"));
    const cycleStats = await interleaved(cycles, ITERATIONS, 3);

    const version = (cmd: string[], e: Record<string, string> = {}): Side => ({
      name: cmd.join(" "),
      before: dropCaches,
      run: () => {
        const p = Bun.spawnSync(cmd, {
          env: { CNI_COMMAND: "VERSION", ...e },
          stdin: new TextEncoder().encode("{}"),
        });
        if (p.exitCode !== 0) throw new Error(`${cmd}: ${p.stderr}`);
      },
    });
    const startStats = await interleaved(
      [
        { ...version([join(root, "warm", "bridge")], env), name: "A: launcher VERSION through the helper" },
        { ...version([empty]), name: "B floor: empty compiled Bun executable" },
        // a small embeddable engine, where installed (Debian's duktape: ES5, no syscalls or FFI)
        ...(existsSync("/usr/bin/duk")
          ? [{ ...version(["/usr/bin/duk", join(root, "empty.js")]), name: "B': duktape, empty script" }]
          : []),
        { ...version([join(root, "ours", "bridge")]), name: "tscni bridge VERSION (exec)" },
        { ...version(["/usr/lib/cni/bridge"]), name: "upstream bridge VERSION" },
      ],
      ITERATIONS,
      3,
    );
    const rss = rssMB(helper.pid);
    const up = cycleStats[cycleStats.length - 1]?.medianMs ?? Number.NaN;
    const warm = cycleStats[0]?.medianMs ?? Number.NaN;
    const md = [
      `## Warm path (issue 19 part 3): bridge + host-local ADD + DEL, exec'd as a runtime does${COLD ? " — cold page cache" : ""}`,
      "",
      machineLine(),
      ...(COLD ? ["", "The page cache was dropped before every timed call."] : []),
      "",
      table(cycleStats),
      "",
      "Start-up alone (VERSION):",
      "",
      table(startStats),
      "",
      `Design A: ${(warm / up).toFixed(2)}× upstream (goal ≤ 0.8×); helper RSS after the run ${rss.toFixed(0)} MB. ` +
        `Design B's floor is the empty Bun executable: ${fmtMs(startStats[1]?.medianMs ?? Number.NaN)} per process, ` +
        "two processes per cycle before any work.",
    ].join("\n");
    console.log(md);
    writeSection(COLD ? "warm-cold" : "warm", md);
  } finally {
    for (const h of helpers) h.stop();
    for (const n of containers) Bun.spawnSync(["ip", "netns", "del", n]);
    rmSync(root, { recursive: true, force: true });
    rmSync(dirname(built), { recursive: true, force: true });
  }
}

await inThrowawayHostNetns(import.meta.path, "tscni-bench-warm", main);
