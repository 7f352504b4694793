/**
 * dummy as a process in a throwaway host netns, the container in another; kernel state checked with
 * `ip -j`. This kernel may lack dummy links: then these run in the VM lane.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { cleanupAll, makeNetns, requiresKernel, type TempNetns, tempDir } from "../../helpers/netns.ts";
import { runPlugin } from "../_run.ts";

afterEach(() => cleanupAll());

const k = requiresKernel("dummy");

function setup() {
  return { host: makeNetns("dh"), cont: makeNetns("dc"), dataDir: tempDir("tscni-dummy-").path };
}
type Env = ReturnType<typeof setup>;

function conf(e: Env, extra: Record<string, unknown> = {}) {
  return {
    cniVersion: "1.1.0",
    name: "dummynet",
    type: "dummy",
    ipam: {
      type: "host-local",
      dataDir: e.dataDir,
      ranges: [[{ subnet: "10.71.0.0/24" }], [{ subnet: "fd00:71::/64" }]],
      routes: [{ dst: "10.200.0.0/16" }],
    },
    ...extra,
  };
}

function run(e: Env, command: string, config: object, netns: string = e.cont.path) {
  return runPlugin({
    plugin: "dummy",
    hostNetns: e.host.name,
    env: { CNI_COMMAND: command, CNI_CONTAINERID: "ctr1", CNI_NETNS: netns, CNI_IFNAME: "net1" },
    config,
  });
}

function links(n: TempNetns): string[] {
  return (n.ip("link", "show") as { ifname: string }[]).map((l) => l.ifname).filter((x) => x !== "lo");
}

function reservations(e: Env): string[] {
  const dir = join(e.dataDir, "dummynet");
  return existsSync(dir) ? readdirSync(dir).filter((f) => /^[0-9a-f.:]+$/.test(f) && /[.:]/.test(f)) : [];
}

describe("dummy", () => {
  test.skipIf(!!k.why)(
    k.name("ADD: a dummy with the IPAM addresses and routes; CHECK; DEL twice"),
    async () => {
      const e = setup();
      const add = await run(e, "ADD", conf(e));
      expect(add.stderr).toBe("");
      expect(add.code).toBe(0);
      const ip = (
        e.cont.ip("-d", "link", "show", "dev", "net1") as {
          linkinfo: { info_kind: string };
          address: string;
          flags: string[];
        }[]
      )[0];
      expect(ip?.linkinfo.info_kind).toBe("dummy");
      expect(ip?.flags).toContain("UP");
      expect(add.json.interfaces).toEqual([{ name: "net1", mac: ip?.address, sandbox: e.cont.path }]);
      expect(
        add.json.ips.map((i: { address: string; interface: number }) => [i.address, i.interface]),
      ).toEqual([
        ["10.71.0.2/24", 0],
        ["fd00:71::2/64", 0],
      ]);
      const addrs = (e.cont.ip("addr", "show", "dev", "net1") as { addr_info: { local: string }[] }[])[0]
        ?.addr_info;
      expect(addrs?.map((a) => a.local)).toEqual(expect.arrayContaining(["10.71.0.2", "fd00:71::2"]));
      const routes = e.cont.ip("-4", "route", "show") as { dst: string; dev: string; gateway?: string }[];
      expect(routes).toContainEqual(
        expect.objectContaining({ dst: "10.200.0.0/16", dev: "net1", gateway: "10.71.0.1" }),
      );
      expect(links(e.host)).toEqual([]); // nothing on the host side

      const check = await run(e, "CHECK", { ...conf(e), prevResult: add.json });
      expect(check.stdout).toBe("");
      expect(check.code).toBe(0);
      const badMac = { ...add.json, interfaces: [{ ...add.json.interfaces[0], mac: "02:00:00:00:00:01" }] };
      const bad = await run(e, "CHECK", { ...conf(e), prevResult: badMac });
      expect(bad.code).toBe(1);
      expect(bad.json.msg).toContain("doesn't match container Mac");

      expect((await run(e, "DEL", conf(e))).code).toBe(0);
      expect(links(e.cont)).toEqual([]);
      expect(reservations(e)).toEqual([]);
      expect((await run(e, "DEL", conf(e))).code).toBe(0);
      expect((await run(e, "DEL", conf(e), "/var/run/netns/tscni-gone-dummy")).code).toBe(0);
    },
  );

  test.skipIf(!!k.why)(k.name("a failing IPAM leaves no link behind"), async () => {
    const e = setup();
    const r = await run(e, "ADD", { ...conf(e), ipam: { type: "no-such-ipam" } });
    expect(r.code).toBe(1);
    expect(r.json.msg).toContain("no-such-ipam");
    expect(links(e.cont)).toEqual([]);
  });

  test.skipIf(!!k.why)(
    k.name("an ifname taken in the container is an error that deletes nothing"),
    async () => {
      const e = setup();
      e.cont.run(["ip", "link", "add", "net1", "type", "veth", "peer", "name", "net1p"]);
      const r = await run(e, "ADD", conf(e));
      expect(r.code).toBe(1);
      expect(r.json.msg).toContain("EEXIST");
      expect(links(e.cont).sort()).toEqual(["net1", "net1p"]);
      expect(reservations(e)).toEqual([]);
    },
  );
});

describe("dummy config (no kernel needed)", () => {
  test("ADD without IPAM is code 7 and makes nothing", async () => {
    const e = setup();
    const r = await run(e, "ADD", { cniVersion: "1.0.0", name: "dummynet", type: "dummy" });
    expect(r.code).toBe(1);
    expect(r.json).toMatchObject({ code: 7, msg: "dummy interface requires an IPAM configuration" });
    expect(links(e.cont)).toEqual([]);
  });

  test("DEL without IPAM and with the netns gone succeeds", async () => {
    const e = setup();
    const r = await run(
      e,
      "DEL",
      { cniVersion: "1.0.0", name: "dummynet", type: "dummy" },
      "/var/run/netns/nope",
    );
    expect(r.code).toBe(0);
  });
});
