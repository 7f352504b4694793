/**
 * Torn and hostile state (issue 18 §3) in host-local's store: what a power loss leaves (empty, truncated,
 * garbage files), a store dir that is a symlink out of the data dir, a lock file left by a dead process,
 * a read-only and a full data dir (tiny tmpfs: ENOSPC). ADD fails with a clear CNI error or succeeds with
 * an address nobody else holds; DEL always succeeds; nothing is written out of the data dir.
 * host-local runs in-process through skel (it touches no netns).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadPlugin } from "../../src/cli/registry.ts";
import { pluginMainWith } from "../../src/skel/core.ts";
import { cleanupAll, tempDir } from "../helpers/netns.ts";

afterAll(cleanupAll);

const NET = "tornnet";

async function hostLocal(verb: string, dataDir: string, id = "ctr1") {
  const plugin = await loadPlugin("host-local");
  if (!plugin) throw new Error("no host-local");
  let stdout = "";
  const code = await pluginMainWith(
    { readStdin: () => new Uint8Array(), write: () => {}, stdinIsTerminal: () => false },
    plugin,
    {
      env: {
        CNI_COMMAND: verb,
        CNI_CONTAINERID: id,
        CNI_NETNS: "/proc/self/ns/net",
        CNI_IFNAME: "eth0",
        CNI_PATH: "/x",
      },
      stdin: JSON.stringify({
        cniVersion: "1.1.0",
        name: NET,
        type: "torn",
        ipam: { type: "host-local", ranges: [[{ subnet: "10.77.0.0/29" }]], dataDir },
      }),
      stdout: (t) => {
        stdout += t;
      },
      stderr: () => {},
    },
  );
  const json = stdout ? JSON.parse(stdout) : undefined;
  if (code === 1) {
    expect(typeof json.code).toBe("number");
    expect(json.msg).not.toMatch(/TypeError|Cannot read|is not a function/);
    expect(stdout).not.toMatch(/\n\s+at /);
  }
  return { code, json };
}

/** The reservation files (IP-named) of the network's store. */
function reservations(dataDir: string): string[] {
  const dir = join(dataDir, NET);
  return existsSync(dir)
    ? readdirSync(dir)
        .filter((f) => /^[0-9.]+$/.test(f))
        .sort()
    : [];
}

function sh(...cmd: string[]): void {
  const p = Bun.spawnSync(cmd, { stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`${cmd.join(" ")}: ${p.stderr}`);
}

/** A tmpfs at a temp dir (options: size, ro), unmounted after `fn`. */
async function withTmpfs<T>(
  opts: string,
  fn: (dir: string) => Promise<T>,
  prep?: (dir: string) => void,
): Promise<T> {
  const dir = tempDir("tscni-torn-mnt-").path;
  sh("mount", "-t", "tmpfs", "-o", opts, "tmpfs", dir);
  try {
    prep?.(dir);
    return await fn(dir);
  } finally {
    sh("umount", "-l", dir);
  }
}

const GARBAGE = [
  ["empty", ""],
  ["truncated", "ctr"],
  ["binary", "\u0000\u00ff\u0001garbage\r\n\r\n\r\n"],
] as const;

describe("torn store files", () => {
  for (const [what, content] of GARBAGE) {
    test(`a reservation file that is ${what}: ADD takes another address, DELs succeed`, async () => {
      const data = tempDir("tscni-torn-").path;
      mkdirSync(join(data, NET));
      writeFileSync(join(data, NET, "10.77.0.2"), content);
      const a = await hostLocal("ADD", data);
      expect(a.code).toBe(0);
      expect(a.json.ips[0].address).not.toBe("10.77.0.2/29");
      expect((await hostLocal("DEL", data)).code).toBe(0);
      expect(reservations(data)).toEqual(["10.77.0.2"]); // not ours: left as found
      expect((await hostLocal("DEL", data, "ctr")).code).toBe(0);
    });
  }

  test("garbage index, bucket, last_reserved_ip and lock files: ADD and DEL work, the index is rebuilt", async () => {
    const data = tempDir("tscni-torn-").path;
    const dir = join(data, NET);
    mkdirSync(dir);
    expect((await hostLocal("ADD", data, "ctrA")).code).toBe(0);
    for (const f of readdirSync(dir).filter((n) => !/^[0-9.]+$/.test(n)))
      writeFileSync(join(dir, f), "\u0000\u0001not what was written");
    writeFileSync(join(dir, "last_reserved_ip.0"), "banana");
    const b = await hostLocal("ADD", data, "ctrB");
    expect(b.code).toBe(0);
    expect(reservations(data)).toHaveLength(2); // two owners, two addresses
    expect((await hostLocal("DEL", data, "ctrA")).code).toBe(0);
    expect((await hostLocal("DEL", data, "ctrB")).code).toBe(0);
    expect(reservations(data)).toEqual([]);
  });

  test("a store dir that is a symlink out of the data dir: nothing is written through it", async () => {
    const data = tempDir("tscni-torn-").path;
    const outside = tempDir("tscni-torn-out-").path;
    symlinkSync(outside, join(data, NET));
    const a = await hostLocal("ADD", data);
    expect(a.code).toBe(1);
    expect(a.json.code).toBe(5);
    expect(a.json.msg).toContain("is a symlink");
    expect((await hostLocal("DEL", data)).code).toBe(0);
    expect(readdirSync(outside)).toEqual([]);
  });
});

describe("read-only and full data dirs", () => {
  test("a read-only data dir: ADD fails with an I/O error naming the path, DEL succeeds", async () => {
    await withTmpfs("ro,size=64k", async (data) => {
      const a = await hostLocal("ADD", data);
      expect(a.code).toBe(1);
      expect(a.json.msg).toMatch(/EROFS|read-only/i);
      expect(a.json.msg).toContain(data);
      expect((await hostLocal("DEL", data)).code).toBe(0);
    });
  });

  test("a full data dir (ENOSPC): ADD fails clearly and leaves no reservation, DEL succeeds", async () => {
    await withTmpfs(
      "size=4k,nr_inodes=8",
      async (data) => {
        const a = await hostLocal("ADD", data);
        expect(a.code).toBe(1);
        expect(a.json.msg).toMatch(/ENOSPC|no space/i);
        expect(reservations(data)).toEqual([]);
        expect((await hostLocal("DEL", data)).code).toBe(0);
      },
      (dir) => {
        // fill the tmpfs's one page and most inodes
        try {
          writeFileSync(join(dir, "fill"), Buffer.alloc(4096, 1));
        } catch {}
        for (let i = 0; i < 8; i++)
          try {
            writeFileSync(join(dir, `f${i}`), "");
          } catch {}
      },
    );
  });

  test("ADD then DEL twice: both DELs succeed and no reservation is left", async () => {
    const data = tempDir("tscni-torn-").path;
    expect((await hostLocal("ADD", data)).code).toBe(0);
    expect(readFileSync(join(data, NET, reservations(data)[0] ?? "x"), "utf8")).toContain("ctr1");
    expect((await hostLocal("DEL", data)).code).toBe(0);
    expect((await hostLocal("DEL", data)).code).toBe(0);
    expect(reservations(data)).toEqual([]);
  });
});
