import { afterEach, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { sysctlGet, sysctlGetIn, sysctlPath, sysctlSet, sysctlSetIn } from "../../src/netlink/sysctl.ts";
import { withNetns } from "../../src/ns/index.ts";
import { cleanupTestNetns, makeTestNetns } from "./_util.ts";

afterEach(cleanupTestNetns);

describe("sysctl", () => {
  test("keys: dotted or slashed, only under net", () => {
    expect(sysctlPath("net.ipv4.ip_forward")).toBe("/proc/sys/net/ipv4/ip_forward");
    expect(sysctlPath("net/ipv4/conf/eth0.100/forwarding")).toBe(
      "/proc/sys/net/ipv4/conf/eth0.100/forwarding",
    );
    for (const bad of [
      "../kernel/hostname",
      "net/../../etc/passwd",
      "net.ipv4/../../kernel/x",
      "/proc/sys/net/ipv4/ip_forward",
      "kernel.hostname",
      "net",
      "net..ipv4",
      "net/ipv4//ip_forward",
    ]) {
      expect(() => sysctlPath(bad)).toThrow(/EINVAL/);
    }
    expect(() => sysctlGet("../../etc/shadow")).toThrow(/^reading sysctl \.\.\/\.\.\/etc\/shadow: EINVAL/);
    expect(() => sysctlSet("kernel.hostname", "x")).toThrow(/only keys under net/);
    expect(() => sysctlGet("net.ipv4.no_such_key")).toThrow(/^reading sysctl net.ipv4.no_such_key: ENOENT/);
  });

  test("set in a netns changes that netns only", () => {
    const t = makeTestNetns();
    const rootBefore = readFileSync("/proc/sys/net/ipv4/ip_forward", "utf8");
    const key = "net.ipv4.ip_forward";
    // a new netns inherits ip_forward from the root netns: start this one at 0 with sysctl(8), the oracle
    expect(t.run(["sysctl", "-qw", `${key}=0`]).code).toBe(0);
    expect(sysctlGetIn(t.ns, key)).toBe("0");
    sysctlSetIn(t.ns, key, 1);
    expect(t.run(["cat", "/proc/sys/net/ipv4/ip_forward"]).stdout.trim()).toBe("1");
    expect(sysctlGetIn(t.ns, key)).toBe("1");
    expect(withNetns(t.ns, () => sysctlGet(key))).toBe("1");
    // the root netns is untouched
    expect(readFileSync("/proc/sys/net/ipv4/ip_forward", "utf8")).toBe(rootBefore);
    expect(sysctlGet(key)).toBe(rootBefore.trim());

    sysctlSetIn(t.ns, "net/ipv6/conf/lo/disable_ipv6", "1");
    expect(t.run(["cat", "/proc/sys/net/ipv6/conf/lo/disable_ipv6"]).stdout.trim()).toBe("1");
    expect(() => sysctlSetIn(t.ns, "net.ipv4.ip_forward", "banana")).toThrow(/^setting sysctl .* EINVAL/);
  });
});
