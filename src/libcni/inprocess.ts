/**
 * In-process dispatch: when the plugin CNIConfig found in CNI_PATH is our own multicall executable (the
 * same file, by device and inode, as `self`), run the plugin in this process instead of exec'ing it.
 * Same stdin bytes, same environment, same stdout bytes and the same error JSON as the exec path — the
 * plugin's output goes through the exec path's own decoding (`failedPluginError`). Anything else
 * (another vendor's plugin, a name this executable would not run as a plugin) goes to `fallback`.
 *
 * What in-process cannot give that exec does: a plugin that hangs or crashes the runtime process
 * takes the caller with it, and an abort signal cannot kill the plugin's work — the call fails with
 * the exec path's error at once, and the work it had started runs to its end unobserved. Runtimes
 * that need those guarantees keep `defaultExec` (it is the default; this Exec is opt-in).
 *
 * libcni stays Node-safe: the plugin runner (skel's pluginMain, which needs Bun) is handed in by the
 * caller with the plugins, never imported here.
 */
import { stat } from "node:fs/promises";
import { basename } from "node:path";
import type { Plugin } from "../skel/types.ts";
import { abortError, defaultExec, type Exec, failedPluginError } from "./exec.ts";

/** The plugin this executable would be when run under `name`, or undefined (it would not be a plugin). */
export type PluginResolver = (name: string) => Promise<Plugin | undefined>;

/** What a PluginRunner is given: skel's PluginMainOptions, restated so libcni never loads skel (Bun only). */
export interface RunnerIO {
  env: Readonly<Record<string, string | undefined>>;
  stdin: Uint8Array;
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

/** skel's pluginMain: one CNI invocation of `plugin`, its exit status. */
export type PluginRunner = (plugin: Plugin, opts: RunnerIO) => Promise<number>;

export interface InProcessExecOptions {
  /** The plugins of the multicall executable, by the name it is run as (the CLI's registry). */
  resolve: PluginResolver;
  /** Runs one call of a plugin exactly as its process would (skel's pluginMain). */
  pluginMain: PluginRunner;
  /** The multicall executable; plugin paths that are this file run in-process. Default: process.execPath. */
  self?: string;
  /** Runs every other plugin. Default: defaultExec. */
  fallback?: Exec;
  /** Receives a successful plugin's stderr, as defaultExec copies it to the runtime's stderr. */
  onStderr?: (text: string) => void;
}

interface FileId {
  dev: number;
  ino: number;
}

async function fileId(path: string): Promise<FileId | undefined> {
  try {
    const st = await stat(path);
    return { dev: st.dev, ino: st.ino };
  } catch {
    return undefined;
  }
}

const encoder = new TextEncoder();

export function inProcessExec(opts: InProcessExecOptions): Exec {
  const fallback = opts.fallback ?? defaultExec;
  const onStderr = opts.onStderr ?? ((t: string) => process.stderr.write(t));
  let selfId: Promise<FileId | undefined> | undefined;

  /** The in-process plugin for `pluginPath`, or undefined to exec it. */
  async function pluginFor(pluginPath: string): Promise<Plugin | undefined> {
    selfId ??= fileId(opts.self ?? process.execPath);
    const [self, file] = await Promise.all([selfId, fileId(pluginPath)]);
    if (!self || !file || self.dev !== file.dev || self.ino !== file.ino) return undefined;
    // The multicall executable picks the plugin by the name it was started as (its argv[0]).
    return opts.resolve(basename(pluginPath));
  }

  async function run(
    pluginPath: string,
    plugin: Plugin,
    stdin: Uint8Array,
    env: Record<string, string>,
    signal: AbortSignal | undefined,
  ): Promise<Uint8Array> {
    if (signal?.aborted) throw abortError(pluginPath, signal);
    const out: string[] = [];
    const err: string[] = [];
    const call = opts.pluginMain(plugin, {
      env: { ...process.env, ...env },
      stdin,
      stdout: (t) => void out.push(t),
      stderr: (t) => void err.push(t),
    });
    const status = signal ? await abortable(call, pluginPath, signal) : await call;
    const stdout = encoder.encode(out.join(""));
    const stderr = encoder.encode(err.join(""));
    if (status === 0) {
      if (stderr.length > 0) onStderr(err.join(""));
      return stdout;
    }
    throw failedPluginError(pluginPath, { status, signal: null, stdout, stderr });
  }

  return {
    findInPath: (name, paths) => fallback.findInPath(name, paths),
    async execPlugin(pluginPath, stdin, env, signal) {
      const plugin = await pluginFor(pluginPath);
      if (!plugin) return fallback.execPlugin(pluginPath, stdin, env, signal);
      return run(pluginPath, plugin, stdin, env, signal);
    },
  };
}

/** The call's exit status, or the exec path's abort error as soon as `signal` fires. */
function abortable(call: Promise<number>, pluginPath: string, signal: AbortSignal): Promise<number> {
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(abortError(pluginPath, signal));
    signal.addEventListener("abort", onAbort, { once: true });
    call.then(
      (status) => {
        signal.removeEventListener("abort", onAbort);
        resolve(status);
      },
      (e: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}
