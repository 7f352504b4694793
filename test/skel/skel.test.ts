import { describe, expect, test } from "bun:test";
import { pluginMain } from "../../src/skel/skel.ts";
import type { CmdArgs, Plugin } from "../../src/skel/types.ts";
import { CniError } from "../../src/spec/errors.ts";
import type { Result } from "../../src/spec/types.ts";

const RESULT: Result = {
  cniVersion: "1.1.0",
  interfaces: [{ name: "eth0", mac: "02:00:00:00:00:01", mtu: 1500, sandbox: "/var/run/netns/t" }],
  ips: [{ interface: 0, address: "10.0.0.2/24", gateway: "10.0.0.1" }],
};

interface Recorder {
  plugin: Plugin;
  calls: { verb: string; args: CmdArgs }[];
}

function recorder(overrides: Partial<Plugin> = {}): Recorder {
  const calls: Recorder["calls"] = [];
  const plugin: Plugin = {
    supportedVersions: ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"],
    add: (args) => {
      calls.push({ verb: "ADD", args });
      return RESULT;
    },
    del: (args) => {
      calls.push({ verb: "DEL", args });
    },
    check: (args) => {
      calls.push({ verb: "CHECK", args });
    },
    gc: (args) => {
      calls.push({ verb: "GC", args });
    },
    status: (args) => {
      calls.push({ verb: "STATUS", args });
    },
    ...overrides,
  };
  return { plugin, calls };
}

const BASE_ENV = {
  CNI_CONTAINERID: "c0ffee",
  CNI_NETNS: "/var/run/netns/t",
  CNI_IFNAME: "eth0",
  CNI_PATH: "/opt/cni/bin:/usr/lib/cni",
};

function conf(version = "1.1.0", extra: object = {}): string {
  return JSON.stringify({ cniVersion: version, name: "testnet", type: "test", ...extra });
}

async function run(plugin: Plugin, env: Record<string, string>, stdin: string = conf()) {
  let stdout = "";
  let stderr = "";
  const code = await pluginMain(plugin, {
    env,
    stdin,
    stdout: (t) => {
      stdout += t;
    },
    stderr: (t) => {
      stderr += t;
    },
  });
  return { code, stdout, stderr };
}

/** Runs and expects CNI error JSON with `errCode` and exit 1. */
async function expectError(plugin: Plugin, env: Record<string, string>, stdin: string, errCode: number) {
  const r = await run(plugin, env, stdin);
  expect(r.code).toBe(1);
  const json = JSON.parse(r.stdout);
  expect(json.code).toBe(errCode);
  expect(typeof json.msg).toBe("string");
  expect(typeof json.cniVersion).toBe("string");
  return json as { cniVersion: string; code: number; msg: string; details?: string };
}

