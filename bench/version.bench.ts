/**
 * Start-up cost: the compiled tscni answering VERSION (as host-local, through a link) vs upstream's Go
 * host-local. Goal (foundation issue): median ≤ 10 ms.
 */
import { mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { interleaved, machineLine, table, writeSection } from "./lib.ts";

const repo = resolve(import.meta.dir, "..");
const dir = mkdtempSync(join(tmpdir(), "tscni-bench-version-"));
const ours = join(dir, "host-local");
symlinkSync(join(repo, "dist/tscni"), ours);
const env = { CNI_COMMAND: "VERSION", PATH: process.env.PATH ?? "" };
const stdin = new TextEncoder().encode('{"cniVersion":"1.0.0"}');

function version(file: string): void {
  const p = Bun.spawnSync([file], { env, stdin });
  if (p.exitCode !== 0) throw new Error(`${file} VERSION failed: ${p.stdout}`);
}

try {
  const results = await interleaved(
    [
      { name: "tscni host-local", run: () => version(ours) },
      { name: "upstream host-local", run: () => version("/usr/lib/cni/host-local") },
    ],
    200,
    10,
  );
  const md = `## VERSION round trip (process start-up)\n\n${machineLine()}\n\n${table(results)}\n\nGoal: tscni median ≤ 10 ms.`;
  console.log(md);
  writeSection("version", md);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
