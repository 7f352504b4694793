/**
 * The skel for plugins outside tscni (the `tscni/skel` package entry): the same pluginMain over
 * node:fs, so a plugin built on it runs under Node ≥ 20 as well as Bun. Example: examples/sample-plugin.
 */
import { fstatSync, readFileSync, writeSync } from "node:fs";
import { type PluginMainOptions, pluginMainWith, type SkelIO } from "./core.ts";
import type { Plugin } from "./types.ts";

export type { Env, PluginMainOptions, Sink, SkelIO } from "./core.ts";
export type * from "./types.ts";

const nodeIO: SkelIO = {
  readStdin: () => new Uint8Array(readFileSync(0)),
  write(fd, text) {
    const buf = Buffer.from(text);
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off);
  },
  stdinIsTerminal() {
    try {
      const st = fstatSync(0);
      return st.isCharacterDevice() && st.rdev !== 0x103;
    } catch {
      return false;
    }
  },
};

/** Runs one CNI invocation of `plugin`; returns the exit code (pass it to process.exit). */
export function pluginMain(plugin: Plugin, opts: PluginMainOptions = {}): Promise<number> {
  return pluginMainWith(nodeIO, plugin, opts);
}