describe("ADD", () => {
  test("a result the config's version cannot carry fails the ADD and is undone by a DEL (fuzz finding)", async () => {
    // 0.1.0 results need an IP; a plugin without IPAM (bridge with no ipam) has none
    const { plugin, calls } = recorder({
      supportedVersions: ["0.1.0", "1.1.0"],
      add: () => ({ cniVersion: "1.1.0", interfaces: [{ name: "eth0" }] }),
    });
    const r = await run(plugin, { ...BASE_ENV, CNI_COMMAND: "ADD" }, conf("0.1.0"));
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).msg).toMatch(/cannot convert/);
    expect(calls.map((c) => c.verb)).toEqual(["DEL"]);
  });

  test("prints the result in the config's version and passes CmdArgs", async () => {
    const { plugin, calls } = recorder();
    const stdin = conf("0.4.0");
    const r = await run(
      plugin,
      { ...BASE_ENV, CNI_COMMAND: "ADD", CNI_ARGS: "IgnoreUnknown=1;K8S_POD_NAME=x" },
      stdin,
    );
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      cniVersion: "0.4.0",
      interfaces: [{ name: "eth0", mac: "02:00:00:00:00:01", sandbox: "/var/run/netns/t" }],
      ips: [{ version: "4", interface: 0, address: "10.0.0.2/24", gateway: "10.0.0.1" }],
      dns: {},
    });
    expect(r.stdout).toStartWith('{\n    "cniVersion"');
    expect(calls).toHaveLength(1);
    const args = calls[0]!.args;
    expect(args).toMatchObject({
      command: "ADD",
      containerID: "c0ffee",
      netns: "/var/run/netns/t",
      ifName: "eth0",
      args: "IgnoreUnknown=1;K8S_POD_NAME=x",
      path: ["/opt/cni/bin", "/usr/lib/cni"],
    });
    expect(new TextDecoder().decode(args.stdinData)).toBe(stdin);
  });
  test("1.1.0 keeps the 1.1 fields", async () => {
    const r = await run(recorder().plugin, { ...BASE_ENV, CNI_COMMAND: "ADD" });
    expect(JSON.parse(r.stdout).interfaces[0].mtu).toBe(1500);
  });
  test("a result that cannot be expressed in the config's version is an error, not a crash", async () => {
    const { plugin } = recorder({ supportedVersions: ["0.2.0"], add: () => ({ cniVersion: "1.1.0" }) });
    const json = await expectError(plugin, { ...BASE_ENV, CNI_COMMAND: "ADD" }, conf("0.2.0"), 999);
    expect(json.msg).toBe("cannot convert: no valid IP addresses");
    expect(json.cniVersion).toBe("0.2.0");
  });
});

describe("environment", () => {
  test("missing variables are listed in one code-4 error", async () => {
    const json = await expectError(recorder().plugin, { CNI_COMMAND: "ADD" }, conf(), 4);
    expect(json.msg).toBe("required env variables [CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME,CNI_PATH] missing");
  });
  test("no CNI_COMMAND is code 4, or the about text when the plugin has one", async () => {
    await expectError(recorder().plugin, {}, conf(), 4);
    const r = await run(recorder({ about: "tscni test plugin" }).plugin, {});
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("");
    expect(r.stderr).toBe(
      "tscni test plugin\nCNI protocol versions supported: 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0\n",
    );
  });
  test("unknown CNI_COMMAND is code 4", async () => {
    const json = await expectError(recorder().plugin, { ...BASE_ENV, CNI_COMMAND: "FROB" }, conf(), 4);
    expect(json.msg).toBe("unknown CNI_COMMAND: FROB");
  });
  test("invalid container id and interface name are code 4", async () => {
    const { plugin, calls } = recorder();
    const id = await expectError(
      plugin,
      { ...BASE_ENV, CNI_COMMAND: "ADD", CNI_CONTAINERID: "../x" },
      conf(),
      4,
    );
    expect(id.details).toBe("../x");
    await expectError(plugin, { ...BASE_ENV, CNI_COMMAND: "DEL", CNI_IFNAME: "a".repeat(16) }, conf(), 4);
    await expectError(plugin, { ...BASE_ENV, CNI_COMMAND: "CHECK", CNI_IFNAME: "eth/0" }, conf(), 4);
    expect(calls).toHaveLength(0);
  });
});

