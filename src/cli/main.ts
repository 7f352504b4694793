/**
 * Entry point of the `tscni` executable. Multicall: run as `bridge`, `host-local`, … (the name of the
 * link it was started through) it is that plugin; `tscni <plugin>` does the same without a link;
 * otherwise it is the cnitool-like CLI.
 */
import { basename } from "node:path";
import { pluginMain } from "../skel/index.ts";
import { setInProcessResolver } from "../skel/inprocess.ts";
import { isPluginName, loadPlugin } from "./registry.ts";

async function runPlugin(name: string): Promise<number> {
  const plugin = await loadPlugin(name);
  if (!plugin) return 1;
  setInProcessResolver(loadPlugin);
  return pluginMain(plugin);
}

async function main(): Promise<number> {
  const invokedAs = basename(process.argv0);
  if (isPluginName(invokedAs)) return runPlugin(invokedAs);
  const args = process.argv.slice(2);
  const first = args[0];
  if (first !== undefined && isPluginName(first)) return runPlugin(first);
  const { runCli } = await import("./commands.ts");
  return runCli(args);
}

main().then((code) => {
  process.exitCode = code;
});
