/**
 * Preloaded by bunfig.toml into every `bun test` run. bun test does not emit process "exit", so what a
 * test process made once for all its files (the compiled executable, IPAM wrapper dirs, netns left by
 * a crashed test) is removed here, after the last file. Imported outside bun test (bench/), it runs
 * at process exit instead.
 */
import { afterAll } from "bun:test";

const atEnd: (() => void)[] = [];

/** Runs `fn` once after every test file of this process has finished. */
export function onTestRunEnd(fn: () => void): void {
  atEnd.push(fn);
}

function runAll(): void {
  for (const fn of atEnd.splice(0).reverse()) {
    try {
      fn();
    } catch (err) {
      process.stderr.write(`teardown: ${err instanceof Error ? err.message : err}\n`);
    }
  }
}

try {
  afterAll(runAll);
} catch {
  // Outside bun test (the benchmarks use the helpers too): at process exit.
  process.on("exit", runAll);
}