describe("stdin", () => {
  test("bad JSON is code 6 and nothing is called", async () => {
    const { plugin, calls } = recorder();
    await expectError(plugin, { ...BASE_ENV, CNI_COMMAND: "ADD" }, "{not json", 6);
    await expectError(plugin, { ...BASE_ENV, CNI_COMMAND: "DEL" }, "", 6);
    expect(calls).toHaveLength(0);
  });
  test("bad config is code 7", async () => {
    const missing = await expectError(
      recorder().plugin,
      { ...BASE_ENV, CNI_COMMAND: "ADD" },
      '{"cniVersion":"1.0.0"}',
      7,
    );
    expect(missing.msg).toBe("missing network name");
    const bad = await expectError(
      recorder().plugin,
      { ...BASE_ENV, CNI_COMMAND: "ADD" },
      conf("1.0.0", { name: "a b" }),
      7,
    );
    expect(bad.details).toBe("a b");
  });
  test("a stdin read failure is code 5", async () => {
    let out = "";
    const code = await pluginMain(recorder().plugin, {
      env: { ...BASE_ENV, CNI_COMMAND: "ADD" },
      stdin: () => Promise.reject(new Error("EIO")),
      stdout: (t) => {
        out += t;
      },
    });
    expect(code).toBe(1);
    expect(JSON.parse(out)).toMatchObject({ code: 5, msg: "error reading from stdin: EIO" });
  });
});

describe("versions", () => {
  test("a config version the plugin does not speak is code 1 listing what it supports", async () => {
    const { plugin, calls } = recorder({ supportedVersions: ["1.0.0", "1.1.0"] });
    const json = await expectError(plugin, { ...BASE_ENV, CNI_COMMAND: "ADD" }, conf("0.4.0"), 1);
    expect(json.msg).toBe("incompatible CNI versions");
    expect(json.details).toBe('config is "0.4.0", plugin supports ["1.0.0" "1.1.0"]');
    expect(json.cniVersion).toBe("0.4.0");
    await expectError(plugin, { ...BASE_ENV, CNI_COMMAND: "DEL" }, conf("9.9.9"), 1);
    expect(calls).toHaveLength(0);
  });
  test("a config without cniVersion is 0.1.0", async () => {
    const json = await expectError(recorder().plugin, { ...BASE_ENV, CNI_COMMAND: "ADD" }, '{"name":"n"}', 1);
    expect(json.details).toStartWith('config is "0.1.0"');
  });
  test("CHECK needs 0.4.0, GC and STATUS 1.1.0", async () => {
    const { plugin, calls } = recorder();
    const check = await expectError(plugin, { ...BASE_ENV, CNI_COMMAND: "CHECK" }, conf("0.3.1"), 1);
    expect(check.msg).toBe("config version does not allow CHECK");
    const gc = await expectError(plugin, { CNI_COMMAND: "GC", CNI_PATH: "/x" }, conf("1.0.0"), 1);
    expect(gc.msg).toBe("config version does not allow GC");
    const st = await expectError(plugin, { CNI_COMMAND: "STATUS", CNI_PATH: "/x" }, conf("1.0.0"), 1);
    expect(st.msg).toBe("config version does not allow STATUS");
    const old = recorder({ supportedVersions: ["0.4.0"] }).plugin;
    const tooNew = await expectError(old, { ...BASE_ENV, CNI_COMMAND: "CHECK" }, conf("1.0.0"), 1);
    expect(tooNew.msg).toBe("plugin version does not allow CHECK");
    expect(calls).toHaveLength(0);
  });
});

describe("VERSION", () => {
  test("podman's probe with dummy variables", async () => {
    const { plugin, calls } = recorder();
    const env = { CNI_COMMAND: "VERSION", CNI_NETNS: "dummy", CNI_IFNAME: "dummy", CNI_PATH: "dummy" };
    const r = await run(plugin, env, "");
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      '{"cniVersion":"1.1.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}\n',
    );
    expect(calls).toHaveLength(0);
  });
  test("answers in the version libcni asked in; ignores unusable stdin", async () => {
    const asked = await run(recorder().plugin, { CNI_COMMAND: "VERSION" }, '{"cniVersion":"1.0.0"}');
    expect(JSON.parse(asked.stdout).cniVersion).toBe("1.0.0");
    const junk = await run(recorder().plugin, { CNI_COMMAND: "VERSION" }, "{junk");
    expect(junk.code).toBe(0);
    expect(JSON.parse(junk.stdout).cniVersion).toBe("1.1.0");
  });
});

