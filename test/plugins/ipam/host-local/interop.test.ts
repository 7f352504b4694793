/**
 * Our host-local and upstream's Go host-local (/usr/lib/cni/host-local) on one data dir: each reads
 * what the other wrote, and concurrent ADDs from both never hand out one address twice.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BUN, REPO, tempDir, UPSTREAM } from "./helpers.ts";

const haveUpstream = existsSync(UPSTREAM);
let wrapperDir: { dir: string; cleanup: () => void };
let OURS: string;

beforeAll(() => {
  wrapperDir = tempDir();
  OURS = join(wrapperDir.dir, "host-local");
  writeFileSync(OURS, `#!/bin/sh\nexec ${BUN} ${join(REPO, "src/plugins/ipam/host-local/main.ts")} "$@"\n`);
  chmodSync(OURS, 0o755);
});
afterAll(() => wrapperDir.cleanup());

let tmp: { dir: string; cleanup: () => void };
beforeEach(() => {
  tmp = tempDir();
});
afterEach(() => tmp.cleanup());

interface Run {
  code: number;
  out: string;
}

async function run(
  bin: string,
  verb: string,
  stdin: string,
  containerID: string,
  ifName = "eth0",
): Promise<Run> {
  const proc = Bun.spawn([bin], {
    env: {
      CNI_COMMAND: verb,
      CNI_CONTAINERID: containerID,
      CNI_NETNS: "/var/run/netns/none",
      CNI_IFNAME: ifName,
      CNI_PATH: "/usr/lib/cni",
      PATH: process.env.PATH ?? "/usr/bin:/bin",
    },
    stdin: new TextEncoder().encode(stdin),
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
  return { code, out };
}

/** Upstream 1.1.1 speaks up to CNI 1.0.0. */
function netconf(subnet = "10.20.0.0/24"): string {
  return JSON.stringify({
    cniVersion: "1.0.0",
    name: "interop",
    type: "bridge",
    ipam: { type: "host-local", dataDir: tmp.dir, ranges: [[{ subnet }]] },
  });
}

function ipOf(r: Run): string {
  expect(r.code).toBe(0);
  return JSON.parse(r.out).ips[0].address;
}

function reservedFiles(): string[] {
  return readdirSync(join(tmp.dir, "interop")).filter((n) => /^[0-9a-f.:]+$/.test(n));
}

describe.skipIf(!haveUpstream)("host-local interop with upstream", () => {
  test("upstream CHECK and DEL work on our allocation; round robin continues across both", async () => {
    const c = netconf();
    expect(ipOf(await run(OURS, "ADD", c, "ours1"))).toBe("10.20.0.2/24");
    expect(readFileSync(join(tmp.dir, "interop", "10.20.0.2"), "utf8")).toBe("ours1\r\neth0");
    expect((await run(UPSTREAM, "CHECK", c, "ours1")).code).toBe(0);
    expect(ipOf(await run(UPSTREAM, "ADD", c, "theirs1"))).toBe("10.20.0.3/24");
    expect((await run(UPSTREAM, "DEL", c, "ours1")).code).toBe(0);
    expect(reservedFiles()).toEqual(["10.20.0.3"]);
    expect(ipOf(await run(OURS, "ADD", c, "ours2"))).toBe("10.20.0.4/24");
  });

  test("our CHECK and DEL work on upstream's allocation", async () => {
    const c = netconf();
    expect(ipOf(await run(OURS, "ADD", c, "ours1"))).toBe("10.20.0.2/24");
    expect(ipOf(await run(UPSTREAM, "ADD", c, "theirs1"))).toBe("10.20.0.3/24");
    expect((await run(OURS, "CHECK", c, "theirs1")).code).toBe(0);
    const del = await run(OURS, "DEL", c, "theirs1");
    expect(del.code).toBe(0);
    expect(reservedFiles()).toEqual(["10.20.0.2"]);
    const check = await run(OURS, "CHECK", c, "theirs1");
    expect(check.code).toBe(1);
    expect(JSON.parse(check.out).msg).toContain("Failed to find address added by container theirs1");
  });

  test("64 concurrent ADDs of ours on one /24 get 64 distinct addresses", async () => {
    const c = netconf();
    const runs = await Promise.all(Array.from({ length: 64 }, (_, i) => run(OURS, "ADD", c, `c${i}`)));
    const ips = runs.map(ipOf);
    expect(new Set(ips).size).toBe(64);
    expect(reservedFiles().length).toBe(64);
  }, 60_000);

  test("32 of ours and 32 of upstream's concurrently on one /24: 64 distinct addresses", async () => {
    const c = netconf();
    const runs = await Promise.all(
      Array.from({ length: 64 }, (_, i) => run(i % 2 === 0 ? OURS : UPSTREAM, "ADD", c, `c${i}`)),
    );
    const ips = runs.map(ipOf);
    expect(new Set(ips).size).toBe(64);
    const files = reservedFiles();
    expect(files.length).toBe(64);
    // Every file says who holds it, and that is who was given the address.
    for (let i = 0; i < 64; i++) {
      const name = ips[i]!.split("/")[0]!;
      expect(readFileSync(join(tmp.dir, "interop", name), "utf8")).toBe(`c${i}\r\neth0`);
    }
    // And both sides can release everything again, each the other's too.
    await Promise.all(
      Array.from({ length: 64 }, (_, i) => run(i % 2 === 0 ? UPSTREAM : OURS, "DEL", c, `c${i}`)),
    );
    expect(reservedFiles()).toEqual([]);
  }, 60_000);
});
