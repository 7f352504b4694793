import { afterEach, beforeEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CNIConfig, type RuntimeConf } from "../../src/libcni/index.ts";
import type { NoopCall } from "../../src/plugins/test/noop.ts";
import { parseConfList, parseNetConf } from "../../src/spec/conf.ts";
import type { NetConfList } from "../../src/spec/types.ts";
import { rejection } from "../helpers/errors.ts";
import { makeNoopEnv, type NoopEnv } from "./noop-env.ts";

// Every step spawns real plugin processes; a loaded machine makes them slow, never wrong.
setDefaultTimeout(60_000);

let env: NoopEnv;
let cni: CNIConfig;
beforeEach(() => {
  env = makeNoopEnv();
  cni = new CNIConfig({ path: [env.binDir], cacheDir: env.cacheDir });
});
afterEach(() => env.cleanup());

const RESULT_100 = { cniVersion: "1.0.0", ips: [{ address: "10.1.0.5/16", gateway: "10.1.0.1" }] };

function rt(over: Partial<RuntimeConf> = {}): RuntimeConf {
  return {
    containerID: "ctr1",
    netNS: "/var/run/netns/ctr1",
    ifName: "eth0",
    args: [
      ["K8S_POD_NAME", "web"],
      ["IgnoreUnknown", "1"],
    ],
    capabilityArgs: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }], bandwidth: {} },
    ...over,
  };
}

/** A list of noop plugins; each entry is that plugin's extra config keys (debugFile added). */
function noopList(version: string, plugins: Record<string, unknown>[], extra: Record<string, unknown> = {}) {
  return parseConfList(
    JSON.stringify({
      cniVersion: version,
      name: "net1",
      plugins: plugins.map((p) => ({ type: "noop", debugFile: env.logFile, ...p })),
      ...extra,
    }),
  );
}

const two = (version = "1.0.0", extra: Record<string, unknown> = {}) =>
  noopList(
    version,
    [
      { tag: "first", result: { ...RESULT_100, cniVersion: version } },
      { tag: "second", capabilities: { portMappings: true } },
    ],
    extra,
  );

function cacheFile(name = "net1-ctr1-eth0"): string {
  return join(env.cacheDir, "results", name);
}

const summary = (calls: NoopCall[]) => calls.map((c) => `${c.command}:${c.stdin.tag}`);

