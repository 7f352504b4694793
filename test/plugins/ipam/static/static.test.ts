import { describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { plugin } from "../../../../src/plugins/ipam/static/index.ts";
import { pluginMain } from "../../../../src/skel/skel.ts";
import type { CmdArgs } from "../../../../src/skel/types.ts";
import { failure } from "../../../helpers/errors.ts";

const UPSTREAM = "/usr/lib/cni/static";

function cmdArgs(conf: unknown, env = ""): CmdArgs {
  return {
    command: "ADD",
    containerID: "ctr1",
    netns: "/var/run/netns/x",
    ifName: "eth0",
    args: env,
    path: [],
    stdinData: new TextEncoder().encode(JSON.stringify(conf)),
  };
}

function netconf(ipam: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  return { cniVersion: "1.0.0", name: "n", type: "bridge", ...extra, ipam: { type: "static", ...ipam } };
}

const base = {
  addresses: [{ address: "10.0.0.5/24", gateway: "10.0.0.1" }, { address: "FD00::0005/64" }],
  routes: [{ dst: "0.0.0.0/0", gw: "10.0.0.1" }],
  dns: { nameservers: ["10.0.0.53"], domain: "example.com", search: ["example.com"] },
};

describe("static IPAM", () => {
  test("ADD returns the configured addresses, routes and DNS in canonical form", () => {
    expect(plugin.add(cmdArgs(netconf(base)))).toEqual({
      cniVersion: "1.0.0",
      ips: [{ address: "10.0.0.5/24", gateway: "10.0.0.1" }, { address: "fd00::5/64" }],
      routes: [{ dst: "0.0.0.0/0", gw: "10.0.0.1" }],
      dns: { nameservers: ["10.0.0.53"], domain: "example.com", search: ["example.com"] },
    });
  });

  test("precedence: runtimeConfig.ips > args.cni.ips > CNI_ARGS appended to the config", () => {
    const env = "IP=10.1.0.5/24,fd01::5/64;GATEWAY=10.1.0.1,fd01::1,10.0.0.254";
    const ips = (conf: unknown) => (plugin.add(cmdArgs(conf, env)) as { ips?: unknown }).ips;
    expect(ips(netconf(base))).toEqual([
      { address: "10.0.0.5/24", gateway: "10.0.0.254" },
      { address: "fd00::5/64" },
      { address: "10.1.0.5/24", gateway: "10.1.0.1" },
      { address: "fd01::5/64", gateway: "fd01::1" },
    ]);
    expect(ips(netconf(base, { args: { cni: { ips: ["10.9.0.5/24"] } } }))).toEqual([
      { address: "10.9.0.5/24" },
    ]);
    expect(
      ips(
        netconf(base, { args: { cni: { ips: ["10.9.0.5/24"] } }, runtimeConfig: { ips: ["10.8.0.5/16"] } }),
      ),
    ).toEqual([{ address: "10.8.0.5/16" }]);
  });

  test("rejections", () => {
    expect(failure(() => plugin.add(cmdArgs({ cniVersion: "1.0.0", name: "n" }))).msg).toBe(
      "IPAM config missing 'ipam' key",
    );
    expect(failure(() => plugin.add(cmdArgs(netconf({ addresses: [{ address: "10.0.0.5" }] })))).msg).toBe(
      "the 'address' field is expected to be in CIDR notation, got: '10.0.0.5'",
    );
    expect(failure(() => plugin.add(cmdArgs(netconf(base), "FOO=bar"))).code).toBe(4);
    expect(failure(() => plugin.add(cmdArgs(netconf(base), "GATEWAY=x"))).msg).toBe(
      "invalid gateway address: x",
    );
    const old = netconf(
      { addresses: [{ address: "10.0.0.5/24" }, { address: "10.0.0.6/24" }] },
      { cniVersion: "0.2.0" },
    );
    expect(failure(() => plugin.add(cmdArgs(old))).msg).toBe(
      "CNI version 0.2.0 does not support more than 1 address per family",
    );
  });

  test("CHECK compares with prevResult", () => {
    const prev = {
      cniVersion: "1.0.0",
      ips: [{ address: "10.0.0.5/24", gateway: "10.0.0.1" }, { address: "fd00::5/64" }],
    };
    plugin.check!(cmdArgs(netconf(base, { prevResult: prev })));
    expect(failure(() => plugin.check!(cmdArgs(netconf(base)))).msg).toBe("Required prevResult missing");
    const wrongGw = {
      ...prev,
      ips: [{ address: "10.0.0.5/24", gateway: "10.0.0.2" }, { address: "fd00::5/64" }],
    };
    expect(failure(() => plugin.check!(cmdArgs(netconf(base, { prevResult: wrongGw })))).msg).toBe(
      "static: Failed to match addr 10.0.0.5 on interface eth0",
    );
    const missing = { ...prev, ips: [{ address: "10.0.0.5/24", gateway: "10.0.0.1" }] };
    expect(failure(() => plugin.check!(cmdArgs(netconf(base, { prevResult: missing })))).msg).toBe(
      "static: Failed to find addr fd00::5 on interface eth0",
    );
  });

  test("DEL succeeds without looking at anything", () => {
    expect(plugin.del(cmdArgs("not even json"))).toBeUndefined();
  });
});

/** Upstream's static binary as the oracle for what ADD prints. */
describe.skipIf(!existsSync(UPSTREAM))("static ADD output matches upstream", () => {
  const cases: [string, unknown, string][] = [
    ["config addresses, routes, dns", netconf(base), ""],
    ["CNI_ARGS appended with gateways", netconf(base), "IP=10.1.0.5/24,fd01::5/64;GATEWAY=10.1.0.1,fd01::1"],
    ["args.cni.ips replace", netconf(base, { args: { cni: { ips: ["10.9.0.5/24"] } } }), ""],
    [
      "runtimeConfig.ips replace",
      netconf(base, { runtimeConfig: { ips: ["::ffff:10.8.0.5/120", "fd02::7/48"] } }),
      "",
    ],
    ["no addresses", netconf({}), ""],
  ];
  for (const [name, conf, env] of cases) {
    test(name, async () => {
      const stdin = JSON.stringify(conf);
      const envVars = {
        CNI_COMMAND: "ADD",
        CNI_CONTAINERID: "ctr1",
        CNI_NETNS: "/var/run/netns/x",
        CNI_IFNAME: "eth0",
        CNI_PATH: "/usr/lib/cni",
        CNI_ARGS: env,
      };
      const proc = Bun.spawn([UPSTREAM], {
        env: envVars,
        stdin: new TextEncoder().encode(stdin),
        stdout: "pipe",
      });
      const theirs = JSON.parse(await new Response(proc.stdout).text());
      expect(await proc.exited).toBe(0);
      let out = "";
      const code = await pluginMain(plugin, {
        env: envVars,
        stdin,
        stdout: (t) => {
          out += t;
        },
      });
      expect(code).toBe(0);
      const ours = JSON.parse(out);
      // Go prints an empty DNS object; an absent one means the same.
      if (JSON.stringify(theirs.dns) === "{}") delete theirs.dns;
      if (JSON.stringify(ours.dns) === "{}") delete ours.dns;
      expect(ours).toEqual(theirs);
    });
  }
});
