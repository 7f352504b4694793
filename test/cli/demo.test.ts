/**
 * `tscni demo` end to end, run inside a throwaway "host" netns with its state under a temp dir:
 * a netns joined to the built-in network, a ping across the bridge, and nothing left afterwards.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { buildTscni } from "../helpers/build.ts";
import { cleanupAll, makeNetns, type TempNetns, tempDir } from "../helpers/netns.ts";

let exe = "";
let host: TempNetns;
const state = tempDir("demo-state");

/** The plugins' links for CNI_PATH: in a temp dir, not the default /run/tscni/bin. */
const bin = tempDir("demo-bin");

beforeAll(() => {
  exe = buildTscni();
  Bun.spawnSync([exe, "install", bin.path]);
  host = makeNetns("demo-host");
}, 120_000);

afterAll(() => {
  cleanupAll();
  state.cleanup();
  bin.cleanup();
});

/**
 * Runs in the host netns with nsenter, not `ip netns exec`: that one gives the command a private mount
 * namespace, so the netns mount `--keep` leaves would vanish with the process.
 */
function inHost(args: string[], env: Record<string, string> = {}) {
  const p = Bun.spawnSync(["nsenter", `--net=${host.path}`, ...args], {
    env: { PATH: process.env.PATH ?? "", CNI_PATH: bin.path, ...env },
    timeout: 60_000,
  });
  return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
}

function demoNetnsLeft(): string[] {
  return readdirSync("/var/run/netns").filter((n) => n.startsWith("tscni-demo-"));
}

describe("tscni demo", () => {
  test("attaches a netns, pings the gateway, and removes everything", () => {
    const before = demoNetnsLeft();
    const r = inHost([exe, "demo", "--state-dir", state.path]);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/address +10\.99\.99\.\d+\/24 on eth0, gateway 10\.99\.99\.1/);
    expect(r.out).toContain('"cniVersion": "1.1.0"');
    expect(r.out).toContain("3 received");
    expect(r.out).toContain("packets crossed");
    // nothing left: no demo netns, no links, no nft table, no reservation, no cache entry
    expect(demoNetnsLeft()).toEqual(before);
    expect(host.ip("link", "show").map((l: { ifname: string }) => l.ifname)).toEqual(["lo"]);
    expect(inHost(["nft", "list", "ruleset"]).out.trim()).toBe("");
    expect(existsSync(join(state.path, "networks", "tscni-demo"))).toBe(false);
    expect(readdirSync(join(state.path, "results"))).toEqual([]);
  });

  test("--keep leaves it attached, and `tscni del` cleans it up later", () => {
    const r = inHost([exe, "demo", "--keep", "--state-dir", state.path]);
    expect(r.code).toBe(0);
    const name = /creating network namespace (tscni-demo-\d+)/.exec(r.out)?.[1];
    expect(name).toBeDefined();
    try {
      const addrs = Bun.spawnSync(["ip", "-n", name!, "-j", "addr", "show", "eth0"]).stdout.toString();
      expect(addrs).toContain("10.99.99.");
      expect(r.out).toContain(`CNI_CACHE_DIR=${state.path} tscni del tscni-demo ${name}`);
      const env = { CNI_CACHE_DIR: state.path };
      expect(inHost([exe, "del", "tscni-demo", name!], env).code).toBe(0);
      expect(inHost([exe, "del", "tscni-demo-lo", name!, "-i", "lo"], env).code).toBe(0);
      expect(readdirSync(join(state.path, "results"))).toEqual([]);
      expect(readdirSync(join(state.path, "networks", "tscni-demo")).filter((f) => /^\d/.test(f))).toEqual(
        [],
      );
      const links = Bun.spawnSync(["ip", "-n", name!, "-j", "link", "show"]).stdout.toString();
      expect(JSON.parse(links).map((l: { ifname: string }) => l.ifname)).toEqual(["lo"]);
    } finally {
      if (name) Bun.spawnSync(["ip", "netns", "del", name]);
    }
  });
});