describe("ADD", () => {
  test("chains results, injects name/version and only declared capabilities, sets the CNI env", async () => {
    const result = await cni.addNetworkList(two(), rt());
    expect(result.ips?.[0]?.address).toBe("10.1.0.5/16");
    const [first, second] = env.calls();
    expect(summary(env.calls())).toEqual(["ADD:first", "ADD:second"]);
    expect(first?.stdin.prevResult).toBeUndefined();
    expect(first?.stdin.runtimeConfig).toBeUndefined(); // declares no capabilities
    expect(second?.stdin.prevResult).toEqual({ ...RESULT_100, dns: {} });
    expect(second?.stdin.runtimeConfig).toEqual({ portMappings: rt().capabilityArgs?.portMappings });
    expect([second?.stdin.name, second?.stdin.cniVersion]).toEqual(["net1", "1.0.0"]);
    expect(second).toMatchObject({
      command: "ADD",
      containerID: "ctr1",
      netns: "/var/run/netns/ctr1",
      ifName: "eth0",
      args: "K8S_POD_NAME=web;IgnoreUnknown=1",
      path: [env.binDir],
    });
  });

  test("caches the result in upstream's cniCacheV1 format and reads it back", async () => {
    const list = two();
    await cni.addNetworkList(list, rt());
    const json = JSON.parse(readFileSync(cacheFile(), "utf8"));
    expect(json.kind).toBe("cniCacheV1");
    expect(json).toMatchObject({
      containerId: "ctr1",
      ifName: "eth0",
      networkName: "net1",
      netns: "/var/run/netns/ctr1",
    });
    expect(JSON.parse(Buffer.from(json.config, "base64").toString())).toEqual(list.raw);
    expect(json.cniArgs).toEqual(rt().args);
    expect(json.capabilityArgs).toEqual(rt().capabilityArgs);
    expect(json.result).toEqual({ ...RESULT_100, dns: {} });

    expect((await cni.getNetworkListCachedResult(list, rt()))?.ips?.[0]?.gateway).toBe("10.1.0.1");
    const cached = await cni.getNetworkListCachedConfig(list, rt({ args: [], capabilityArgs: {} }));
    expect(JSON.parse(new TextDecoder().decode(cached?.config))).toEqual(list.raw);
    expect(cached?.rt.args).toEqual(rt().args);
    expect(cached?.rt.capabilityArgs).toEqual(rt().capabilityArgs);
    expect(await cni.getNetworkListCachedResult(list, rt({ containerID: "other" }))).toBeUndefined();
  });

  test("a failing plugin stops the chain; its code, msg and details reach the caller; nothing cached", async () => {
    const list = noopList("1.0.0", [
      { tag: "a", errorCode: 11, errorMsg: "busy", errorDetails: "retry in 5s", failOn: ["ADD"] },
      { tag: "b" },
    ]);
    const err = await rejection(cni.addNetworkList(list, rt()));
    expect(err.code).toBe(11);
    expect(err.msg).toBe('plugin type="noop" name="net1" failed (add): busy');
    expect(err.details).toBe("retry in 5s");
    expect(summary(env.calls())).toEqual(["ADD:a"]);
    expect(existsSync(env.cacheDir)).toBe(false);
  });

  test("a missing plugin names every dir searched", async () => {
    const c = new CNIConfig({ path: ["/nonexistent/one", env.binDir], cacheDir: env.cacheDir });
    const list = parseConfList(
      JSON.stringify({ cniVersion: "1.0.0", name: "net1", plugins: [{ type: "ghost" }] }),
    );
    const err = await rejection(c.addNetworkList(list, rt()));
    expect(err.code).toBe(50);
    expect(err.msg).toContain(`failed to find plugin "ghost" in path [/nonexistent/one ${env.binDir}]`);
  });

  test("bad container id / interface name is refused before any plugin runs or file is written", async () => {
    expect((await rejection(cni.addNetworkList(two(), rt({ containerID: "../etc" })))).code).toBe(4);
    expect((await rejection(cni.addNetworkList(two(), rt({ ifName: "a/b" })))).code).toBe(4);
    expect((await rejection(cni.delNetworkList(two(), rt({ containerID: "" })))).code).toBe(3);
    expect(env.calls()).toEqual([]);
  });
});

describe("DEL", () => {
  test("runs plugins in reverse with the cached result as prevResult, then drops the cache", async () => {
    const list = two();
    await cni.addNetworkList(list, rt());
    await cni.delNetworkList(list, rt());
    const dels = env.calls().filter((c) => c.command === "DEL");
    expect(summary(dels)).toEqual(["DEL:second", "DEL:first"]);
    for (const d of dels) expect(d.stdin.prevResult).toEqual({ ...RESULT_100, dns: {} });
    expect(readdirSync(join(env.cacheDir, "results"))).toEqual([]);
  });

  test("without a cached result still DELs, without prevResult (and is repeatable)", async () => {
    await cni.delNetworkList(two(), rt());
    await cni.delNetworkList(two(), rt());
    expect(summary(env.calls())).toEqual(["DEL:second", "DEL:first", "DEL:second", "DEL:first"]);
    expect(env.calls().every((c) => c.stdin.prevResult === undefined)).toBe(true);
  });

  test("a corrupt cache file does not block DEL and is removed", async () => {
    const list = two();
    await cni.addNetworkList(list, rt());
    writeFileSync(
      cacheFile(),
      '{"kind":"cniCacheV1","containerId":"ctr1","result":{"cniVersion":"1.0.0","ips":[{"addr',
    );
    await cni.delNetworkList(list, rt());
    const dels = env.calls().filter((c) => c.command === "DEL");
    expect(dels.length).toBe(2);
    expect(dels.every((c) => c.stdin.prevResult === undefined)).toBe(true);
    expect(readdirSync(join(env.cacheDir, "results"))).toEqual([]);
  });

  test("a cached result that is valid JSON but not a valid result does not block DEL either", async () => {
    const list = two();
    await cni.addNetworkList(list, rt());
    writeFileSync(cacheFile(), JSON.stringify({ kind: "cniCacheV1", result: { cniVersion: "9.9.9" } }));
    await cni.delNetworkList(list, rt());
    expect(env.calls().filter((c) => c.command === "DEL").length).toBe(2);
  });

  test("a failing DEL reports the plugin and keeps the cache for a retry", async () => {
    const list = noopList("1.0.0", [
      { tag: "a" },
      { tag: "b", errorCode: 5, errorMsg: "disk", failOn: ["DEL"] },
    ]);
    await cni.addNetworkList(list, rt());
    const err = await rejection(cni.delNetworkList(list, rt()));
    expect([err.code, err.msg]).toEqual([5, 'plugin type="noop" name="net1" failed (delete): disk']);
    expect(readdirSync(join(env.cacheDir, "results"))).toEqual(["net1-ctr1-eth0"]);
  });
});

