/**
 * libcni driving the upstream Go plugins (/usr/lib/cni bridge, host-local, loopback) on the real kernel.
 * Both the "host" and the container side are throwaway netns; the root netns is never touched.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO_ROOT } from "./noop-env.ts";

// Every step spawns real plugin processes; a loaded machine makes them slow, never wrong.
setDefaultTimeout(60_000);

const BUN = join(REPO_ROOT, "node_modules/.bin/bun");
const DRIVER = join(REPO_ROOT, "test/libcni/drive-upstream.ts");
const haveUpstream = ["bridge", "host-local", "loopback"].every((p) => existsSync(join("/usr/lib/cni", p)));
const isRoot = process.getuid?.() === 0;

const tag = Math.random().toString(36).slice(2, 8);
const hostNs = `tscni-t-${tag}-h`;
const ctrNs = `tscni-t-${tag}-c`;
let tmp = "";

function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

const opts = () => ({
  cacheDir: join(tmp, "cache"),
  dataDir: join(tmp, "ipam"),
  bridge: `tsbr${tag}`.slice(0, 15),
  subnet: "10.77.0.0/24",
  netns: `/var/run/netns/${ctrNs}`,
  containerID: `ctr-${tag}`,
});

function drive(verb: string): { ok: boolean; result?: { ips?: { address: string }[] }; error?: unknown } {
  const out = sh("ip", ["netns", "exec", hostNs, BUN, DRIVER, verb, JSON.stringify(opts())]);
  return JSON.parse(out.trim().split("\n").pop() ?? "{}");
}

function ctrAddrs(dev: string): string[] {
  const r = spawnSync("ip", ["-n", ctrNs, "-j", "addr", "show", "dev", dev], { encoding: "utf8" });
  if (r.status !== 0) return [];
  const links = JSON.parse(r.stdout) as {
    addr_info: { family: string; local: string; prefixlen: number }[];
  }[];
  return links.flatMap((l) =>
    l.addr_info.filter((a) => a.family === "inet").map((a) => `${a.local}/${a.prefixlen}`),
  );
}

describe.skipIf(!haveUpstream || !isRoot)("libcni with upstream Go plugins", () => {
  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), "tscni-upstream-"));
    sh("ip", ["netns", "add", hostNs]);
    sh("ip", ["netns", "add", ctrNs]);
  });
  afterAll(() => {
    spawnSync("ip", ["netns", "del", ctrNs]);
    spawnSync("ip", ["netns", "del", hostNs]);
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  test("ADD, CHECK, DEL a bridge + host-local list (and loopback)", () => {
    const add = drive("add");
    expect(add.error).toBeUndefined();
    const address = add.result?.ips?.[0]?.address ?? "";
    expect(address).toMatch(/^10\.77\.0\.\d+\/24$/);
    expect(ctrAddrs("eth0")).toEqual([address]); // the kernel agrees
    expect(ctrAddrs("lo")).toEqual(["127.0.0.1/8"]);

    const cachePath = join(opts().cacheDir, "results", `tscni-upstream-${opts().containerID}-eth0`);
    const cached = JSON.parse(readFileSync(cachePath, "utf8"));
    expect(cached.kind).toBe("cniCacheV1");
    expect(JSON.parse(Buffer.from(cached.config, "base64").toString()).plugins[0].type).toBe("bridge");
    expect(cached.result.ips[0].address).toBe(address);

    expect(drive("check")).toEqual({ ok: true });

    expect(drive("del")).toEqual({ ok: true });
    expect(existsSync(cachePath)).toBe(false);
    expect(ctrAddrs("eth0")).toEqual([]);
    // host-local released the address
    expect(existsSync(join(opts().dataDir, "tscni-upstream", address.split("/")[0] ?? ""))).toBe(false);
  });
});
