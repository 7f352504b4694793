import { describe, expect, test } from "bun:test";
import {
  buildPluginConfig,
  filterCapabilityArgs,
  parseConfList,
  parseNetConf,
  parsePluginStdin,
  parseValidAttachments,
  upconvertConfToList,
} from "../../src/spec/conf.ts";
import type { Result } from "../../src/spec/types.ts";
import { failure } from "../helpers/errors.ts";

const PODMAN_LIST = {
  cniVersion: "0.4.0",
  name: "podman",
  plugins: [
    {
      type: "bridge",
      bridge: "cni-podman0",
      isGateway: true,
      ipMasq: true,
      ipam: { type: "host-local", ranges: [[{ subnet: "10.88.0.0/16" }]] },
    },
    { type: "portmap", capabilities: { portMappings: true } },
    { type: "firewall" },
    { type: "tuning" },
  ],
};

describe("parseNetConf", () => {
  test("keeps every key, defaults cniVersion to 0.1.0", () => {
    const c = parseNetConf('{"name":"n","type":"bridge","bridge":"br0","ipam":{"type":"host-local"}}');
    expect(c).toEqual({
      cniVersion: "0.1.0",
      name: "n",
      type: "bridge",
      bridge: "br0",
      ipam: { type: "host-local" },
    });
  });
  test("Go-style keys: Type matches type", () => {
    expect(parseNetConf('{"cniVersion":"1.0.0","Type":"ptp"}').type).toBe("ptp");
  });
  test("missing type is code 7, bad name code 7, bad JSON and wrong types code 6", () => {
    expect(failure(() => parseNetConf('{"name":"n"}')).code).toBe(7);
    expect(failure(() => parseNetConf('{"name":"a/b","type":"x"}')).code).toBe(7);
    expect(failure(() => parseNetConf("{")).code).toBe(6);
    expect(failure(() => parseNetConf("[]")).code).toBe(6);
    const e = failure(() => parseNetConf('{"type":"x","capabilities":{"portMappings":"yes"}}'));
    expect(e.code).toBe(6);
    expect(e.msg).toBe("capabilities.portMappings: expected boolean, got string");
    expect(failure(() => parseNetConf('{"type":"x","ipam":{"type":1}}')).msg).toBe(
      "ipam.type: expected string, got number",
    );
  });
  test("a name is optional for a plain config but required on a plugin's stdin", () => {
    expect(parseNetConf('{"type":"x"}').name).toBe("");
    const e = failure(() => parsePluginStdin('{"cniVersion":"1.0.0","type":"x"}'));
    expect(e.code).toBe(7);
    expect(e.msg).toBe("missing network name");
    expect(parsePluginStdin('{"name":"n"}').cniVersion).toBe("0.1.0");
  });
});

describe("parseConfList", () => {
  test("podman's list: plugins inherit name and cniVersion", () => {
    const l = parseConfList(JSON.stringify(PODMAN_LIST));
    expect(l.name).toBe("podman");
    expect(l.cniVersion).toBe("0.4.0");
    expect(l.disableCheck).toBe(false);
    expect(l.disableGC).toBe(false);
    expect(l.loadOnlyInlinedPlugins).toBe(false);
    expect(l.plugins.map((p) => p.type)).toEqual(["bridge", "portmap", "firewall", "tuning"]);
    for (const p of l.plugins) {
      expect(p.name).toBe("podman");
      expect(p.cniVersion).toBe("0.4.0");
    }
    expect(l.plugins[0]!["bridge"]).toBe("cni-podman0");
    expect(l.raw).toEqual(PODMAN_LIST);
  });
  test("missing cniVersion means 0.1.0", () => {
    expect(parseConfList('{"name":"n","plugins":[{"type":"x"}]}').cniVersion).toBe("0.1.0");
  });
  test("cniVersions picks the highest version not newer than ours, overriding cniVersion", () => {
    const list = (extra: object) => JSON.stringify({ name: "n", plugins: [{ type: "x" }], ...extra });
    const a = parseConfList(list({ cniVersion: "0.4.0", cniVersions: ["0.3.1", "1.0.0", "9.0.0"] }));
    expect(a.cniVersion).toBe("1.0.0");
    expect(a.cniVersions).toEqual(["0.3.1", "1.0.0", "9.0.0"]);
    expect(a.plugins[0]!.cniVersion).toBe("1.0.0");
    expect(parseConfList(list({ cniVersion: "1.1.0", cniVersions: ["1.0.0"] })).cniVersion).toBe("1.1.0");
    expect(parseConfList(list({ cniVersions: ["9.0.0"] })).cniVersion).toBe("0.1.0");
    expect(failure(() => parseConfList(list({ cniVersions: ["x.y"] }))).code).toBe(7);
    expect(failure(() => parseConfList(list({ cniVersions: [1] }))).code).toBe(7);
    expect(failure(() => parseConfList(list({ cniVersions: "1.0.0" }))).code).toBe(7);
  });
  test('disableCheck/disableGC/loadOnlyInlinedPlugins take booleans or "true"/"false"', () => {
    const list = (extra: object) =>
      JSON.stringify({ name: "n", cniVersion: "1.1.0", plugins: [{ type: "x" }], ...extra });
    expect(parseConfList(list({ disableGC: true })).disableGC).toBe(true);
    expect(parseConfList(list({ disableGC: "true" })).disableGC).toBe(true);
    expect(parseConfList(list({ disableGC: "False" })).disableGC).toBe(false);
    expect(parseConfList(list({ disableCheck: "TRUE" })).disableCheck).toBe(true);
    expect(parseConfList(list({ loadOnlyInlinedPlugins: true })).loadOnlyInlinedPlugins).toBe(true);
    for (const bad of ["yes", "1", 1, null, {}]) {
      const e = failure(() => parseConfList(list({ disableGC: bad })));
      expect(e.code).toBe(7);
      expect(e.msg).toContain("disableGC");
    }
  });
  test("structural errors", () => {
    const cases: [unknown, string][] = [
      [{ plugins: [{ type: "x" }] }, "no name"],
      [{ name: 5, plugins: [{ type: "x" }] }, "invalid name type number"],
      [{ name: "bad/name", plugins: [{ type: "x" }] }, "invalid characters found in network name"],
      [{ name: "n" }, "no 'plugins' key"],
      [{ name: "n", loadOnlyInlinedPlugins: true }, "`loadOnlyInlinedPlugins` is true, and no 'plugins' key"],
      [{ name: "n", plugins: {} }, "invalid 'plugins' type object"],
      [{ name: "n", plugins: [] }, "no plugins in list"],
      [{ name: "n", plugins: [{ type: "x" }, { bridge: "br0" }] }, "failed to parse plugin config 1: "],
      [{ name: "n", cniVersion: 1, plugins: [{ type: "x" }] }, "invalid cniVersion type number"],
    ];
    for (const [raw, msg] of cases) {
      const e = failure(() => parseConfList(JSON.stringify(raw)));
      expect(e.code).toBe(7);
      expect(e.msg).toContain(msg);
    }
    expect(failure(() => parseConfList('{"name":"n","plugins":[3]}')).code).toBe(6);
    expect(failure(() => parseConfList("{")).code).toBe(6);
  });
  test("allowNoPlugins lets the caller load plugins from files", () => {
    expect(parseConfList('{"name":"n"}', { allowNoPlugins: true }).plugins).toEqual([]);
  });
  test("upconverting a single config", () => {
    const conf = parseNetConf('{"cniVersion":"1.0.0","name":"solo","type":"bridge","bridge":"br9"}');
    const l = upconvertConfToList(conf);
    expect(l.name).toBe("solo");
    expect(l.cniVersion).toBe("1.0.0");
    expect(l.plugins).toEqual([conf]);
    expect(failure(() => upconvertConfToList(parseNetConf('{"type":"x"}'))).code).toBe(7);
  });
});

