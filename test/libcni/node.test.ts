/** src/libcni must run under Node ≥ 20 (no Bun APIs): bundle it for Node and drive the noop plugin. */
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { makeNoopEnv, type NoopEnv, REPO_ROOT } from "./noop-env.ts";

// Every step spawns real plugin processes; a loaded machine makes them slow, never wrong.
setDefaultTimeout(60_000);

const haveNode = spawnSync("node", ["--version"]).status === 0;
let env: NoopEnv;
beforeAll(() => {
  env = makeNoopEnv();
});
afterAll(() => env.cleanup());

test.skipIf(!haveNode)("the bundled libcni runs under Node: load, ADD, DEL with a real plugin", () => {
  const bundle = join(env.root, "libcni.mjs");
  const build = spawnSync(
    join(REPO_ROOT, "node_modules/.bin/bun"),
    ["build", join(REPO_ROOT, "src/libcni/index.ts"), "--target=node", "--outfile", bundle],
    { encoding: "utf8" },
  );
  expect(build.stderr).not.toContain("error");
  expect(build.status).toBe(0);

  writeFileSync(
    join(env.confDir, "10-net.conflist"),
    JSON.stringify({
      cniVersion: "1.0.0",
      name: "nodenet",
      plugins: [
        {
          type: "noop",
          debugFile: env.logFile,
          result: { cniVersion: "1.0.0", ips: [{ address: "10.9.0.2/24" }] },
        },
      ],
    }),
  );
  const script = join(env.root, "drive.mjs");
  writeFileSync(
    script,
    `import { CNIConfig, loadConfList } from ${JSON.stringify(bundle)};
const [confDir, binDir, cacheDir] = process.argv.slice(2);
const list = await loadConfList(confDir, "nodenet");
const cni = new CNIConfig({ path: [binDir], cacheDir });
const rt = { containerID: "nodectr", netNS: "/proc/self/ns/net", ifName: "eth0" };
const result = await cni.addNetworkList(list, rt);
const cached = await cni.getCachedAttachments("nodectr");
await cni.delNetworkList(list, rt);
const after = await cni.getCachedAttachments("nodectr");
console.log(JSON.stringify({ runtime: process.release.name, result, cached: cached.length, after: after.length }));
`,
  );
  const run = spawnSync("node", [script, env.confDir, env.binDir, env.cacheDir], { encoding: "utf8" });
  expect(run.stderr).toBe("");
  const out = JSON.parse(run.stdout);
  expect(out).toEqual({
    runtime: "node",
    result: { cniVersion: "1.0.0", ips: [{ address: "10.9.0.2/24" }] },
    cached: 1,
    after: 0,
  });
  expect(env.calls().map((c) => c.command)).toEqual(["ADD", "DEL"]);
});
