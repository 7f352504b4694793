/**
 * The library as a package: `npm run build:lib` + `npm pack`, the tarball installed into a temp project,
 * which then (under Node ≥ 20 and Bun) loads a conflist with `tscni/libcni` and adds/deletes a netns
 * through real plugins: our loopback, then the sample plugin (examples/sample-plugin) built from that
 * install on `tscni/skel` and run by node.
 */
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import { chmodSync, copyFileSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { cleanupAll, makeNetns, tempDir } from "../helpers/netns.ts";
import { BUN, REPO } from "../plugins/_run.ts";

setDefaultTimeout(120_000);
afterAll(cleanupAll);

function sh(cmd: string[], cwd: string, env: Record<string, string> = {}) {
  const p = Bun.spawnSync(cmd, { cwd, env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });
  const r = { code: p.exitCode, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
  if (r.code !== 0) throw new Error(`${cmd.join(" ")} failed (${r.code}): ${r.stderr}${r.stdout}`);
  return r;
}

const haveNode = Bun.spawnSync(["node", "--version"]).exitCode === 0;

test.skipIf(!haveNode)(
  "packed tscni: libcni under Node and Bun, the sample plugin built from the install",
  () => {
    const work = tempDir("pkg");
    const ns = makeNetns("pkg");
    const pathEnv = { PATH: `${join(REPO, "node_modules/.bin")}:${process.env.PATH}` };
    sh(["npm", "run", "-s", "build:lib"], REPO, pathEnv);
    sh(["npm", "pack", "--pack-destination", work.path], REPO, pathEnv);
    const tgz = readdirSync(work.path).find((f) => f.endsWith(".tgz"))!;
    const proj = join(work.path, "proj");
    mkdirSync(proj);
    writeFileSync(
      join(proj, "package.json"),
      JSON.stringify({ name: "user", private: true, type: "module" }),
    );
    sh(["npm", "install", "--offline", "--no-audit", "--no-fund", join(work.path, tgz)], proj);

    copyFileSync(join(REPO, "examples/sample-plugin/index.ts"), join(proj, "sample.ts"));
    sh([BUN, "build", "sample.ts", "--target=node", "--outfile", "sample.mjs"], proj);
    const bin = join(work.path, "bin");
    mkdirSync(bin);
    writeFileSync(join(bin, "sample"), `#!/bin/sh\nexec node ${join(proj, "sample.mjs")} "$@"\n`);
    writeFileSync(
      join(bin, "loopback"),
      `#!/bin/sh\nexec ${BUN} ${join(REPO, "src/plugins/main/loopback/main.ts")} "$@"\n`,
    );
    chmodSync(join(bin, "sample"), 0o755);
    chmodSync(join(bin, "loopback"), 0o755);
    const conf = join(work.path, "net.d");
    mkdirSync(conf);
    writeFileSync(
      join(conf, "10-pk.conflist"),
      JSON.stringify({
        cniVersion: "1.0.0",
        name: "pk",
        plugins: [{ type: "loopback" }, { type: "sample", anotherAwesomeArg: "yes" }],
      }),
    );
    writeFileSync(
      join(proj, "run.mjs"),
      `import { CNIConfig, loadConfList } from "tscni/libcni";
const [conf, bin, cache, netns] = process.argv.slice(2);
const list = await loadConfList(conf, "pk");
const cni = new CNIConfig({ path: [bin], cacheDir: cache });
const rt = { containerID: "c-" + (globalThis.Bun ? "bun" : "node"), netNS: netns, ifName: "lo" };
const result = await cni.addNetworkList(list, rt);
await cni.delNetworkList(list, rt);
let bad = "";
try {
  await cni.addNetworkList({ ...list, plugins: [list.plugins[0], { ...list.plugins[1], anotherAwesomeArg: "" }] }, rt);
} catch (err) { bad = err.message; }
console.log(JSON.stringify({ result, bad }));
`,
    );
    for (const runtime of ["node", BUN]) {
      const out = sh(
        [runtime, "run.mjs", conf, bin, join(work.path, `cache-${runtime.length}`), ns.path],
        proj,
      );
      const { result, bad } = JSON.parse(out.stdout);
      expect(result.ips.map((i: { address: string }) => i.address)).toContain("127.0.0.1/8");
      expect(result.interfaces[0].name).toBe("lo");
      expect(bad).toContain("anotherAwesomeArg must be specified");
    }
    ns.cleanup();
  },
);
