/**
 * IPAM delegation: when ipam.type resolves to this very executable, the IPAM plugin runs in-process;
 * its result and its errors must be exactly what the exec path gives.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, readdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { buildTscni } from "../helpers/build.ts";
import { cleanupAll, makeNetns, type TempNetns, tempDir } from "../helpers/netns.ts";

const work = tempDir("ipam-common");
let host: TempNetns;
let exe = "";
let fastBin = "";
let execBin = "";

beforeAll(() => {
  exe = buildTscni();
  host = makeNetns("ipamc-host");
  // Fast path: host-local is a link to the executable itself.
  fastBin = join(work.path, "fast");
  mkdirSync(fastBin);
  symlinkSync(exe, join(fastBin, "ptp"));
  symlinkSync(exe, join(fastBin, "host-local"));
  // Exec path: host-local is a script (another file) that runs the same code as a child process.
  execBin = join(work.path, "exec");
  mkdirSync(execBin);
  symlinkSync(exe, join(execBin, "ptp"));
  writeFileSync(join(execBin, "host-local"), `#!/bin/sh\nexec ${exe} host-local "$@"\n`, { mode: 0o755 });
}, 120_000);

afterAll(() => {
  cleanupAll();
  work.cleanup();
});

function ptpConf(name: string, subnet: string, dataDir: string) {
  return JSON.stringify({
    cniVersion: "1.0.0",
    name,
    type: "ptp",
    ipam: { type: "host-local", subnet, dataDir, routes: [{ dst: "0.0.0.0/0" }] },
  });
}

function run(bin: string, command: string, cont: TempNetns, conf: string, id: string) {
  const p = Bun.spawnSync(["ip", "netns", "exec", host.name, join(bin, "ptp")], {
    env: {
      PATH: process.env.PATH ?? "",
      TSCNI_DEBUG: "1",
      CNI_COMMAND: command,
      CNI_CONTAINERID: id,
      CNI_NETNS: cont.path,
      CNI_IFNAME: "eth0",
      CNI_PATH: bin,
    },
    stdin: new TextEncoder().encode(conf),
  });
  const stdout = p.stdout.toString();
  return {
    code: p.exitCode,
    stdout,
    stderr: p.stderr.toString(),
    json: stdout ? JSON.parse(stdout) : undefined,
  };
}

/** The result with what differs per run (veth name, MACs, netns path) masked. */
function shape(result: { interfaces: { name: string; mac?: string; sandbox?: string }[] }) {
  return {
    ...result,
    interfaces: result.interfaces.map((i) => ({
      ...i,
      name: i.name.replace(/^veth[0-9a-f]{8}$/, "VETH"),
      mac: "MAC",
      ...(i.sandbox ? { sandbox: "NETNS" } : {}),
    })),
  };
}

describe("ipam delegation", () => {
  test("in-process host-local gives the same result as the exec'd one", () => {
    const results = [];
    for (const [bin, tag] of [
      [fastBin, "fast"],
      [execBin, "exec"],
    ] as const) {
      const cont = makeNetns(`ipamc-${tag}`);
      const dataDir = join(work.path, `data-${tag}`);
      const conf = ptpConf("ipamc", "10.77.1.0/24", dataDir);
      const add = run(bin, "ADD", cont, conf, `c-${tag}`);
      expect(add.code).toBe(0);
      if (tag === "fast") expect(add.stderr).toContain("delegate: ADD host-local in-process");
      else expect(add.stderr).not.toContain("in-process");
      expect(readdirSync(join(dataDir, "ipamc"))).toContain("10.77.1.2");
      results.push(shape(add.json));
      const del = run(bin, "DEL", cont, conf, `c-${tag}`);
      expect(del.code).toBe(0);
      if (tag === "fast") expect(del.stderr).toContain("delegate: DEL host-local in-process");
      expect(readdirSync(join(dataDir, "ipamc"))).not.toContain("10.77.1.2");
      cont.cleanup();
    }
    expect(results[0]).toEqual(results[1]);
  });

  test("an IPAM error keeps its code and message on both paths, and ptp leaves nothing behind", () => {
    const errors = [];
    for (const [bin, tag] of [
      [fastBin, "fast"],
      [execBin, "exec"],
    ] as const) {
      const cont = makeNetns(`ipamc-e${tag}`);
      const dataDir = join(work.path, `full-${tag}`);
      // a /30 has two usable addresses: the gateway takes one, the first ADD the other
      const conf = ptpConf("ipamfull", "10.77.2.0/30", dataDir);
      expect(run(bin, "ADD", cont, conf, `first-${tag}`).code).toBe(0);
      const other = makeNetns(`ipamc-o${tag}`);
      const failed = run(bin, "ADD", other, conf, `second-${tag}`);
      expect(failed.code).toBe(1);
      errors.push({ code: failed.json.code, msg: failed.json.msg });
      expect(other.ip("link", "show").map((l: { ifname: string }) => l.ifname)).toEqual(["lo"]);
      other.cleanup();
      cont.cleanup();
    }
    expect(errors[0]).toEqual(errors[1]);
    expect(errors[0]!.code).toBe(11);
    expect(errors[0]!.msg).toContain("10.77.2.");
  });
});
