/**
 * Finding and running plugin executables (upstream pkg/invoke): search CNI_PATH, spawn with the CNI_*
 * environment and the config on stdin, turn a failing plugin's stdout into a CniError.
 * Only `node:` built-ins, so libcni also runs under Node.
 */
import { spawn } from "node:child_process";
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { CniError, ErrCode } from "../spec/errors.ts";

/** How CNIConfig finds and runs plugins; a runtime may supply its own (like upstream invoke.Exec). */
export interface Exec {
  /**
   * Runs the plugin at `pluginPath` with `stdin`; `env` holds the CNI_* variables, which override the
   * inherited environment. Resolves to stdout when the plugin exits 0, throws a CniError otherwise.
   */
  execPlugin(
    pluginPath: string,
    stdin: Uint8Array,
    env: Record<string, string>,
    signal?: AbortSignal,
  ): Promise<Uint8Array>;
  /** Absolute path of the plugin executable `name` in the first of `paths` holding it. */
  findInPath(name: string, paths: readonly string[]): Promise<string>;
}

/** Returns the path of the first regular file named `plugin` in `paths` (upstream invoke.FindInPath). */
export async function findInPath(plugin: string, paths: readonly string[]): Promise<string> {
  if (plugin === "") throw new CniError(ErrCode.InvalidNetworkConfig, "no plugin name provided");
  // A type containing "/" would let a config escape CNI_PATH.
  if (plugin.includes("/"))
    throw new CniError(ErrCode.InvalidNetworkConfig, `invalid plugin name: ${plugin}`);
  if (paths.length === 0)
    throw new CniError(ErrCode.PluginNotAvailable, `failed to find plugin "${plugin}": no paths provided`);
  for (const dir of paths) {
    const full = join(dir, plugin);
    try {
      if ((await stat(full)).isFile()) return full;
    } catch {
      // Missing or unreadable: try the next dir.
    }
  }
  throw new CniError(
    ErrCode.PluginNotAvailable,
    `failed to find plugin "${plugin}" in path [${paths.join(" ")}]`,
  );
}

export interface ExecPluginOptions {
  pluginPath: string;
  /** CNI_* variables; they override the same names in the inherited process environment. */
  env: Record<string, string>;
  stdin: Uint8Array;
  /** Kill the plugin and fail after this many milliseconds. */
  timeoutMs?: number;
  /** Kill the plugin and fail when this aborts. */
  signal?: AbortSignal;
  /** Receives the plugin's stderr when it succeeds (upstream copies it to the runtime's stderr). */
  onStderr?: (text: string) => void;
}

/** How a plugin ended: exit status or signal, and what it printed. */
export interface RunOutcome {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: Uint8Array;
  stderr: Uint8Array;
}

/** ETXTBSY: the executable is still open for writing (being installed); upstream retries. */
const BUSY_RETRIES = 5;
const BUSY_BACKOFF_MS = 50;

/** Runs a plugin once to completion; resolves its stdout on exit 0, throws a CniError otherwise. */
export async function execPlugin(opts: ExecPluginOptions): Promise<Uint8Array> {
  const signals = [
    opts.signal,
    opts.timeoutMs === undefined ? undefined : AbortSignal.timeout(opts.timeoutMs),
  ];
  const active = signals.filter((s): s is AbortSignal => s !== undefined);
  const signal = active.length > 1 ? AbortSignal.any(active) : active[0];
  const env = { ...process.env, ...opts.env };

  let outcome: RunOutcome | undefined;
  for (let attempt = 0; outcome === undefined; attempt++) {
    try {
      outcome = await runOnce(opts.pluginPath, env, opts.stdin, signal);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ETXTBSY" && attempt < BUSY_RETRIES) {
        await sleep(BUSY_BACKOFF_MS * 2 ** attempt);
        continue;
      }
      throw spawnError(opts.pluginPath, err, signal);
    }
  }
  if (outcome.status === 0) {
    if (opts.onStderr && outcome.stderr.length > 0) opts.onStderr(decode(outcome.stderr));
    return outcome.stdout;
  }
  if (signal?.aborted) throw abortError(opts.pluginPath, signal);
  throw failedPluginError(opts.pluginPath, outcome);
}