describe("buildPluginConfig", () => {
  const list = parseConfList(
    JSON.stringify({
      ...PODMAN_LIST,
      plugins: [
        ...PODMAN_LIST.plugins,
        { type: "bandwidth", capabilities: { bandwidth: true, portMappings: false } },
        { type: "static-rc", runtimeConfig: { mac: "02:00:00:00:00:09" } },
      ],
    }),
  );
  const capabilityArgs = {
    portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }],
    bandwidth: { ingressRate: 1000 },
    ips: ["10.88.0.9"],
  };
  test("runtimeConfig carries only the capabilities the plugin enabled", () => {
    const [bridge, portmap, , , bandwidth] = list.plugins;
    expect(buildPluginConfig(list, bridge!, { runtimeConfig: capabilityArgs })).not.toHaveProperty(
      "runtimeConfig",
    );
    expect(buildPluginConfig(list, portmap!, { runtimeConfig: capabilityArgs })["runtimeConfig"]).toEqual({
      portMappings: capabilityArgs.portMappings,
    });
    expect(buildPluginConfig(list, bandwidth!, { runtimeConfig: capabilityArgs })["runtimeConfig"]).toEqual({
      bandwidth: { ingressRate: 1000 },
    });
    expect(filterCapabilityArgs(portmap!, {})).toEqual({});
  });
  test("a static runtimeConfig stays unless capabilities inject one", () => {
    const rc = list.plugins[5]!;
    expect(buildPluginConfig(list, rc, { runtimeConfig: capabilityArgs })["runtimeConfig"]).toEqual({
      mac: "02:00:00:00:00:09",
    });
  });
  test("name, cniVersion and prevResult (in the list's version) are injected", () => {
    const prev: Result = { cniVersion: "1.1.0", ips: [{ address: "10.88.0.9/16", gateway: "10.88.0.1" }] };
    const cfg = buildPluginConfig(list, list.plugins[1]!, { prevResult: prev });
    expect(cfg["name"]).toBe("podman");
    expect(cfg["cniVersion"]).toBe("0.4.0");
    expect(cfg["type"]).toBe("portmap");
    expect(cfg["capabilities"]).toEqual({ portMappings: true });
    expect(cfg["prevResult"]).toEqual({
      cniVersion: "0.4.0",
      ips: [{ version: "4", address: "10.88.0.9/16", gateway: "10.88.0.1" }],
      dns: {},
    });
    expect(buildPluginConfig(list, list.plugins[1]!)).not.toHaveProperty("prevResult");
  });
});

describe("parseValidAttachments", () => {
  test("reads cni.dev/valid-attachments, falling back to the legacy key", () => {
    const one = [{ containerID: "c1", ifname: "eth0" }];
    expect(parseValidAttachments({ "cni.dev/valid-attachments": one })).toEqual(one);
    expect(parseValidAttachments({ "cni.dev/attachments": one })).toEqual(one);
    expect(parseValidAttachments({ "cni.dev/valid-attachments": [] })).toEqual([]);
    expect(parseValidAttachments({})).toBeUndefined();
  });

  test("a wrong type names the field", () => {
    expect(() => parseValidAttachments({ "cni.dev/valid-attachments": [3] })).toThrow(
      "cni.dev/valid-attachments[0]: expected object",
    );
  });
});
