/**
 * pluginMain for tscni's own plugins: the skel (core.ts) over read(2)/write(2) through src/sys (Bun).
 * Bun.stdin goes through a helper thread and the event loop, ~0.3 ms more of a plugin's short life.
 */
import { readAll, write } from "../sys/fs.ts";
import { type PluginMainOptions, pluginMainWith, type SkelIO } from "./core.ts";
import { stdinIsTerminal } from "./terminal.ts";
import type { Plugin } from "./types.ts";

export type { Env, PluginMainOptions, Sink, SkelIO } from "./core.ts";

const sysIO: SkelIO = {
  readStdin: () => readAll(0),
  // write(2) directly: the answer is small and the process exits right after.
  write: (fd, text) => write(fd, text),
  stdinIsTerminal,
};

/**
 * Runs one CNI invocation of `plugin` and returns the exit code (0, or 1 after printing CNI error JSON).
 * With no CNI_COMMAND and an `about` text, prints the about text and supported versions on stderr.
 */
export function pluginMain(plugin: Plugin, opts: PluginMainOptions = {}): Promise<number> {
  return pluginMainWith(sysIO, plugin, opts);
}