describe("CHECK", () => {
  test("runs plugins in order with the cached result", async () => {
    const list = two();
    await cni.addNetworkList(list, rt());
    await cni.checkNetworkList(list, rt());
    const checks = env.calls().filter((c) => c.command === "CHECK");
    expect(summary(checks)).toEqual(["CHECK:first", "CHECK:second"]);
    expect(checks[0]?.stdin.prevResult).toEqual({ ...RESULT_100, dns: {} });
  });

  test("is an error without a cached result", async () => {
    const err = await rejection(cni.checkNetworkList(two(), rt()));
    expect(err.msg).toContain('no cached result for network "net1"');
    expect(env.calls()).toEqual([]);
  });

  test("is an error before 0.4.0, even with disableCheck", async () => {
    const err = await rejection(cni.checkNetworkList(two("0.3.1", { disableCheck: true }), rt()));
    expect(err.code).toBe(1);
    expect(err.msg).toBe('configuration version "0.3.1" does not support the CHECK command');
  });

  test("disableCheck skips every plugin", async () => {
    const list = two("1.0.0", { disableCheck: true });
    await cni.addNetworkList(list, rt());
    await cni.checkNetworkList(list, rt());
    expect(env.calls().filter((c) => c.command === "CHECK")).toEqual([]);
  });
});

describe("GC and STATUS", () => {
  async function addThree(list: NetConfList) {
    await cni.addNetworkList(list, rt());
    await cni.addNetworkList(
      list,
      rt({ containerID: "ctr2", netNS: "/var/run/netns/ctr2", args: [["X", "2"]] }),
    );
    const other = parseConfList(JSON.stringify({ ...list.raw, name: "other" }));
    await cni.addNetworkList(other, rt({ containerID: "ctr3" }));
  }

  test("DELs this network's stale attachments, then sends GC with the valid ones (1.1.0)", async () => {
    const list = two("1.1.0");
    await addThree(list);
    await cni.gcNetworkList(list, { validAttachments: [{ containerID: "ctr1", ifname: "eth0" }] });
    const after = env.calls().slice(6);
    expect(summary(after)).toEqual(["DEL:second", "DEL:first", "GC:first", "GC:second"]);
    expect(after[0]).toMatchObject({
      containerID: "ctr2",
      netns: "/var/run/netns/ctr2",
      args: "X=2",
      ifName: "eth0",
    });
    const gc = after[2];
    expect(gc?.stdin["cni.dev/valid-attachments"]).toEqual([{ containerID: "ctr1", ifname: "eth0" }]);
    expect(gc?.stdin["cni.dev/attachments"]).toEqual([{ containerID: "ctr1", ifname: "eth0" }]);
    expect([gc?.containerID, gc?.ifName, gc?.path]).toEqual(["", "", [env.binDir]]);
    expect(readdirSync(join(env.cacheDir, "results")).sort()).toEqual(["net1-ctr1-eth0", "other-ctr3-eth0"]);
    expect((await cni.getCachedAttachments("ctr1")).map((a) => a.networkName)).toEqual(["net1"]);
  });

  test("before 1.1.0 only stale attachments are deleted; disableGC does nothing", async () => {
    const list = two("1.0.0");
    await addThree(list);
    await cni.gcNetworkList(list, { validAttachments: [] });
    expect(summary(env.calls().slice(6))).toEqual(["DEL:second", "DEL:first", "DEL:second", "DEL:first"]);

    const off = two("1.1.0", { disableGC: true });
    await cni.addNetworkList(off, rt({ containerID: "ctr9" }));
    const before = env.calls().length;
    await cni.gcNetworkList(off, { validAttachments: [] });
    expect(env.calls().length).toBe(before);
  });

  test("STATUS asks each plugin (1.1.0) and passes a plugin's error code through; no-op before 1.1.0", async () => {
    await cni.getStatusNetworkList(two("1.1.0"));
    expect(summary(env.calls())).toEqual(["STATUS:first", "STATUS:second"]);
    await cni.getStatusNetworkList(two("1.0.0"));
    expect(env.calls().length).toBe(2);
    const down = noopList("1.1.0", [{ tag: "x", errorCode: 50, errorMsg: "not ready", failOn: ["STATUS"] }]);
    const err = await rejection(cni.getStatusNetworkList(down));
    expect([err.code, err.msg]).toEqual([50, "not ready"]);
  });
});

