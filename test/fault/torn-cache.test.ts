/**
 * Torn state outside host-local's store (issue 18 §3):
 *
 * - libcni's result cache (`<cacheDir>/results/<net>-<id>-<ifname>`) as a power loss leaves it: empty,
 *   truncated, binary garbage, JSON of another kind, a result that does not decode. Through our libcni with
 *   exec'd plugins: CHECK fails with a CNI error (no crash, the attachment stays), DEL still succeeds, releases
 *   the address and removes the file (upstream libcni ≥ 1.2, containernetworking/cni#1072), a new ADD works;
 *   GC skips such a file and succeeds.
 * - host-local's lock file held by another process (flock, as a second runtime or a plugin stuck in its
 *   critical section would hold it): ADD waits; when the holder dies by SIGKILL the kernel releases the
 *   lock and the ADD completes.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CNIConfig } from "../../src/libcni/api.ts";
import { CniError } from "../../src/spec/errors.ts";
import type { NetConfList } from "../../src/spec/types.ts";
import { cleanupAll, makeNetns, tempDir } from "../helpers/netns.ts";
import { chainBin } from "./chain-kit.ts";

afterAll(cleanupAll);

const NET = "torncache";

function kit() {
  const base = tempDir("tscni-torncache-").path;
  const ipam = join(base, "ipam");
  const cache = join(base, "cache");
  const list = {
    cniVersion: "1.1.0",
    name: NET,
    plugins: [
      {
        type: "host-local",
        ipam: { type: "host-local", dataDir: ipam, ranges: [[{ subnet: "10.81.0.0/29" }]] },
      },
    ],
  } as unknown as NetConfList;
  const cont = makeNetns("tcc");
  const cni = new CNIConfig({ path: [chainBin("installed")], cacheDir: cache });
  const rt = { containerID: "ctr1", netNS: cont.path, ifName: "eth0" };
  const file = join(cache, "results", `${NET}-ctr1-eth0`);
  const held = () =>
    existsSync(join(ipam, NET)) ? readdirSync(join(ipam, NET)).filter((f) => /^[0-9.]+$/.test(f)) : [];
  return { ipam, cache, list, cni, rt, file, held };
}

async function failure(p: Promise<unknown>): Promise<CniError> {
  try {
    await p;
  } catch (err) {
    return err as CniError;
  }
  throw new Error("expected a failure");
}

const TORN: [string, (valid: string) => string | Uint8Array][] = [
  ["empty", () => ""],
  ["truncated", (v) => v.slice(0, Math.floor(v.length / 2))],
  ["binary garbage", () => new Uint8Array([0, 0xff, 0xfe, 1, 2, 0x7b, 0x22])],
  ["JSON of another kind", () => JSON.stringify({ kind: "somethingElse", result: 42 })],
  [
    "a cniCacheV1 entry whose result does not decode",
    (v) =>
      JSON.stringify({ ...JSON.parse(v), result: { cniVersion: "1.1.0", ips: [{ address: "banana" }] } }),
  ],
  ["a legacy result with a version nobody knows", () => JSON.stringify({ cniVersion: "9.9.9", ips: "x" })],
];

describe("torn libcni result cache", () => {
  for (const [what, tear] of TORN) {
    test(`${what}: CHECK fails cleanly, DEL succeeds and releases, a new ADD works`, async () => {
      const k = kit();
      await k.cni.addNetworkList(k.list, k.rt);
      expect(k.held()).toHaveLength(1);
      writeFileSync(k.file, tear(readFileSync(k.file, "utf8")));

      const check = await failure(k.cni.checkNetworkList(k.list, k.rt));
      expect(check).toBeInstanceOf(CniError);
      expect(check.msg).not.toMatch(/TypeError|Cannot read|is not a function|undefined/);
      expect(k.held()).toHaveLength(1); // CHECK destroys nothing

      await k.cni.gcNetworkList(k.list, { validAttachments: [{ containerID: "ctr1", ifname: "eth0" }] });
      expect(k.held()).toHaveLength(1);

      await k.cni.delNetworkList(k.list, k.rt);
      expect(k.held()).toEqual([]);
      expect(existsSync(k.file)).toBe(false);

      const again = await k.cni.addNetworkList(k.list, k.rt);
      expect(again.ips?.[0]?.address).toMatch(/^10\.81\.0\.[2-6]\/29$/); // host-local goes round: .3 after .2
      await k.cni.delNetworkList(k.list, k.rt);
      expect(k.held()).toEqual([]);
    });
  }

  test("a torn cache file with no ADD behind it (killed before the plugin ran): DEL succeeds, GC too", async () => {
    const k = kit();
    mkdirSync(join(k.cache, "results"), { recursive: true });
    writeFileSync(k.file, "");
    writeFileSync(join(k.cache, "results", `${NET}-other-eth0`), '{"kind":');
    await k.cni.gcNetworkList(k.list, { validAttachments: [] });
    await k.cni.delNetworkList(k.list, k.rt);
    expect(existsSync(k.file)).toBe(false);
    expect(k.held()).toEqual([]);
  });
});

describe("host-local lock held by another process", () => {
  test("ADD waits for the holder; its SIGKILL releases the flock and the ADD completes", async () => {
    const k = kit();
    mkdirSync(join(k.ipam, NET), { recursive: true });
    const lock = join(k.ipam, NET, "lock");
    writeFileSync(lock, "");
    // one process takes LOCK_EX on the lock file and sleeps holding it
    const holder = Bun.spawn(
      [
        "python3",
        "-c",
        "import fcntl,sys,time; f=open(sys.argv[1],'a'); fcntl.flock(f, fcntl.LOCK_EX); time.sleep(60)",
        lock,
      ],
      { stdout: "ignore", stderr: "ignore" },
    );
    try {
      // the lock is taken once flock -n fails
      const deadline = Date.now() + 5000;
      while (Bun.spawnSync(["flock", "--nonblock", lock, "true"]).exitCode === 0) {
        if (Date.now() > deadline) throw new Error("flock did not take the lock");
        await Bun.sleep(20);
      }
      let done = false;
      const add = k.cni.addNetworkList(k.list, k.rt).finally(() => {
        done = true;
      });
      await Bun.sleep(700);
      expect(done).toBe(false); // blocked on the lock
      expect(k.held()).toEqual([]);
      holder.kill("SIGKILL");
      await holder.exited;
      const r = await add;
      expect(r.ips?.[0]?.address).toBe("10.81.0.2/29");
      expect(k.held()).toEqual(["10.81.0.2"]);
      await k.cni.delNetworkList(k.list, k.rt);
      expect(k.held()).toEqual([]);
    } finally {
      holder.kill("SIGKILL");
    }
  }, 30_000);
});
