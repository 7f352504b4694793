/**
 * Test fixture: a temp dir with a CNI_PATH holding the noop test plugin as executables
 * ("noop" speaks every version, "noop031" only 0.1.0–0.3.1), a cache dir, and the noop's call log.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { NoopCall } from "../../src/plugins/test/noop.ts";

export const REPO_ROOT = resolve(import.meta.dir, "../..");
const BUN = join(REPO_ROOT, "node_modules/.bin/bun");
const NOOP_MAIN = join(REPO_ROOT, "src/plugins/test/noop-main.ts");

export interface NoopEnv {
  root: string;
  binDir: string;
  cacheDir: string;
  confDir: string;
  logFile: string;
  /** The calls logged so far. */
  calls(): NoopCall[];
  cleanup(): void;
}

export function makeNoopEnv(): NoopEnv {
  const root = mkdtempSync(join(tmpdir(), "tscni-libcni-"));
  const binDir = join(root, "bin");
  const cacheDir = join(root, "cache");
  const confDir = join(root, "conf");
  const logFile = join(root, "calls.jsonl");
  mkdirSync(binDir);
  mkdirSync(confDir);
  const wrapper = (env: string) => `#!/bin/sh\n${env}exec "${BUN}" "${NOOP_MAIN}" "$@"\n`;
  writeFileSync(join(binDir, "noop"), wrapper(""), { mode: 0o755 });
  writeFileSync(
    join(binDir, "noop031"),
    wrapper("NOOP_SUPPORTED_VERSIONS=0.1.0,0.2.0,0.3.0,0.3.1; export NOOP_SUPPORTED_VERSIONS\n"),
    { mode: 0o755 },
  );
  return {
    root,
    binDir,
    cacheDir,
    confDir,
    logFile,
    calls() {
      let text = "";
      try {
        text = readFileSync(logFile, "utf8");
      } catch {
        return [];
      }
      return text
        .split("\n")
        .filter((l) => l !== "")
        .map((l) => JSON.parse(l) as NoopCall);
    },
    cleanup() {
      rmSync(root, { recursive: true, force: true });
    },
  };
}