describe("DEL, CHECK, GC, STATUS", () => {
  test("DEL needs no netns (containerd's second DEL, no prevResult) and prints nothing", async () => {
    const { plugin, calls } = recorder();
    const env: Record<string, string> = { ...BASE_ENV, CNI_COMMAND: "DEL", CNI_NETNS: "" };
    const r = await run(plugin, env, conf("1.0.0"));
    expect(r).toEqual({ code: 0, stdout: "", stderr: "" });
    expect(calls[0]!.args.netns).toBe("");
    const { CNI_NETNS: _, ...noNetns } = BASE_ENV;
    expect((await run(plugin, { ...noNetns, CNI_COMMAND: "DEL" })).code).toBe(0);
    expect(calls).toHaveLength(2);
  });
  test("CHECK, GC and STATUS succeed silently; GC and STATUS need only CNI_PATH", async () => {
    const { plugin, calls } = recorder();
    expect(await run(plugin, { ...BASE_ENV, CNI_COMMAND: "CHECK" })).toEqual({
      code: 0,
      stdout: "",
      stderr: "",
    });
    const gcConf = conf("1.1.0", { "cni.dev/valid-attachments": [{ containerID: "c1", ifname: "eth0" }] });
    expect(await run(plugin, { CNI_COMMAND: "GC", CNI_PATH: "/x" }, gcConf)).toEqual({
      code: 0,
      stdout: "",
      stderr: "",
    });
    expect(await run(plugin, { CNI_COMMAND: "STATUS", CNI_PATH: "/x" })).toEqual({
      code: 0,
      stdout: "",
      stderr: "",
    });
    expect(calls.map((c) => c.verb)).toEqual(["CHECK", "GC", "STATUS"]);
    await expectError(plugin, { CNI_COMMAND: "GC" }, gcConf, 4);
  });
  test("a plugin without gc/status/check handlers succeeds as a no-op", async () => {
    const { plugin } = recorder({ gc: undefined, status: undefined, check: undefined });
    expect((await run(plugin, { CNI_COMMAND: "STATUS", CNI_PATH: "/x" })).code).toBe(0);
    expect((await run(plugin, { ...BASE_ENV, CNI_COMMAND: "CHECK" })).code).toBe(0);
  });
});

describe("plugin failures", () => {
  test("a CniError keeps its code and details", async () => {
    const { plugin } = recorder({
      del: () => {
        throw new CniError(11, "try again later", "lock held");
      },
    });
    const json = await expectError(plugin, { ...BASE_ENV, CNI_COMMAND: "DEL" }, conf("1.0.0"), 11);
    expect(json).toEqual({ cniVersion: "1.0.0", code: 11, msg: "try again later", details: "lock held" });
  });
  test("an unexpected exception is code 999 with its message and no stack on stdout", async () => {
    const { plugin } = recorder({
      add: async () => {
        throw new TypeError("boom: undefined is not a function");
      },
    });
    const r = await run(plugin, { ...BASE_ENV, CNI_COMMAND: "ADD" });
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toEqual({
      cniVersion: "1.1.0",
      code: 999,
      msg: "boom: undefined is not a function",
    });
    expect(r.stdout).not.toContain("at ");
    expect(r.stderr).toBe("");
    const debug = await run(plugin, { ...BASE_ENV, CNI_COMMAND: "ADD", TSCNI_DEBUG: "1" });
    expect(debug.stderr).toContain("TypeError: boom");
    expect(debug.stderr).toContain("skel.test.ts");
    expect(JSON.parse(debug.stdout).code).toBe(999);
  });
  test("a thrown non-Error still becomes CNI error JSON", async () => {
    const { plugin } = recorder({
      del: () => {
        throw "plain string";
      },
    });
    const json = await expectError(plugin, { ...BASE_ENV, CNI_COMMAND: "DEL" }, conf(), 999);
    expect(json.msg).toBe("plain string");
  });
});
