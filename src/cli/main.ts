/**
 * Entry point of the `tscni` executable. Multicall: run as `bridge`, `host-local`, … (the name of the
 * link it was started through) it is that plugin; `tscni <plugin>` does the same without a link;
 * otherwise it is the cnitool-like CLI.
 *
 * Start-up is paid on every plugin call, so this module imports only the registry (names and lazy
 * loaders): the plugin, the skel and the CLI are loaded when the call needs them (docs/startup.md).
 */
import { isPluginName, loadPlugin, PLUGIN_VERSIONS } from "./registry.ts";

/**
 * A plugin exits as soon as its answer is written (pluginMain awaits the write): letting the runtime
 * wind down on its own costs another 2–3 ms per call, and a runtime calls plugins a lot.
 */
async function runPlugin(name: string): Promise<never> {
  const versions = Object.hasOwn(PLUGIN_VERSIONS, name) ? PLUGIN_VERSIONS[name] : undefined;
  if (process.env.CNI_COMMAND === "VERSION" && versions) {
    // VERSION needs the plugin's versions only: neither the plugin nor the rest of the skel is loaded.
    const { versionMain } = await import("../skel/version-main.ts");
    process.exit(await versionMain(versions));
  }
  const [plugin, { pluginMain }, { setInProcessResolver }] = await Promise.all([
    loadPlugin(name),
    import("../skel/skel.ts"),
    import("../skel/inprocess.ts"),
  ]);
  setInProcessResolver(loadPlugin);
  process.exit(plugin ? await pluginMain(plugin) : 1);
}

async function main(): Promise<number> {
  const invokedAs = process.argv0.slice(process.argv0.lastIndexOf("/") + 1);
  if (isPluginName(invokedAs)) return runPlugin(invokedAs);
  const args = process.argv.slice(2);
  const first = args[0];
  if (first !== undefined && isPluginName(first)) return runPlugin(first);
  if (first === "version" || first === "--version") {
    const { printVersion } = await import("./version.ts");
    return printVersion();
  }
  const { runCli } = await import("./commands.ts");
  return runCli(args);
}

// Output is awaited (out.ts), errors go through process.stderr, which must drain: set the code, end naturally.
main().then((code) => {
  process.exitCode = code;
});