describe("versions", () => {
  const old = (version: string) =>
    parseConfList(
      JSON.stringify({
        cniVersion: version,
        name: "net1",
        plugins: [
          { type: "noop031", debugFile: env.logFile, tag: "old", capabilities: { portMappings: true } },
        ],
      }),
    );

  test("a 0.3.1-only plugin: VERSION, validate, ADD in 0.3.1, DEL without prevResult", async () => {
    expect((await cni.getVersionInfo("noop031")).supportedVersions).toEqual([
      "0.1.0",
      "0.2.0",
      "0.3.0",
      "0.3.1",
    ]);
    expect(await cni.validateNetworkList(old("0.3.1"))).toEqual(["portMappings"]);
    const bad = await rejection(cni.validateNetworkList(old("1.0.0")));
    expect(bad.msg).toBe('plugin noop031 does not support config version "1.0.0"');

    const l = old("0.3.1");
    const result = await cni.addNetworkList(l, rt());
    expect(result.cniVersion).toBe("0.3.1");
    expect(JSON.parse(readFileSync(cacheFile(), "utf8")).result.cniVersion).toBe("0.3.1");
    await cni.delNetworkList(l, rt());
    const del = env.calls().find((c) => c.command === "DEL");
    expect(del?.stdin.prevResult).toBeUndefined(); // DEL got prevResult only from 0.4.0 on
  });

  test("asking a 0.3.1-only plugin for 1.0.0 fails with incompatible version", async () => {
    const err = await rejection(cni.addNetworkList(old("1.0.0"), rt()));
    expect(err.code).toBe(1);
    expect(err.msg).toContain('plugin type="noop031"');
  });

  test("a 1.0.0 result is converted to the 0.3.1 of the next plugin's config", async () => {
    const list = noopList("0.3.1", [
      { tag: "a", result: { ...RESULT_100, cniVersion: "0.3.1" } },
      { tag: "b" },
    ]);
    await cni.addNetworkList(list, rt());
    const prev = env.calls()[1]?.stdin.prevResult as { cniVersion: string; ips: { version?: string }[] };
    expect(prev.cniVersion).toBe("0.3.1");
    expect(prev.ips[0]?.version).toBe("4");
  });
});

describe("single networks", () => {
  test("add/check/del one plugin config; the cache records that config's own bytes", async () => {
    const net = parseNetConf(
      JSON.stringify({ cniVersion: "1.0.0", name: "solo", type: "noop", debugFile: env.logFile, tag: "s" }),
    );
    await cni.addNetwork(net, rt());
    const json = JSON.parse(readFileSync(cacheFile("solo-ctr1-eth0"), "utf8"));
    expect(JSON.parse(Buffer.from(json.config, "base64").toString())).toEqual(net);
    expect(await cni.getNetworkCachedResult(net, rt())).toEqual({ cniVersion: "1.0.0" });
    await cni.checkNetwork(net, rt());
    await cni.delNetwork(net, rt());
    expect(summary(env.calls())).toEqual(["ADD:s", "CHECK:s", "DEL:s"]);
    expect(await cni.validateNetwork(net)).toEqual([]);
    expect(readdirSync(join(env.cacheDir, "results"))).toEqual([]);
  });
});
