/**
 * sbr as a process in a throwaway host netns, chained after interfaces the test builds in a container
 * netns (veths to a "router" netns); `ip -j rule`, `ip -j route show table all` are the oracle, and
 * ping with interface counters shows where replies leave. Side by side with upstream's /usr/lib/cni/sbr.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { cleanupAll, makeNetns, type TempNetns } from "../../helpers/netns.ts";
import { runPlugin, UPSTREAM_DIR } from "../_run.ts";
import { haveUpstream } from "../main/link-helpers.ts";

afterEach(() => cleanupAll());

interface Rule {
  priority: number;
  src?: string;
  srclen?: number;
  table: string;
}

function sh(n: TempNetns, ...cmds: string[]) {
  for (const c of cmds) {
    const r = n.run(c.split(" "));
    if (r.code !== 0) throw new Error(`${c}: ${r.stderr}`);
  }
}

/** Container with eth0 10.81.1.2/24 (default route via 10.81.1.1) and eth1 10.81.2.2/24, peers in a router. */
function topology() {
  const host = makeNetns("sbh");
  const c = makeNetns("sbc");
  const router = makeNetns("sbr");
  for (const i of [1, 2]) {
    const r = c.run([
      "ip",
      "link",
      "add",
      `eth${i - 1}`,
      "type",
      "veth",
      "peer",
      "name",
      `p${i}`,
      "netns",
      router.name,
    ]);
    if (r.code !== 0) throw new Error(r.stderr);
    sh(c, `ip addr add 10.81.${i}.2/24 dev eth${i - 1}`, `ip link set eth${i - 1} up`);
    sh(router, `ip addr add 10.81.${i}.1/24 dev p${i}`, `ip link set p${i} up`);
  }
  sh(c, "ip link set lo up", "ip route add default via 10.81.1.1");
  sh(
    router,
    "ip link set lo up",
    "ip addr add 10.99.0.1/32 dev lo",
    "sysctl -qw net.ipv4.conf.all.rp_filter=0",
  );
  return { host, c, router };
}

const prev = (ifName: string, address: string, gateway?: string) => ({
  cniVersion: "1.0.0",
  interfaces: [{ name: ifName, sandbox: "x" }],
  ips: [{ interface: 0, address, ...(gateway ? { gateway } : {}) }],
});

function conf(extra: object = {}) {
  return { cniVersion: "1.0.0", name: "sbrnet", type: "sbr", ...extra };
}

function run(
  host: TempNetns,
  command: string,
  netns: string,
  config: object,
  ifName = "eth1",
  plugin = "sbr",
) {
  return runPlugin({
    plugin,
    hostNetns: host.name,
    env: { CNI_COMMAND: command, CNI_NETNS: netns, CNI_IFNAME: ifName, CNI_PATH: UPSTREAM_DIR },
    config,
  });
}

function rules(n: TempNetns): Rule[] {
  return (n.ip("-4", "rule", "show") as Rule[]).filter((r) => r.src !== undefined && r.src !== "all");
}

function tableRoutes(n: TempNetns, table: string) {
  return (
    n.ip("-4", "route", "show", "table", table) as { dst: string; gateway?: string; dev: string }[]
  ).map((r) => `${r.dst}${r.gateway ? ` via ${r.gateway}` : ""} dev ${r.dev}`);
}

function txPackets(n: TempNetns, dev: string): number {
  return n.ip("-s", "link", "show", "dev", dev)[0].stats64.tx.packets;
}

