/**
 * The multicall entry answers VERSION from PLUGIN_VERSIONS without loading the plugin (src/cli/main.ts):
 * its bytes must be what the skel prints for the loaded plugin, for every plugin and stdin.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { install } from "../../src/cli/commands.ts";
import { installablePlugins, loadPlugin, PLUGIN_VERSIONS } from "../../src/cli/registry.ts";
import { pluginMain } from "../../src/skel/skel.ts";
import { buildTscni } from "../helpers/build.ts";
import { tempDir } from "../helpers/netns.ts";

const work = tempDir("version-path");
let bin = "";

beforeAll(() => {
  bin = join(work.path, "bin");
  install(bin, buildTscni());
}, 120_000);

afterAll(() => work.cleanup());

const STDINS = ['{"cniVersion":"0.4.0"}', '{"cniVersion":"9.9.9"}', "not json", "", '{"cniVersion":"1.1.0"}'];

describe("VERSION without loading the plugin", () => {
  test("every installable plugin has its versions in PLUGIN_VERSIONS, equal to the plugin's", async () => {
    for (const name of installablePlugins()) {
      const plugin = await loadPlugin(name);
      expect([name, PLUGIN_VERSIONS[name]]).toEqual([name, plugin?.supportedVersions]);
    }
  });

  test("the exec'd VERSION prints the skel's bytes for the loaded plugin", async () => {
    for (const name of installablePlugins()) {
      const plugin = (await loadPlugin(name))!;
      for (const stdin of STDINS) {
        let want = "";
        const code = await pluginMain(plugin, {
          env: { CNI_COMMAND: "VERSION" },
          stdin,
          stdout: (t) => {
            want += t;
          },
        });
        const p = Bun.spawnSync([join(bin, name)], {
          env: { PATH: process.env.PATH ?? "", CNI_COMMAND: "VERSION" },
          stdin: new TextEncoder().encode(stdin),
        });
        expect([name, stdin, p.exitCode, p.stdout.toString(), p.stderr.toString()]).toEqual([
          name,
          stdin,
          code,
          want,
          "",
        ]);
      }
    }
  }, 120_000);

  test("a slow stdin is still read to its end; a terminal is not waited for", async () => {
    const env = { PATH: process.env.PATH ?? "", CNI_COMMAND: "VERSION" };
    const slow = Bun.spawn(
      ["sh", "-c", `sleep 0.3; printf '{"cniVersion":"0.4.0"}' | "$0"`, join(bin, "bridge")],
      {
        env,
        stdout: "pipe",
      },
    );
    expect(JSON.parse(await new Response(slow.stdout).text()).cniVersion).toBe("0.4.0");
    // `script` gives the plugin a pseudo-terminal as stdin; nothing is ever typed into it.
    const tty = Bun.spawnSync(["script", "-qec", `${join(bin, "bridge")}`, "/dev/null"], {
      env,
      stdin: "pipe",
      timeout: 10_000,
    });
    expect([tty.exitCode, JSON.parse(tty.stdout.toString()).cniVersion]).toEqual([0, "1.1.0"]);
  }, 20_000);
});
