import { describe, expect, test } from "bun:test";
import { join } from "node:path";

// The defaults of pluginMain (the process's stdin, stdout, stderr, env) in a real child process.
const FIXTURE = join(import.meta.dir, "fixture-plugin.ts");
const ENV = { CNI_CONTAINERID: "c1", CNI_NETNS: "/var/run/netns/x", CNI_IFNAME: "eth0", CNI_PATH: "/x" };

function spawn(env: Record<string, string>, stdin: string) {
  const proc = Bun.spawnSync([process.execPath, FIXTURE], {
    env: { PATH: process.env["PATH"] ?? "", ...env },
    stdin: new TextEncoder().encode(stdin),
  });
  return { code: proc.exitCode, stdout: proc.stdout.toString(), stderr: proc.stderr.toString() };
}

describe("pluginMain as a process", () => {
  test("ADD reads stdin and prints the result", () => {
    const r = spawn({ ...ENV, CNI_COMMAND: "ADD" }, '{"cniVersion":"0.4.0","name":"n","type":"fixture"}');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      cniVersion: "0.4.0",
      ips: [{ version: "4", address: "10.0.0.2/24" }],
      dns: {},
    });
  });
  test("an error is JSON on stdout and exit 1", () => {
    const r = spawn({ ...ENV, CNI_COMMAND: "DEL" }, '{"cniVersion":"1.0.0","name":"n","type":"fixture"}');
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toEqual({ cniVersion: "1.0.0", code: 11, msg: "busy" });
  });
  test("VERSION with the runtime's stdin", () => {
    const r = spawn({ CNI_COMMAND: "VERSION" }, '{"cniVersion":"1.0.0"}');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0","1.1.0"]}\n');
  });
  test("no CNI_COMMAND prints the about text on stderr", () => {
    const r = spawn({}, "");
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("");
    expect(r.stderr).toBe("fixture plugin\nCNI protocol versions supported: 0.4.0, 1.0.0, 1.1.0\n");
  });
});
