/**
 * tuning: config resolution as pure functions, then the plugin as a process (host side in a throwaway
 * netns) against a veth whose container end lives in another throwaway netns. Oracles: `ip -j` and
 * /proc/sys/net read through `ip netns exec`.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { formatBackup, parseBackup } from "../../../src/plugins/meta/tuning/backup.ts";
import {
  canonicalMac,
  checkAllowlist,
  parseAllowlist,
  parseTuningConf,
  resolveSysctlKey,
  sysctlAllowed,
} from "../../../src/plugins/meta/tuning/config.ts";
import { codeOf } from "../../helpers/errors.ts";
import { cleanupAll, makeNetns, type TempNetns, tempDir } from "../../helpers/netns.ts";
import { runPlugin } from "../_run.ts";
import { addContainer, type Container, cniEnv } from "./veth-fixture.ts";

afterEach(() => cleanupAll());

describe("tuning config", () => {
  test("sysctl keys: dotted or slashed, IFNAME replaced after the dots became slashes", () => {
    expect(resolveSysctlKey("net.ipv4.conf.IFNAME.forwarding", "eth0.100")).toBe(
      "net/ipv4/conf/eth0.100/forwarding",
    );
    expect(resolveSysctlKey("net/ipv6/conf/IFNAME/accept_ra", "net1")).toBe("net/ipv6/conf/net1/accept_ra");
    expect(resolveSysctlKey("net.core.somaxconn", "eth0")).toBe("net/core/somaxconn");
  });

  test("keys outside /proc/sys/net or with .. are code 7", () => {
    for (const key of [
      "kernel.hostname",
      "net/../kernel/hostname",
      "net/ipv4/../../kernel/x",
      "net..core",
      "/proc/sys/net/core/somaxconn",
      "net",
    ]) {
      expect(codeOf(() => resolveSysctlKey(key, "eth0"))).toBe(7);
    }
  });

  test("allowlist: one regex a line, unanchored like Go's MatchString, bad regex is code 7", () => {
    const list = parseAllowlist("^net\\.core\\.somaxconn$\n\n  ^net\\.ipv4\\.conf\\.IFNAME\\.[a-z_]+$  \n");
    expect(list).toEqual(["^net\\.core\\.somaxconn$", "^net\\.ipv4\\.conf\\.IFNAME\\.[a-z_]+$"]);
    expect(sysctlAllowed("net.core.somaxconn", list)).toBe(true);
    expect(sysctlAllowed("net.ipv4.conf.IFNAME.arp_notify", list)).toBe(true);
    expect(sysctlAllowed("net.ipv4.ip_forward", list)).toBe(false);
    expect(sysctlAllowed("xnet.core.somaxconn", ["net.core"])).toBe(true);
    expect(codeOf(() => checkAllowlist(["net.core.somaxconn"], list))).toBeUndefined();
    expect(codeOf(() => checkAllowlist(["net.core.somaxconn", "net.ipv4.ip_forward"], list))).toBe(7);
    expect(codeOf(() => sysctlAllowed("x", ["("]))).toBe(7);
  });

  test("MAC precedence: config < CNI_ARGS MAC < runtimeConfig.mac < args.cni.mac", () => {
    const base = { cniVersion: "1.0.0", name: "n", type: "tuning", mac: "02:00:00:00:00:01" };
    const p = (o: object, env = "") => parseTuningConf(JSON.stringify({ ...base, ...o }), env).mac;
    expect(p({})).toBe("02:00:00:00:00:01");
    expect(p({}, "IgnoreUnknown=1;MAC=02-00-00-00-00-02")).toBe("02:00:00:00:00:02");
    expect(p({ runtimeConfig: { mac: "02:00:00:00:00:03" } }, "MAC=02:00:00:00:00:02")).toBe(
      "02:00:00:00:00:03",
    );
    expect(
      p({ runtimeConfig: { mac: "02:00:00:00:00:03" }, args: { cni: { mac: "02:00:00:00:00:04" } } }),
    ).toBe("02:00:00:00:00:04");
    expect(canonicalMac("0200.0000.00AB")).toBe("02:00:00:00:00:ab");
    expect(codeOf(() => p({ mac: "zz" }))).toBe(7);
    // Unknown CNI_ARGS without IgnoreUnknown: code 4, like upstream's LoadArgs.
    expect(codeOf(() => p({}, "FOO=1"))).toBe(4);
  });

  test("args.cni overrides every attribute and merges sysctls", () => {
    const conf = parseTuningConf(
      JSON.stringify({
        cniVersion: "1.0.0",
        name: "n",
        type: "tuning",
        mtu: 1400,
        sysctl: { "net.core.somaxconn": "100", "net.ipv4.ip_forward": "1" },
        args: {
          cni: {
            mtu: 1300,
            promisc: true,
            allmulti: false,
            txQLen: 0,
            sysctl: { "net.core.somaxconn": "200" },
          },
        },
      }),
      "",
    );
    expect(conf.mtu).toBe(1300);
    expect(conf.promisc).toBe(true);
    expect(conf.allmulti).toBe(false);
    expect(conf.txQLen).toBe(0);
    expect(conf.sysctl).toEqual({ "net.core.somaxconn": "200", "net.ipv4.ip_forward": "1" });
    expect(conf.dataDir).toBe("/run/cni/tuning");
  });

  test("backup files use upstream's MarshalIndent layout and read back", () => {
    const text = formatBackup({
      mac: "02:00:00:00:00:01",
      promisc: false,
      mtu: 1500,
      txQLen: 1000,
      network: "n",
    });
    expect(text).toBe(
      '{\n "mac": "02:00:00:00:00:01",\n "promisc": false,\n "mtu": 1500,\n "txQLen": 1000,\n "network": "n"\n}',
    );
    expect(parseBackup(text)).toEqual({
      mac: "02:00:00:00:00:01",
      promisc: false,
      mtu: 1500,
      txQLen: 1000,
      network: "n",
    });
    // An upstream file (no network key).
    expect(parseBackup('{\n "mtu": 9000\n}')).toEqual({ mtu: 9000 });
  });
});

// ---------------------------------------------------------------------------------------------------

interface Env {
  host: TempNetns;
  c: Container;
  dataDir: string;
}

function setup(): Env {
  const host = makeNetns("tuh");
  const c = addContainer(host, 0, 78);
  return { host, c, dataDir: tempDir("tscni-tuning-").path };
}

function config(e: Env, extra: Record<string, unknown>, version = "1.0.0"): Record<string, unknown> {
  return {
    cniVersion: version,
    name: "tunenet",
    type: "tuning",
    dataDir: e.dataDir,
    ...extra,
    prevResult: e.c.prevResult(version),
  };
}

function run(e: Env, command: string, conf: object, env: Record<string, string> = {}) {
  return runPlugin({
    plugin: "tuning",
    hostNetns: e.host.name,
    env: cniEnv(command, e.c, env),
    config: conf,
  });
}

function proc(n: TempNetns, key: string): string {
  const r = n.run(["cat", `/proc/sys/${key}`]);
  if (r.code !== 0) throw new Error(r.stderr);
  return r.stdout.trim();
}

// biome-ignore lint/suspicious/noExplicitAny: `ip -j` output
function eth0(e: Env): any {
  return e.c.ns.ip("-d", "link", "show", "eth0")[0];
}

describe("tuning plugin", () => {
  test("sets sysctls in the container netns, IFNAME substituted, and passes prevResult on", async () => {
    const e = setup();
    const before = proc(e.host, "net/core/somaxconn");
    const conf = config(e, {
      sysctl: { "net.ipv4.conf.IFNAME.arp_notify": "1", "net.core.somaxconn": "1234" },
    });
    const r = await run(e, "ADD", conf);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.json.interfaces).toEqual(e.c.prevResult().interfaces);
    expect(r.json.ips[0].address).toBe(`${e.c.contIP}/24`);
    expect(proc(e.c.ns, "net/ipv4/conf/eth0/arp_notify")).toBe("1");
    expect(proc(e.c.ns, "net/core/somaxconn")).toBe("1234");
    // Nothing in the host netns changed.
    expect(proc(e.host, "net/core/somaxconn")).toBe(before);
    // Sysctls alone leave no backup file.
    expect(existsSync(e.dataDir) ? readdirSync(e.dataDir) : []).toEqual([]);
  }, 20000);

  test("applies mac, mtu, promisc, allmulti and txQLen, and DEL restores them (twice is fine)", async () => {
    const e = setup();
    const orig = eth0(e);
    const mac = "02:aa:bb:cc:dd:ee";
    const conf = config(e, { mac, mtu: 1400, promisc: true, allmulti: true, txQLen: 20000 });
    const r = await run(e, "ADD", conf);
    expect(r.code).toBe(0);
    const now = eth0(e);
    expect(now.address).toBe(mac);
    expect(now.mtu).toBe(1400);
    expect(now.txqlen).toBe(20000);
    expect(now.flags).toContain("PROMISC");
    expect(now.flags).toContain("ALLMULTI");
    // The result carries the new MAC on the container interface only.
    expect(r.json.interfaces[1]).toEqual({ name: "eth0", mac, sandbox: e.c.ns.path });
    expect(r.json.interfaces[0].mac).toBeUndefined();

    const file = join(e.dataDir, "ctr0_eth0.json");
    expect(JSON.parse(readFileSync(file, "utf8"))).toEqual({
      mac: orig.address,
      promisc: false,
      mtu: orig.mtu,
      allmulti: false,
      txQLen: orig.txqlen,
      network: "tunenet",
    });

    for (let i = 0; i < 2; i++) {
      const d = await run(e, "DEL", conf);
      expect(d.stdout).toBe("");
      expect(d.code).toBe(0);
    }
    const after = eth0(e);
    expect(after.address).toBe(orig.address);
    expect(after.mtu).toBe(orig.mtu);
    expect(after.txqlen).toBe(orig.txqlen);
    expect(after.flags).not.toContain("PROMISC");
    expect(after.flags).not.toContain("ALLMULTI");
    expect(existsSync(file)).toBe(false);
  }, 20000);

  test("MAC from CNI_ARGS", async () => {
    const e = setup();
    const r = await run(e, "ADD", config(e, {}), { CNI_ARGS: "IgnoreUnknown=1;MAC=02:11:22:33:44:55" });
    expect(r.code).toBe(0);
    expect(eth0(e).address).toBe("02:11:22:33:44:55");
    expect(r.json.interfaces[1].mac).toBe("02:11:22:33:44:55");
  }, 20000);

  test("a key escaping /proc/sys/net is code 7 and nothing is changed", async () => {
    const e = setup();
    const before = proc(e.c.ns, "net/core/somaxconn");
    const mtu = eth0(e).mtu;
    for (const bad of [
      "net/../kernel/hostname",
      "kernel.hostname",
      "net.ipv4.conf.IFNAME/../../../kernel/x",
    ]) {
      const conf = config(e, { mtu: 1300, sysctl: { "net.core.somaxconn": "4321", [bad]: "x" } });
      const r = await run(e, "ADD", conf);
      expect(r.code).toBe(1);
      expect(r.json.code).toBe(7);
      expect(r.json.msg).toContain("invalid net sysctl key");
    }
    expect(proc(e.c.ns, "net/core/somaxconn")).toBe(before);
    expect(eth0(e).mtu).toBe(mtu);
    expect(existsSync(e.dataDir) ? readdirSync(e.dataDir) : []).toEqual([]);
  }, 20000);

  test("a failing ADD rolls back what it changed", async () => {
    const e = setup();
    const before = proc(e.c.ns, "net/core/somaxconn");
    const orig = eth0(e);
    // A multicast MAC is refused by the kernel after the sysctl is written and the backup saved.
    const conf = config(e, { mac: "01:00:5e:00:00:01", mtu: 1300, sysctl: { "net.core.somaxconn": "4321" } });
    const r = await run(e, "ADD", conf);
    expect(r.code).toBe(1);
    expect(proc(e.c.ns, "net/core/somaxconn")).toBe(before);
    expect(eth0(e).mtu).toBe(orig.mtu);
    expect(eth0(e).address).toBe(orig.address);
    expect(readdirSync(e.dataDir)).toEqual([]);
  }, 20000);

  test("ADD without prevResult is code 7", async () => {
    const e = setup();
    const conf = { cniVersion: "1.0.0", name: "tunenet", type: "tuning", dataDir: e.dataDir, mtu: 1300 };
    const r = await run(e, "ADD", conf);
    expect(r.json.code).toBe(7);
    expect(r.json.msg).toBe("Required prevResult missing");
  }, 20000);

  test("CHECK passes after ADD and fails after an outside change", async () => {
    const e = setup();
    const conf = config(e, { mtu: 1400, allmulti: true, sysctl: { "net.ipv4.conf.IFNAME.arp_notify": "1" } });
    expect((await run(e, "ADD", conf)).code).toBe(0);
    const ok = await run(e, "CHECK", conf);
    expect(ok.stdout).toBe("");
    expect(ok.code).toBe(0);

    e.c.ns.run(["sh", "-c", "echo 0 > /proc/sys/net/ipv4/conf/eth0/arp_notify"]);
    const badSysctl = await run(e, "CHECK", conf);
    expect(badSysctl.code).toBe(1);
    expect(badSysctl.json.msg).toContain("arp_notify");

    e.c.ns.run(["sh", "-c", "echo 1 > /proc/sys/net/ipv4/conf/eth0/arp_notify"]);
    e.c.ns.run(["ip", "link", "set", "eth0", "mtu", "1450"]);
    const badMtu = await run(e, "CHECK", conf);
    expect(badMtu.code).toBe(1);
    expect(badMtu.json.msg).toContain("MTU of eth0 is 1400, current value is 1450");
  }, 20000);

  test("DEL after the container netns is gone just removes the backup", async () => {
    const e = setup();
    const conf = config(e, { mtu: 1300 });
    expect((await run(e, "ADD", conf)).code).toBe(0);
    expect(readdirSync(e.dataDir)).toEqual(["ctr0_eth0.json"]);
    e.c.ns.cleanup();
    const d = await run(e, "DEL", conf);
    expect(d.stdout).toBe("");
    expect(d.code).toBe(0);
    expect(readdirSync(e.dataDir)).toEqual([]);
  }, 20000);

  test("DEL removes the temp file of an ADD killed between its write and rename (no backup yet)", async () => {
    const e = setup();
    const conf = config(e, { mtu: 1300 });
    mkdirSync(e.dataDir, { recursive: true });
    writeFileSync(join(e.dataDir, "ctr0_eth0.json.tmp"), '{\n "mtu": 15');
    const d = await run(e, "DEL", conf);
    expect(d.code).toBe(0);
    expect(readdirSync(e.dataDir)).toEqual([]);
    // with a backup too: both go, the link gets its MTU back
    expect((await run(e, "ADD", conf)).code).toBe(0);
    writeFileSync(join(e.dataDir, "ctr0_eth0.json.tmp"), "");
    expect((await run(e, "DEL", conf)).code).toBe(0);
    expect(readdirSync(e.dataDir)).toEqual([]);
  }, 20000);

  test("GC removes only this network's backups of attachments no longer valid", async () => {
    const e = setup();
    const conf = config(e, { mtu: 1300 }, "1.1.0");
    for (const id of ["keep", "stale"]) {
      expect((await run(e, "ADD", conf, { CNI_CONTAINERID: id })).code).toBe(0);
    }
    const other = { ...conf, name: "othernet" };
    expect((await run(e, "ADD", other, { CNI_CONTAINERID: "foreign" })).code).toBe(0);
    expect(readdirSync(e.dataDir).sort()).toEqual(["foreign_eth0.json", "keep_eth0.json", "stale_eth0.json"]);

    const gc = {
      cniVersion: "1.1.0",
      name: "tunenet",
      type: "tuning",
      dataDir: e.dataDir,
      "cni.dev/valid-attachments": [{ containerID: "keep", ifname: "eth0" }],
    };
    const r = await runPlugin({
      plugin: "tuning",
      hostNetns: e.host.name,
      env: { CNI_COMMAND: "GC" },
      config: gc,
    });
    expect(r.stdout).toBe("");
    expect(r.code).toBe(0);
    expect(readdirSync(e.dataDir).sort()).toEqual(["foreign_eth0.json", "keep_eth0.json"]);
  }, 20000);

  test("upstream's tuning restores from our backup file", async () => {
    const e = setup();
    const mtu = eth0(e).mtu;
    const conf = config(e, { mtu: 1280 });
    expect((await run(e, "ADD", conf)).code).toBe(0);
    expect(eth0(e).mtu).toBe(1280);
    const d = await runPlugin({
      plugin: "/usr/lib/cni/tuning",
      hostNetns: e.host.name,
      env: cniEnv("DEL", e.c),
      config: conf,
    });
    expect(d.code).toBe(0);
    expect(eth0(e).mtu).toBe(mtu);
    expect(readdirSync(e.dataDir)).toEqual([]);
  }, 20000);
});
