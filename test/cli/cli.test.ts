/**
 * The compiled tscni executable: cnitool verbs, install, ls, and multicall (run through a link named
 * after a plugin, it is that plugin).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { cnitoolContainerID } from "../../src/cli/commands.ts";
import { installablePlugins } from "../../src/cli/registry.ts";
import { buildTscni } from "../helpers/build.ts";
import { tempDir } from "../helpers/netns.ts";

const work = tempDir("cli");

function run(file: string, args: string[], env: Record<string, string> = {}, stdin = "") {
  const p = Bun.spawnSync([file, ...args], {
    env: { PATH: process.env.PATH ?? "", ...env },
    stdin: new TextEncoder().encode(stdin),
  });
  return { code: p.exitCode, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

let exe = "";

beforeAll(() => {
  exe = buildTscni();
}, 120_000);

afterAll(() => work.cleanup());

describe("tscni CLI", () => {
  test("version names the CNI versions it speaks", () => {
    const r = run(exe, ["version"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("1.1.0");
    expect(r.stdout).toContain("0.1.0");
  });

  test("an unknown command prints usage and exits 2", () => {
    const r = run(exe, ["frobnicate"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unknown command "frobnicate"');
    expect(r.stderr).toContain("usage: tscni");
  });

  test("add without arguments is a usage error", () => {
    expect(run(exe, ["add"]).code).toBe(2);
  });

  test("install links every plugin name to the executable, idempotently", () => {
    const dir = join(work.path, "bin");
    const first = run(exe, ["install", dir]);
    expect(first.code).toBe(0);
    const names = readdirSync(dir).sort();
    expect(names).toEqual(installablePlugins());
    expect(names).not.toContain("noop");
    for (const n of names) {
      expect(lstatSync(join(dir, n)).isSymbolicLink()).toBe(true);
      expect(readlinkSync(join(dir, n))).toBe(realpathSync(exe));
    }
    const second = run(exe, ["install", dir]);
    expect(second.code).toBe(0);
    expect(second.stdout).toContain("already installed");
  });

  test("install replaces a foreign file of a plugin's name", () => {
    const dir = join(work.path, "bin2");
    mkdirSync(dir);
    writeFileSync(join(dir, "host-local"), "#!/bin/sh\nexit 0\n", { mode: 0o755 });
    expect(run(exe, ["install", dir]).code).toBe(0);
    expect(readlinkSync(join(dir, "host-local"))).toBe(realpathSync(exe));
  });

  test("multicall: run through a link, it is that plugin", () => {
    const dir = join(work.path, "bin");
    if (!existsSync(join(dir, "host-local"))) run(exe, ["install", dir]);
    const r = run(join(dir, "host-local"), [], { CNI_COMMAND: "VERSION" }, '{"cniVersion":"0.4.0"}');
    expect(r.code).toBe(0);
    const v = JSON.parse(r.stdout);
    expect(v.cniVersion).toBe("0.4.0");
    expect(v.supportedVersions).toContain("1.1.0");
  });

  test("multicall: `tscni <plugin>` without a link does the same", () => {
    const r = run(exe, ["static"], { CNI_COMMAND: "VERSION" });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).supportedVersions).toContain("1.0.0");
  });

  test("a .env file in the runtime's working directory does not reach the plugin", () => {
    const dir = join(work.path, "dotenv");
    mkdirSync(dir);
    writeFileSync(join(dir, ".env"), "CNI_COMMAND=VERSION\n");
    const p = Bun.spawnSync([exe, "host-local"], { cwd: dir, env: { PATH: process.env.PATH ?? "" } });
    expect(p.stdout.toString()).not.toContain("supportedVersions");
  });

  test("a plugin's failure is CNI error JSON on stdout with exit 1", () => {
    const r = run(exe, ["host-local"], { CNI_COMMAND: "ADD" }, "{");
    expect(r.code).toBe(1);
    const e = JSON.parse(r.stdout);
    expect(e.code).toBe(4); // CNI_CONTAINERID etc. missing: checked before stdin is decoded
  });

  test("add / check / ls / del drive a network list (noop plugin through a link)", () => {
    const bin = join(work.path, "noopbin");
    const conf = join(work.path, "conf");
    const cache = join(work.path, "cache");
    mkdirSync(bin, { recursive: true });
    mkdirSync(conf, { recursive: true });
    symlinkSync(exe, join(bin, "noop"));
    const log = join(work.path, "noop.jsonl");
    writeFileSync(
      join(conf, "10-demo.conflist"),
      JSON.stringify({
        cniVersion: "1.0.0",
        name: "demo",
        plugins: [
          {
            type: "noop",
            debugFile: log,
            result: { cniVersion: "1.0.0", ips: [{ address: "10.9.8.7/24" }] },
          },
        ],
      }),
    );
    const env = { NETCONFPATH: conf, CNI_PATH: bin, CNI_CACHE_DIR: cache, CNI_ARGS: "K8S_POD_NAME=x" };
    const add = run(exe, ["add", "demo", "/var/run/netns/tscni-cli-none"], env);
    expect(add.stderr).toBe("");
    expect(add.code).toBe(0);
    expect(JSON.parse(add.stdout).ips[0].address).toBe("10.9.8.7/24");

    const id = cnitoolContainerID("/var/run/netns/tscni-cli-none");
    expect(id).toMatch(/^cnitool-[0-9a-f]{20}$/);
    const cacheFile = join(cache, "results", `demo-${id}-eth0`);
    expect(JSON.parse(readFileSync(cacheFile, "utf8")).kind).toBe("cniCacheV1");

    expect(run(exe, ["check", "demo", "/var/run/netns/tscni-cli-none"], env).code).toBe(0);
    const ls = run(exe, ["ls"], env);
    expect(ls.stdout).toContain("demo");
    expect(ls.stdout).toContain("10.9.8.7/24");
    expect(run(exe, ["del", "demo", "/var/run/netns/tscni-cli-none"], env).code).toBe(0);
    expect(existsSync(cacheFile)).toBe(false);

    const calls = readFileSync(log, "utf8")
      .trim()
      .split("\n")
      .map((l: string) => JSON.parse(l).command);
    expect(calls).toEqual(["ADD", "CHECK", "DEL"]);
  });

  test("a missing network names the config dir", () => {
    const r = run(exe, ["add", "nonet", "x"], { NETCONFPATH: join(work.path, "conf") });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("nonet");
  });
});
