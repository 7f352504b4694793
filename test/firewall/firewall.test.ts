import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { findTool, runTool, toolArgv } from "../../src/firewall/exec.ts";
import { iptablesRestore, iptablesSave, parseSave, splitRule } from "../../src/firewall/iptables.ts";
import { nftApply, nftJSON, nftQuote } from "../../src/firewall/nft.ts";
import { CniError } from "../../src/spec/errors.ts";

function sh(...argv: string[]): string {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

describe("pure helpers", () => {
  test("finds tools in PATH or sbin and wraps a netns in nsenter", () => {
    expect(findTool("nft")).toMatch(/\/nft$/);
    expect(() => findTool("no-such-tool-tscni")).toThrow(CniError);
    const argv = toolArgv("nft", ["list", "ruleset"], "/var/run/netns/x");
    expect(argv[0]).toMatch(/\/nsenter$/);
    expect(argv.slice(1, 3)).toEqual(["--net=/var/run/netns/x", "--"]);
    expect(argv.slice(-2)).toEqual(["list", "ruleset"]);
  });

  test("nftQuote refuses quotes and control characters", () => {
    expect(nftQuote("a b")).toBe('"a b"');
    expect(() => nftQuote('a"b')).toThrow(CniError);
    expect(() => nftQuote("a\nb")).toThrow(CniError);
  });

  test("splitRule undoes iptables-save quoting", () => {
    expect(splitRule('-A X -m comment --comment "name: \\"n\\" id: \\"c\\"" -j Y')).toEqual([
      "-A",
      "X",
      "-m",
      "comment",
      "--comment",
      'name: "n" id: "c"',
      "-j",
      "Y",
    ]);
    expect(splitRule('-A X --comment ""')).toEqual(["-A", "X", "--comment", ""]);
  });
});

describe("in a throwaway netns", () => {
  let nsName = "";
  let netnsPath = "";

  beforeEach(() => {
    nsName = `tscni-t-${Math.random().toString(36).slice(2, 10)}`;
    sh("ip", "netns", "add", nsName);
    netnsPath = `/var/run/netns/${nsName}`;
  });

  afterEach(() => {
    spawnSync("ip", ["netns", "del", nsName]);
  });

  describe("exec", () => {
    test("runs inside the given netns", async () => {
      sh("ip", "-n", nsName, "link", "add", "tscniveth0", "type", "veth", "peer", "name", "tscniveth1");
      const out = await runTool("ip", ["-j", "link", "show"], { netnsPath });
      expect(out.exitCode).toBe(0);
      expect(out.stdout).toContain("tscniveth0");
      expect(sh("ip", "-j", "link", "show")).not.toContain("tscniveth0");
    });
  });

  describe("nft", () => {
    test("applies a script as one transaction and reads it back as JSON", async () => {
      await nftApply("add table inet tscni_test\nadd set inet tscni_test s { type ipv4_addr; }\n", {
        netnsPath,
      });
      await nftApply("add element inet tscni_test s { 10.1.2.3 }\n", { netnsPath });
      const objs = await nftJSON(["list", "set", "inet", "tscni_test", "s"], { netnsPath });
      const set = objs?.find((o) => "set" in o)?.set as { name: string; elem: unknown[] };
      expect(set.name).toBe("s");
      expect(set.elem).toEqual(["10.1.2.3"]);
      // The root netns has no such table: the script really ran in the throwaway one.
      expect(await nftJSON(["list", "table", "inet", "tscni_test"], { missingOk: true })).toBeUndefined();
    });

    test("a failing command rolls back the whole script and the error names what and why", async () => {
      await nftApply("add table inet tscni_test\n", { netnsPath });
      const err = await nftApply(
        "add set inet tscni_test s { type ipv4_addr; }\ndelete element inet tscni_test s { 10.9.9.9 }\n",
        { netnsPath, what: "testing rollback" },
      ).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CniError);
      expect((err as CniError).msg).toContain("testing rollback");
      expect((err as CniError).details).toContain("No such file or directory");
      const table = await nftJSON(["list", "table", "inet", "tscni_test"], { netnsPath });
      expect(table?.some((o) => "set" in o)).toBe(false);
    });

    test("missing objects: undefined with missingOk, an error without", async () => {
      expect(
        await nftJSON(["list", "table", "inet", "nope"], { netnsPath, missingOk: true }),
      ).toBeUndefined();
      await expect(nftJSON(["list", "table", "inet", "nope"], { netnsPath })).rejects.toThrow(/nope/);
    });
  });

  describe("iptables", () => {
    test("restore adds to the table without flushing it; save reads it", async () => {
      await iptablesRestore(4, "nat", [":TSCNI-A - [0:0]", "-A TSCNI-A -d 10.0.0.0/8 -j ACCEPT"], {
        netnsPath,
      });
      await iptablesRestore(
        4,
        "nat",
        [":TSCNI-B - [0:0]", '-A POSTROUTING -s 10.0.0.1/32 -m comment --comment "x \\"y\\"" -j TSCNI-B'],
        { netnsPath },
      );
      const saved = parseSave(await iptablesSave(4, "nat", { netnsPath }), "nat");
      expect(saved.chains.get("TSCNI-A")).toBe("-");
      expect(saved.chains.get("POSTROUTING")).toBe("ACCEPT");
      expect(saved.rules).toContain("-A TSCNI-A -d 10.0.0.0/8 -j ACCEPT");
      expect(saved.rules).toContain(
        '-A POSTROUTING -s 10.0.0.1/32 -m comment --comment "x \\"y\\"" -j TSCNI-B',
      );
      // Independent oracle: the root netns is untouched.
      expect(sh("iptables-save", "-t", "nat")).not.toContain("TSCNI-A");
    });

    test("IPv6 goes to ip6tables; a bad line fails the whole restore with the tool's message", async () => {
      await iptablesRestore(6, "nat", [":TSCNI-6 - [0:0]", "-A TSCNI-6 -d fd00::/64 -j ACCEPT"], {
        netnsPath,
      });
      expect(parseSave(await iptablesSave(6, "nat", { netnsPath }), "nat").rules).toEqual([
        "-A TSCNI-6 -d fd00::/64 -j ACCEPT",
      ]);
      const err = await iptablesRestore(6, "nat", [":TSCNI-7 - [0:0]", "-X TSCNI-NONE"], {
        netnsPath,
        what: "testing failure",
      }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CniError);
      expect((err as CniError).message).toContain("testing failure");
      expect((err as CniError).details).toMatch(/line \d+ failed/);
      expect(parseSave(await iptablesSave(6, "nat", { netnsPath }), "nat").chains.has("TSCNI-7")).toBe(false);
    });
  });
});
