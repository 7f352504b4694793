/**
 * Runs a corpus of plugin call sequences twice — exec'd (defaultExec) and in-process (inProcessExec) —
 * against the same links to the compiled tscni, and prints both outcomes as JSON. The test starts it
 * with `ip netns exec <host netns>`, so the plugins' host side (bridges, nft rules) lands in a
 * throwaway netns whether they run as children or in this process.
 *
 *   bun inprocess-driver.ts <self (compiled tscni)> <dir of links>  < corpus.json  > outcomes.json
 *
 * Besides the outcomes it reports this thread's netns inode and open fd count before and after the
 * in-process runs: a failing plugin must leave the runtime process as it found it.
 */
import { readdirSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import { loadPlugin } from "../../src/cli/registry.ts";
import { defaultExec, type Exec, inProcessExec } from "../../src/libcni/index.ts";
import { pluginMain } from "../../src/skel/skel.ts";
import { CniError } from "../../src/spec/errors.ts";

export interface Step {
  plugin: string;
  env: Record<string, string>;
  /** The stdin, as a JSON value or raw text. */
  config: unknown;
  raw?: string;
  /** Put the outcome of the sequence's last successful ADD into config.prevResult. */
  prev?: boolean;
}

export interface Case {
  name: string;
  steps: Step[];
}

export type Outcome = { ok: string } | { err: { code: number; msg: string; details: string } };

export interface DriverOutput {
  exec: Record<string, Outcome[]>;
  inProcess: Record<string, Outcome[]>;
  /** The in-process corpus run again: the same outcomes, and no fd or netns left changed by it. */
  again: Record<string, Outcome[]>;
  before: { netns: string; fds: number };
  after: { netns: string; fds: number };
  /** In-process calls that went to the fallback Exec instead. */
  fallbackCalls: number;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

async function runSequence(exec: Exec, dir: string, c: Case): Promise<Outcome[]> {
  const out: Outcome[] = [];
  let prev: unknown;
  for (const s of c.steps) {
    let stdin = s.raw ?? JSON.stringify(s.config);
    if (s.prev && prev !== undefined) stdin = JSON.stringify({ ...(s.config as object), prevResult: prev });
    try {
      const stdout = dec.decode(await exec.execPlugin(join(dir, s.plugin), enc.encode(stdin), s.env));
      out.push({ ok: stdout });
      if (s.env.CNI_COMMAND === "ADD") prev = JSON.parse(stdout);
    } catch (e) {
      if (!(e instanceof CniError)) throw e;
      out.push({ err: { code: e.code, msg: e.msg, details: e.details } });
    }
  }
  return out;
}

function processState(): { netns: string; fds: number } {
  return { netns: readlinkSync("/proc/thread-self/ns/net"), fds: readdirSync("/proc/self/fd").length };
}

const [self, dir] = process.argv.slice(2);
if (!self || !dir) throw new Error("usage: inprocess-driver.ts <self> <dir>");
const corpus: Case[] = JSON.parse(await Bun.stdin.text());
// Plugins' stderr on success is copied to the runtime's stderr by both paths; keep it out of stdout.
// Every plugin of the corpus is a link to `self`: none may reach the fallback.
let fallbackCalls = 0;
const countingFallback: Exec = {
  findInPath: defaultExec.findInPath,
  execPlugin: (...a) => {
    fallbackCalls++;
    return defaultExec.execPlugin(...a);
  },
};
const inProc = inProcessExec({
  resolve: loadPlugin,
  pluginMain,
  self,
  fallback: countingFallback,
  onStderr: (t) => process.stderr.write(t),
});

const result: DriverOutput = {
  exec: {},
  inProcess: {},
  again: {},
  before: processState(),
  after: processState(),
  fallbackCalls: 0,
};
for (const c of corpus) result.exec[c.name] = await runSequence(defaultExec, dir, c);
for (const c of corpus) result.inProcess[c.name] = await runSequence(inProc, dir, c);
// The first in-process run loads modules and libc once; the second must leave no trace at all.
result.before = processState();
for (const c of corpus) result.again[c.name] = await runSequence(inProc, dir, c);
result.after = processState();
result.fallbackCalls = fallbackCalls;
process.stdout.write(JSON.stringify(result));