describe("sbr", () => {
  test("ADD: a rule from the address to table 100, the interface's routes moved there with a default route", async () => {
    const { host, c } = topology();
    const r = await run(host, "ADD", c.path, conf({ prevResult: prev("eth1", "10.81.2.2/24", "10.81.2.1") }));
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.json.ips).toEqual([{ interface: 0, address: "10.81.2.2/24", gateway: "10.81.2.1" }]);
    expect(rules(c)).toEqual([expect.objectContaining({ src: "10.81.2.2", table: "100" })]);
    expect(tableRoutes(c, "100").sort()).toEqual(["10.81.2.0/24 dev eth1", "default via 10.81.2.1 dev eth1"]);
    expect(tableRoutes(c, "main").sort()).toEqual([
      "10.81.1.0/24 dev eth0",
      "default via 10.81.1.1 dev eth0",
    ]);
    const chk = await run(
      host,
      "CHECK",
      c.path,
      conf({ prevResult: prev("eth1", "10.81.2.2/24", "10.81.2.1") }),
    );
    expect(chk.code).toBe(0);
  });

  test("replies leave through the interface the request came in on", async () => {
    const { host, c, router } = topology();
    const ping = () =>
      router.run(["ping", "-c", "3", "-i", "0.2", "-w", "4", "-I", "10.99.0.1", "10.81.2.2"]);
    // without sbr: the request comes in on eth1, the replies leave by the default route (eth0)
    router.run(["ip", "route", "add", "10.81.2.0/24", "dev", "p2"]);
    const before = { e0: txPackets(c, "eth0"), e1: txPackets(c, "eth1") };
    ping();
    expect(txPackets(c, "eth0") - before.e0).toBeGreaterThanOrEqual(3);
    const r = await run(host, "ADD", c.path, conf({ prevResult: prev("eth1", "10.81.2.2/24", "10.81.2.1") }));
    expect(r.code).toBe(0);
    const mid = { e0: txPackets(c, "eth0"), e1: txPackets(c, "eth1") };
    expect(ping().code).toBe(0);
    expect(txPackets(c, "eth1") - mid.e1).toBeGreaterThanOrEqual(3);
    expect(txPackets(c, "eth0") - mid.e0).toBeLessThan(3);
  });

  test("a second interface gets the next free table; an existing rule's table is skipped", async () => {
    const { host, c } = topology();
    sh(c, "ip rule add from 10.9.9.9 lookup 100");
    const r1 = await run(
      host,
      "ADD",
      c.path,
      conf({ prevResult: prev("eth1", "10.81.2.2/24", "10.81.2.1") }),
    );
    expect(r1.code).toBe(0);
    const r0 = await run(
      host,
      "ADD",
      c.path,
      conf({ prevResult: prev("eth0", "10.81.1.2/24", "10.81.1.1") }),
      "eth0",
    );
    expect(r0.code).toBe(0);
    const byTable = Object.fromEntries(rules(c).map((x) => [x.src, x.table]));
    expect(byTable).toEqual({ "10.9.9.9": "100", "10.81.2.2": "101", "10.81.1.2": "102" });
    expect(tableRoutes(c, "main")).toEqual([]);
  });

  test("table: only the rule, routes stay; DEL removes exactly that rule", async () => {
    const { host, c } = topology();
    const config = conf({ table: 500, prevResult: prev("eth1", "10.81.2.2/24", "10.81.2.1") });
    expect((await run(host, "ADD", c.path, config)).code).toBe(0);
    expect(rules(c)).toEqual([expect.objectContaining({ src: "10.81.2.2", table: "500" })]);
    expect(tableRoutes(c, "main")).toContain("10.81.2.0/24 dev eth1");
    sh(c, "ip rule add from 10.81.2.2 lookup 600");
    expect((await run(host, "DEL", c.path, config)).code).toBe(0);
    expect(rules(c)).toEqual([expect.objectContaining({ src: "10.81.2.2", table: "600" })]);
  });

  test("DEL removes the rules and the table's routes; idempotent; netns gone; interface gone", async () => {
    const { host, c } = topology();
    const config = conf({ prevResult: prev("eth1", "10.81.2.2/24", "10.81.2.1") });
    expect((await run(host, "ADD", c.path, config)).code).toBe(0);
    const d = await run(host, "DEL", c.path, config);
    expect(d.stdout + d.stderr).toBe("");
    expect(rules(c)).toEqual([]);
    expect(tableRoutes(c, "100")).toEqual([]);
    expect((await run(host, "DEL", c.path, config)).code).toBe(0);
    expect((await run(host, "DEL", c.path, config, "nosuch0")).code).toBe(0);
    const path = c.path;
    c.cleanup();
    expect((await run(host, "DEL", path, config)).code).toBe(0);
  });

  test("gateways (upstream main): a static gateway replaces prevResult's; bad lists are code 7", async () => {
    const { host, c } = topology();
    sh(c, "ip addr add 10.81.2.3/24 dev eth1");
    const config = conf({
      gateways: ["10.81.2.3", "fd00::1"],
      prevResult: prev("eth1", "10.81.2.2/24", "10.81.2.1"),
    });
    const r = await run(host, "ADD", c.path, config);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(tableRoutes(c, "100")).toContain("default via 10.81.2.3 dev eth1");
    for (const [gateways, msg] of [
      [["1.1.1.1", "2.2.2.2"], "gateways list contains multiple IPv4 addresses: 1.1.1.1 and 2.2.2.2"],
      [["x"], "invalid static gateway IP address: x"],
      [["1.1.1.1", "::1", "::2"], "gateways list cannot contain more than 2 entries (one IPv4, one IPv6)"],
    ] as const) {
      const bad = await run(
        host,
        "ADD",
        c.path,
        conf({ gateways, prevResult: prev("eth0", "10.81.1.2/24") }),
        "eth0",
      );
      expect(bad.json).toEqual({ cniVersion: "1.0.0", code: 7, msg });
    }
  });

  test("addSourceHints (upstream main): the subnet route stays in main with the address as source", async () => {
    const { host, c } = topology();
    sh(c, "ip route add 10.77.0.0/16 via 10.81.2.1");
    const config = conf({ addSourceHints: true, prevResult: prev("eth1", "10.81.2.2/24", "10.81.2.1") });
    const r = await run(host, "ADD", c.path, config);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const main = c.ip("-4", "route", "show", "table", "main") as {
      dst: string;
      dev: string;
      prefsrc?: string;
    }[];
    expect(main.filter((x) => x.dev === "eth1").map((x) => `${x.dst} ${x.prefsrc}`)).toEqual([
      "10.81.2.0/24 10.81.2.2",
    ]);
    expect(tableRoutes(c, "100").sort()).toEqual([
      "10.77.0.0/16 via 10.81.2.1 dev eth1",
      "10.81.2.0/24 dev eth1",
      "default via 10.81.2.1 dev eth1",
    ]);
  });

  test("errors: not chained, no addresses", async () => {
    const { host, c } = topology();
    const a = await run(host, "ADD", c.path, conf());
    expect(a.json.msg).toBe("This plugin must be called as chained plugin");
    const b = await run(host, "ADD", c.path, conf({ prevResult: { cniVersion: "1.0.0", interfaces: [] } }));
    expect(b.json.msg).toBe("No IP addresses supplied on interface: eth1");
    expect(rules(c)).toEqual([]);
  });

  test.skipIf(!haveUpstream("sbr"))(
    "dual-stack: one table per address, IPv6 too, same as upstream",
    async () => {
      const ours = topology();
      const theirs = topology();
      for (const t of [ours, theirs]) {
        sh(t.c, "ip -6 addr add fd00:81:2::2/64 dev eth1 nodad");
        sh(t.router, "ip -6 addr add fd00:81:2::1/64 dev p2 nodad");
      }
      const config = conf({
        prevResult: {
          cniVersion: "1.0.0",
          interfaces: [{ name: "eth1", sandbox: "x" }],
          ips: [
            { interface: 0, address: "10.81.2.2/24", gateway: "10.81.2.1" },
            { interface: 0, address: "fd00:81:2::2/64", gateway: "fd00:81:2::1" },
          ],
        },
      });
      const ro = await run(ours.host, "ADD", ours.c.path, config);
      expect(ro.stderr).toBe("");
      expect(ro.code).toBe(0);
      expect((await run(theirs.host, "ADD", theirs.c.path, config, "eth1", `${UPSTREAM_DIR}/sbr`)).code).toBe(
        0,
      );
      const view = (n: TempNetns) => ({
        rules4: rules(n).map((r) => `${r.src} ${r.table}`),
        rules6: (n.ip("-6", "rule", "show") as Rule[])
          .filter((r) => r.src && r.src !== "all")
          .map((r) => `${r.src} ${r.table}`),
        t100: tableRoutes(n, "100").sort(),
        t101: (n.ip("-6", "route", "show", "table", "101") as { dst: string; gateway?: string }[])
          .map((r) => `${r.dst} ${r.gateway ?? ""}`)
          .sort(),
        main6: (n.ip("-6", "route", "show", "table", "main") as { dst: string }[]).map((r) => r.dst).sort(),
      });
      const v = view(ours.c);
      expect(v.rules6).toEqual(["fd00:81:2::2 101"]);
      expect(v.t101).toContain("default fd00:81:2::1");
      expect(v).toEqual(view(theirs.c));
      expect((await run(ours.host, "DEL", ours.c.path, config)).code).toBe(0);
      expect(view(ours.c).rules6).toEqual([]);
      expect(view(ours.c).rules4).toEqual([]);
    },
  );

  test.skipIf(!haveUpstream("sbr"))("same rules and tables as upstream /usr/lib/cni/sbr", async () => {
    const ours = topology();
    const theirs = topology();
    const config = conf({ prevResult: prev("eth1", "10.81.2.2/24", "10.81.2.1") });
    expect((await run(ours.host, "ADD", ours.c.path, config)).code).toBe(0);
    const ru = await run(theirs.host, "ADD", theirs.c.path, config, "eth1", `${UPSTREAM_DIR}/sbr`);
    expect(ru.code).toBe(0);
    const view = (n: TempNetns) => ({
      rules: rules(n).map((r) => `${r.src} ${r.table}`),
      t100: tableRoutes(n, "100").sort(),
      main: tableRoutes(n, "main").sort(),
    });
    expect(view(ours.c)).toEqual(view(theirs.c));
    expect((await run(ours.host, "DEL", ours.c.path, config)).code).toBe(0);
    expect((await run(theirs.host, "DEL", theirs.c.path, config, "eth1", `${UPSTREAM_DIR}/sbr`)).code).toBe(
      0,
    );
    expect(rules(ours.c)).toEqual(rules(theirs.c));
  });
});