function runOnce(
  file: string,
  env: NodeJS.ProcessEnv,
  stdin: Uint8Array,
  signal: AbortSignal | undefined,
): Promise<RunOutcome> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const child = spawn(file, [], { env, stdio: ["pipe", "pipe", "pipe"] });
    const out: Uint8Array[] = [];
    const err: Uint8Array[] = [];
    child.stdout.on("data", (c: Uint8Array) => out.push(c));
    child.stderr.on("data", (c: Uint8Array) => err.push(c));
    // A plugin may exit without reading stdin; EPIPE on our side is not its failure.
    child.stdin.on("error", () => {});
    const onAbort = () => child.kill("SIGKILL");
    signal?.addEventListener("abort", onAbort, { once: true });
    child.on("error", (e) => {
      signal?.removeEventListener("abort", onAbort);
      reject(e);
    });
    child.on("close", (status, sig) => {
      signal?.removeEventListener("abort", onAbort);
      resolve({ status, signal: sig, stdout: concat(out), stderr: concat(err) });
    });
    child.stdin.end(stdin);
  });
}

/** The error a failed plugin reported on stdout, else a 999 quoting stderr (upstream RawExec.pluginErr). */
export function failedPluginError(pluginPath: string, o: RunOutcome): CniError {
  const stdout = decode(o.stdout).trim();
  const stderr = decode(o.stderr).trim();
  const how = o.signal ? `killed by ${o.signal}` : `exit status ${o.status}`;
  if (stdout !== "") {
    const parsed = parseErrorJSON(stdout);
    if (parsed) return parsed;
    return new CniError(
      ErrCode.Internal,
      `plugin ${pluginPath} failed (${how}) and its output is not a CNI error: ${JSON.stringify(stdout)}`,
      stderr,
    );
  }
  if (stderr !== "") return new CniError(ErrCode.Internal, `plugin ${pluginPath} failed (${how}): ${stderr}`);
  return new CniError(ErrCode.Internal, `plugin ${pluginPath} failed with no error message (${how})`);
}

function parseErrorJSON(text: string): CniError | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof v !== "object" || v === null) return undefined;
  const o = v as Record<string, unknown>;
  if (typeof o.code !== "number" && typeof o.msg !== "string") return undefined;
  const code = typeof o.code === "number" ? o.code : ErrCode.Internal;
  const msg = typeof o.msg === "string" ? o.msg : "";
  const details = typeof o.details === "string" ? o.details : "";
  return new CniError(code, msg, details);
}

function spawnError(pluginPath: string, err: unknown, signal: AbortSignal | undefined): CniError {
  if (signal?.aborted) return abortError(pluginPath, signal);
  const e = err as NodeJS.ErrnoException;
  const code = e.code === "ENOENT" || e.code === "EACCES" ? ErrCode.PluginNotAvailable : ErrCode.Internal;
  return new CniError(code, `executing plugin ${pluginPath}: ${e.code ?? e.message}`);
}

/** The error of a plugin call that was cancelled or timed out. */
export function abortError(pluginPath: string, signal: AbortSignal): CniError {
  const reason = signal.reason as { name?: string } | undefined;
  const why = reason?.name === "TimeoutError" ? "timed out" : "was cancelled";
  return new CniError(ErrCode.Internal, `plugin ${pluginPath} ${why} and was killed`);
}

function concat(chunks: Uint8Array[]): Uint8Array {
  if (chunks.length === 1 && chunks[0]) return chunks[0];
  const total = chunks.reduce((n, c) => n + c.length, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

const decoder = new TextDecoder();
function decode(b: Uint8Array): string {
  return decoder.decode(b);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The Exec CNIConfig uses unless given another: real files, real processes. */
export const defaultExec: Exec = {
  execPlugin: (pluginPath, stdin, env, signal) =>
    execPlugin({ pluginPath, stdin, env, signal, onStderr: (t) => process.stderr.write(t) }),
  findInPath,
};
