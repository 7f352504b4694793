/**
 * Start-up cost: the compiled tscni answering VERSION (as host-local, through a link) vs upstream's Go
 * host-local, with the floor of the stack beside them: an empty program compiled the same way.
 * Goal (foundation issue): median ≤ 10 ms.
 */
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { interleaved, machineLine, table, writeSection } from "./lib.ts";

const repo = resolve(import.meta.dir, "..");
const dir = mkdtempSync(join(tmpdir(), "tscni-bench-version-"));
const ours = join(dir, "host-local");
symlinkSync(join(repo, "dist/tscni"), ours);
// The floor: what any compiled Bun program pays before its first line runs.
const empty = join(dir, "empty");
writeFileSync(join(dir, "empty.ts"), "");
const built = Bun.spawnSync(
  [
    process.execPath,
    "build",
    "--compile",
    "--minify",
    "--bytecode",
    join(dir, "empty.ts"),
    "--outfile",
    empty,
  ],
  { stdout: "ignore", stderr: "pipe" },
);
if (built.exitCode !== 0) throw new Error(`building the empty program: ${built.stderr}`);
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
      { name: "empty Bun executable", run: () => version(empty) },
      { name: "upstream host-local", run: () => version("/usr/lib/cni/host-local") },
    ],
    200,
    10,
  );
  const md = [
    "## VERSION round trip (process start-up)",
    "",
    machineLine(),
    "",
    table(results),
    "",
    "Goal: tscni median ≤ 10 ms. The empty Bun executable is the stack's floor: every plugin process of",
    "ours pays it, against Go's start-up for upstream's; chains of short processes carry the difference.",
  ].join("\n");
  console.log(md);
  writeSection("version", md);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
