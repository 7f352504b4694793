import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

// src/spec must run under Node ≥ 20 too (libcni users on Node): bundle it for Node and exercise it there.
const dir = mkdtempSync(join(tmpdir(), "tscni-spec-node-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const node = Bun.which("node");

test.skipIf(!node)("src/spec/index.ts runs under Node", async () => {
  const outfile = join(dir, "spec.mjs");
  const built = await Bun.build({
    entrypoints: [join(import.meta.dir, "../../src/spec/index.ts")],
    target: "node",
  });
  expect(built.success).toBe(true);
  await Bun.write(outfile, built.outputs[0]!);
  const script = `
    import(${JSON.stringify(outfile)}).then((m) => {
      const list = m.parseConfList('{"name":"n","cniVersions":["0.4.0","1.1.0"],"plugins":[{"type":"bridge"}]}');
      const r = m.parseResult({ cniVersion: "1.1.0", ips: [{ address: "10.0.0.2/24" }] });
      let code = 0;
      try { m.parseCniArgs("bad"); } catch (e) { code = e.code; }
      console.log(JSON.stringify({ v: list.cniVersion, out: m.convertResult(r, "0.2.0"), code, node: process.version }));
    });`;
  const proc = Bun.spawnSync([node!, "--input-type=module", "-e", script], { stderr: "pipe" });
  expect(proc.stderr.toString()).toBe("");
  const out = JSON.parse(proc.stdout.toString());
  expect(out.v).toBe("1.1.0");
  expect(out.out).toEqual({ cniVersion: "0.2.0", ip4: { ip: "10.0.0.2/24" }, dns: {} });
  expect(out.code).toBe(4);
  expect(out.node).toMatch(/^v(2\d|[3-9]\d)\./);
});
