/**
 * Compiles the tscni executable for tests, with exactly the flags of package.json's "build" script
 * (only the output file differs), once per test process.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { onTestRunEnd } from "./teardown.ts";

export const REPO = resolve(import.meta.dir, "../..");
let built: string | undefined;

export function buildTscni(): string {
  if (built) return built;
  const script: string = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")).scripts.build;
  const args = script.split(/\s+/).slice(1); // drop "bun"
  const dir = mkdtempSync(join(tmpdir(), "tscni-build-"));
  // ~110 MB: removed after the run's last test file (every file of the run shares it).
  onTestRunEnd(() => rmSync(dir, { recursive: true, force: true }));
  const out = join(dir, "tscni");
  const i = args.indexOf("--outfile");
  if (i < 0) throw new Error(`package.json build script has no --outfile: ${script}`);
  args[i + 1] = out;
  const p = Bun.spawnSync([join(REPO, "node_modules/.bin/bun"), ...args], { cwd: REPO });
  if (p.exitCode !== 0) throw new Error(`building tscni failed: ${p.stderr}`);
  built = out;
  return out;
}
