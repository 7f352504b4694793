import { afterEach, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { cleanupAll, makeNetns, type TempNetns } from "../../helpers/netns.ts";
import { runPlugin, UPSTREAM_DIR } from "../_run.ts";

afterEach(() => cleanupAll());

const UPSTREAM = `${UPSTREAM_DIR}/loopback`;
const haveUpstream = existsSync(UPSTREAM);

function conf(cniVersion: string, extra: object = {}) {
  return { cniVersion, name: "lo-net", type: "loopback", ...extra };
}

function run(host: TempNetns, cont: { path: string }, command: string, config: object, plugin = "loopback") {
  return runPlugin({
    plugin,
    hostNetns: host.name,
    env: { CNI_COMMAND: command, CNI_NETNS: cont.path, CNI_IFNAME: "eth0" },
    config,
  });
}

function loFlags(n: TempNetns): string[] {
  return n.ip("link", "show", "dev", "lo")[0].flags;
}

describe("loopback ADD", () => {
  for (const v of ["0.3.1", "0.4.0", "1.0.0", "1.1.0"]) {
    test(`brings lo up and reports lo with its addresses (${v})`, async () => {
      const host = makeNetns("lbh");
      const cont = makeNetns("lbc");
      expect(loFlags(cont)).not.toContain("UP");
      const r = await run(host, cont, "ADD", conf(v));
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(loFlags(cont)).toContain("UP");
      const expected: Record<string, unknown> = {
        cniVersion: v,
        interfaces: [{ name: "lo", mac: "00:00:00:00:00:00", sandbox: cont.path }],
        ips: [
          {
            ...(v === "0.3.1" || v === "0.4.0" ? { version: "4" } : {}),
            interface: 0,
            address: "127.0.0.1/8",
          },
          { ...(v === "0.3.1" || v === "0.4.0" ? { version: "6" } : {}), interface: 0, address: "::1/128" },
        ],
      };
      if (v !== "1.1.0") expected.dns = {};
      expect(r.json).toEqual(expected);
    });
  }

  // Upstream labels its 1.0.0-shaped result with the config's version without converting it, so its
  // 0.3.x/0.4.0 output lacks the per-IP "version" those versions require; we print the real shape.
  test.skipIf(!haveUpstream)("prints what upstream prints (0.3.1, 0.4.0, 1.0.0)", async () => {
    for (const v of ["0.3.1", "0.4.0", "1.0.0"]) {
      const host = makeNetns("lbh");
      const a = makeNetns("lbc");
      const b = makeNetns("lbc");
      const ours = await run(host, a, "ADD", conf(v));
      const theirs = await run(host, b, "ADD", conf(v), UPSTREAM);
      expect(theirs.code).toBe(0);
      expect(ours.code).toBe(0);
      if (v !== "1.0.0") {
        expect(ours.json.ips.map((i: { version: string }) => i.version)).toEqual(["4", "6"]);
        for (const ipc of ours.json.ips) delete ipc.version;
      }
      expect(JSON.stringify(ours.json).replaceAll(a.path, "NS")).toBe(
        JSON.stringify(theirs.json).replaceAll(b.path, "NS"),
      );
    }
  });

  test("0.2.0 gets the loopback addresses in the 0.2.0 shape", async () => {
    const host = makeNetns("lbh");
    const cont = makeNetns("lbc");
    const r = await run(host, cont, "ADD", conf("0.2.0"));
    expect(r.code).toBe(0);
    expect(r.json).toEqual({
      cniVersion: "0.2.0",
      ip4: { ip: "127.0.0.1/8" },
      ip6: { ip: "::1/128" },
      dns: {},
    });
  });

  test("a prevResult is passed through unchanged", async () => {
    const host = makeNetns("lbh");
    const cont = makeNetns("lbc");
    const prevResult = {
      cniVersion: "1.0.0",
      interfaces: [{ name: "eth0", sandbox: cont.path }],
      ips: [{ interface: 0, address: "10.1.2.3/24", gateway: "10.1.2.1" }],
      dns: {},
    };
    const r = await run(host, cont, "ADD", conf("1.0.0", { prevResult }));
    expect(r.code).toBe(0);
    expect(r.json).toEqual(prevResult);
    expect(loFlags(cont)).toContain("UP");
  });

  test("a non-loopback address on lo is refused", async () => {
    const host = makeNetns("lbh");
    const cont = makeNetns("lbc");
    cont.run(["ip", "addr", "add", "10.9.9.9/32", "dev", "lo"]);
    const r = await run(host, cont, "ADD", conf("1.0.0"));
    expect(r.code).toBe(1);
    expect(r.json.code).toBe(999);
    expect(r.json.msg).toContain('loopback interface found with non-loopback address "10.9.9.9"');
  });

  test("a missing netns fails with code 999 naming it", async () => {
    const host = makeNetns("lbh");
    const r = await run(host, { path: "/var/run/netns/tscni-none-lb" }, "ADD", conf("1.0.0"));
    expect(r.code).toBe(1);
    expect(r.json.code).toBe(999);
    expect(r.json.msg).toContain("/var/run/netns/tscni-none-lb");
  });
});

describe("loopback DEL and CHECK", () => {
  test("DEL sets lo down, twice is fine, CHECK then fails", async () => {
    const host = makeNetns("lbh");
    const cont = makeNetns("lbc");
    expect((await run(host, cont, "ADD", conf("1.1.0"))).code).toBe(0);
    expect((await run(host, cont, "CHECK", conf("1.1.0"))).code).toBe(0);
    const del = await run(host, cont, "DEL", conf("1.1.0"));
    expect(del.code).toBe(0);
    expect(del.stdout).toBe("");
    expect(loFlags(cont)).not.toContain("UP");
    expect((await run(host, cont, "DEL", conf("1.1.0"))).code).toBe(0);
    const check = await run(host, cont, "CHECK", conf("1.1.0"));
    expect(check.code).toBe(1);
    expect(check.json.msg).toBe("loopback interface is down");
  });

  test("DEL succeeds when the netns is already gone, or not given", async () => {
    const host = makeNetns("lbh");
    const cont = makeNetns("lbc");
    const path = cont.path;
    cont.cleanup();
    expect((await run(host, { path }, "DEL", conf("1.1.0"))).code).toBe(0);
    expect((await run(host, { path: "" }, "DEL", conf("1.1.0"))).code).toBe(0);
  });
});
