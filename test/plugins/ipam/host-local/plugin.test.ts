import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import {
  existsSync,
  readdirSync,
  readFileSync,
  statSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { INDEX_FILE } from "../../../../src/plugins/ipam/host-local/files.ts";
import { plugin } from "../../../../src/plugins/ipam/host-local/index.ts";
import { bucketOf } from "../../../../src/plugins/ipam/host-local/store-index.ts";
import type { Result } from "../../../../src/spec/types.ts";
import { rejection } from "../../../helpers/errors.ts";
import { cmdArgs, conf, tempDir } from "./helpers.ts";

let tmp: { dir: string; cleanup: () => void };
let netDir: string;
beforeEach(() => {
  tmp = tempDir();
  netDir = join(tmp.dir, "testnet");
});
afterEach(() => tmp.cleanup());

const v4 = (extra: Record<string, unknown> = {}) => ({ ranges: [[{ subnet: "10.10.0.0/24", ...extra }]] });

async function add(stdin: string, id = "ctr1", ifName = "eth0", env = ""): Promise<Result> {
  return plugin.add(cmdArgs(stdin, id, ifName, env));
}

/** The CniError `fn` throws or rejects with (the verbs are sync or async). */

function reservations(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of readdirSync(netDir)) {
    if (name === "lock" || name.startsWith(INDEX_FILE) || name.startsWith("last_reserved_ip.")) continue;
    out[name] = readFileSync(join(netDir, name), "utf8");
  }
  return out;
}

describe("host-local plugin", () => {
  test("dual-stack ADD: one address per range set, routes, resolvConf DNS, upstream file format", async () => {
    const resolv = join(tmp.dir, "resolv.conf");
    writeFileSync(resolv, "nameserver 10.0.0.53\nsearch example.com\n");
    const stdin = conf(tmp.dir, {
      ranges: [[{ subnet: "10.10.0.0/24" }], [{ subnet: "fd10::/64" }]],
      routes: [{ dst: "0.0.0.0/0" }],
      resolvConf: resolv,
    });
    const r = await add(stdin);
    expect(r).toEqual({
      cniVersion: "1.1.0",
      ips: [
        { address: "10.10.0.2/24", gateway: "10.10.0.1" },
        { address: "fd10::2/64", gateway: "fd10::1" },
      ],
      routes: [{ dst: "0.0.0.0/0" }],
      dns: { nameservers: ["10.0.0.53"], search: ["example.com"] },
    });
    expect(reservations()).toEqual({ "10.10.0.2": "ctr1\r\neth0", "fd10::2": "ctr1\r\neth0" });
    expect(readFileSync(join(netDir, "last_reserved_ip.0"), "utf8")).toBe("10.10.0.2");
    expect(readFileSync(join(netDir, "last_reserved_ip.1"), "utf8")).toBe("fd10::2");
    expect(statSync(join(netDir, "10.10.0.2")).mode & 0o777).toBe(0o600);
    // Round robin: the next container gets .3 even after ctr1's .2 is released.
    await plugin.del(cmdArgs(stdin, "ctr1"));
    expect((await add(stdin, "ctr2")).ips?.[0]?.address).toBe("10.10.0.3/24");
  });

  test("exhaustion names the range set; STATUS reports it", async () => {
    const stdin = conf(tmp.dir, v4({ rangeStart: "10.10.0.2", rangeEnd: "10.10.0.3" }));
    await add(stdin, "a");
    await add(stdin, "b");
    const err = await rejection(() => add(stdin, "c"));
    expect(err.code).toBe(11);
    expect(err.msg).toBe(
      "failed to allocate for range 0: no IP addresses available in range set: 10.10.0.2-10.10.0.3",
    );
    const status = await rejection(() => plugin.status!(cmdArgs(stdin)));
    expect(status.code).toBe(50);
    expect(status.msg).toContain("10.10.0.2-10.10.0.3");
    await plugin.del(cmdArgs(stdin, "a"));
    await plugin.status!(cmdArgs(stdin));
  });

  test("STATUS: a data dir that cannot be written is code 50", async () => {
    const file = join(tmp.dir, "not-a-dir");
    writeFileSync(file, "");
    const err = await rejection(() => plugin.status!(cmdArgs(conf(file, v4()))));
    expect(err.code).toBe(50);
    expect(err.msg).toContain(file);
  });

  test("requested IPs: taken → 11 naming the IP, outside → 7, gateway → 7, partial allocations rolled back", async () => {
    const stdin = conf(tmp.dir, { ranges: [[{ subnet: "10.10.0.0/24" }], [{ subnet: "fd10::/64" }]] });
    const r = await add(stdin, "a", "eth0", "IP=10.10.0.50,fd10::50");
    expect(r.ips?.map((i) => i.address)).toEqual(["10.10.0.50/24", "fd10::50/64"]);
    const taken = await rejection(() => add(stdin, "b", "eth0", "IP=10.10.0.50"));
    expect(taken.code).toBe(11);
    expect(taken.msg).toContain("10.10.0.50");
    const outside = await rejection(() => add(stdin, "b", "eth0", "IP=10.99.0.5"));
    expect(outside.code).toBe(7);
    expect(outside.msg).toBe("failed to allocate all requested IPs: 10.99.0.5");
    const gw = await rejection(() => add(stdin, "b", "eth0", "IP=10.10.0.1"));
    expect(gw.code).toBe(7);
    // The IPv6 failure happens after the IPv4 reservation: nothing of b's may stay behind.
    const v6taken = await rejection(() => add(stdin, "b", "eth0", "IP=fd10::50"));
    expect(v6taken.msg).toStartWith("failed to allocate for range 1: requested IP address fd10::50");
    expect(Object.values(reservations()).filter((c) => c.startsWith("b"))).toEqual([]);
  });

  test("a second ADD for the same attachment is refused", async () => {
    const stdin = conf(tmp.dir, v4());
    await add(stdin);
    const err = await rejection(() => add(stdin));
    expect(err.msg).toContain("10.10.0.2 has been allocated to ctr1, duplicate allocation is not allowed");
  });

  test("DEL releases by (container, ifname), twice is fine, unknown is fine", async () => {
    const stdin = conf(tmp.dir, v4());
    await add(stdin, "a", "eth0");
    await add(stdin, "a", "net1");
    await plugin.del(cmdArgs(stdin, "a", "eth0"));
    expect(reservations()).toEqual({ "10.10.0.3": "a\r\nnet1" });
    await plugin.del(cmdArgs(stdin, "a", "eth0"));
    await plugin.del(cmdArgs(stdin, "never-added", "eth0"));
    expect(reservations()).toEqual({ "10.10.0.3": "a\r\nnet1" });
  });

  test("DEL falls back to files that hold only the container ID (pre-ifname format)", async () => {
    const stdin = conf(tmp.dir, v4());
    await add(stdin, "other");
    writeFileSync(join(netDir, "10.10.0.77"), "legacy\n");
    await plugin.del(cmdArgs(stdin, "legacy", "eth0"));
    expect(existsSync(join(netDir, "10.10.0.77"))).toBe(false);
    expect(Object.keys(reservations())).toEqual(["10.10.0.2"]);
  });

  test("CHECK finds the attachment's reservation, fails for an unknown one", async () => {
    const stdin = conf(tmp.dir, v4());
    await add(stdin);
    await plugin.check!(cmdArgs(stdin));
    const err = await rejection(() => plugin.check!(cmdArgs(stdin, "nobody")));
    expect(err.msg).toBe("host-local: Failed to find address added by container nobody");
  });

  test("GC releases exactly the reservations not in cni.dev/valid-attachments", async () => {
    const stdin = conf(tmp.dir, v4());
    await add(stdin, "keep", "eth0");
    await add(stdin, "keep", "net1");
    await add(stdin, "stale", "eth0");
    writeFileSync(join(netDir, "10.10.0.90"), "keep");
    writeFileSync(join(netDir, "10.10.0.91"), "gone");
    const gc = conf(tmp.dir, v4(), {
      "cni.dev/valid-attachments": [{ containerID: "keep", ifname: "eth0" }],
    });
    await plugin.gc!(cmdArgs(gc));
    expect(reservations()).toEqual({ "10.10.0.2": "keep\r\neth0", "10.10.0.90": "keep" });
    const missing = await rejection(() => plugin.gc!(cmdArgs(stdin)));
    expect(missing.code).toBe(7);
  });

  test("a store file not named by an IP is an error naming it, and nothing is touched", async () => {
    const stdin = conf(tmp.dir, v4());
    await add(stdin, "a");
    writeFileSync(join(netDir, "not-an-ip"), "x");
    const err = await rejection(() => plugin.del(cmdArgs(stdin, "a")));
    expect(err.code).toBe(5);
    expect(err.msg).toContain(join(netDir, "not-an-ip"));
    expect(reservations()).toEqual({ "10.10.0.2": "a\r\neth0", "not-an-ip": "x" });
  });

  test("garbage in last_reserved_ip starts over at the range start; a corrupt index is rebuilt", async () => {
    const stdin = conf(tmp.dir, v4());
    await add(stdin, "a");
    writeFileSync(join(netDir, "last_reserved_ip.0"), "garbage");
    writeFileSync(join(netDir, INDEX_FILE), "{not json");
    expect((await add(stdin, "b")).ips?.[0]?.address).toBe("10.10.0.3/24");
    await plugin.check!(cmdArgs(stdin, "a"));
    // The repaired index holds both, each in its container's bucket.
    const bucket = (id: string) =>
      JSON.parse(readFileSync(join(netDir, `${INDEX_FILE}.${bucketOf(id)}`), "utf8"));
    expect(bucket("a")).toContain("10.10.0.2");
    expect(bucket("b")).toContain("10.10.0.3");
  });

  test("the index follows files created and removed behind its back (as upstream does)", async () => {
    const stdin = conf(tmp.dir, v4());
    await add(stdin, "a");
    // An upstream plugin reserves for "x" and releases "a", without touching our index.
    writeFileSync(join(netDir, "10.10.0.40"), "x\r\neth0");
    unlinkSync(join(netDir, "10.10.0.2"));
    await plugin.check!(cmdArgs(stdin, "x"));
    expect((await rejection(() => plugin.check!(cmdArgs(stdin, "a")))).code).toBe(3);
    await plugin.del(cmdArgs(stdin, "x"));
    expect(reservations()).toEqual({});
    // Same name, other owner: the index entry for .5 says "b", the file now says "c".
    await add(stdin, "b", "eth0", "IP=10.10.0.5");
    writeFileSync(join(netDir, "10.10.0.5"), "c\r\neth0");
    await plugin.del(cmdArgs(stdin, "b"));
    expect(reservations()).toEqual({ "10.10.0.5": "c\r\neth0" });
    await plugin.del(cmdArgs(stdin, "c"));
    expect(reservations()).toEqual({});
  });

  test("an unchanged directory is answered from the index without reading other files", async () => {
    const stdin = conf(tmp.dir, v4());
    await add(stdin, "a");
    await add(stdin, "b");
    // Rewriting a file in place does not change the directory, so the index still says "a" owns .2
    // and a DEL for "z" finds nothing (a full scan, like upstream's, would release it).
    writeFileSync(join(netDir, "10.10.0.2"), "z\r\neth0");
    await plugin.del(cmdArgs(stdin, "z"));
    expect(reservations()["10.10.0.2"]).toBe("z\r\neth0");
    // ...and acting on "a" reads the file back, sees the mismatch, rebuilds and releases nothing of z's.
    await plugin.del(cmdArgs(stdin, "a"));
    expect(reservations()).toEqual({ "10.10.0.2": "z\r\neth0", "10.10.0.3": "b\r\neth0" });
    await plugin.del(cmdArgs(stdin, "z"));
    expect(reservations()).toEqual({ "10.10.0.3": "b\r\neth0" });
  });

  test("the index marks the directory's mtime; a change right after (same clock tick) is still seen", async () => {
    const stdin = conf(tmp.dir, v4());
    await add(stdin, "a");
    const header = JSON.parse(readFileSync(join(netDir, INDEX_FILE), "utf8"));
    expect(header.marked).toBe(true);
    expect(header.mtime).toBe(String(statSync(netDir, { bigint: true }).mtimeNs));
    // Within microseconds of our write, so within the same tick of a coarse clock.
    writeFileSync(join(netDir, "10.10.0.40"), "x\r\neth0");
    expect(String(statSync(netDir, { bigint: true }).mtimeNs)).not.toBe(header.mtime);
    await plugin.check!(cmdArgs(stdin, "x"));
  });

  test("without a mark, a header written in the same clock tick as the directory changed is not trusted blindly", async () => {
    const stdin = conf(tmp.dir, v4());
    await add(stdin, "a");
    // A foreign reservation, then make the index look exactly as if we had written it right before
    // that change within one coarse tick on a file system that kept no mark: same recorded mtime,
    // header no newer than the directory.
    writeFileSync(join(netDir, "10.10.0.40"), "x\r\neth0");
    unlinkSync(join(netDir, "10.10.0.2"));
    const headerPath = join(netDir, INDEX_FILE);
    const header = JSON.parse(readFileSync(headerPath, "utf8"));
    header.marked = false;
    header.mtime = String(statSync(netDir, { bigint: true }).mtimeNs);
    writeFileSync(headerPath, JSON.stringify(header));
    utimesSync(headerPath, new Date(2000, 0, 1), new Date(2000, 0, 1));
    await plugin.check!(cmdArgs(stdin, "x"));
    expect((await rejection(() => plugin.check!(cmdArgs(stdin, "a")))).code).toBe(3);
  });

  test("a fresh store's first ADD writes the header and its own bucket only; missing buckets read as empty", async () => {
    const stdin = conf(tmp.dir, v4());
    await add(stdin, "a");
    const indexFiles = () =>
      readdirSync(netDir)
        .filter((f) => f.startsWith(INDEX_FILE))
        .sort();
    expect(indexFiles()).toEqual([INDEX_FILE, `${INDEX_FILE}.${bucketOf("a")}`].sort());
    // Another container (another bucket, no file yet) is answered from the index, then gets its file.
    const other = ["b", "c", "d", "e"].find((id) => bucketOf(id) !== bucketOf("a")) as string;
    expect((await rejection(() => plugin.check!(cmdArgs(stdin, other)))).code).toBe(3);
    await add(stdin, other);
    expect(indexFiles()).toContain(`${INDEX_FILE}.${bucketOf(other)}`);
    expect(indexFiles()).toHaveLength(3);
    await plugin.check!(cmdArgs(stdin, "a"));
    await plugin.check!(cmdArgs(stdin, other));
    // A rebuild after a foreign change rewrites the bucket files that exist, emptied ones included.
    unlinkSync(join(netDir, "10.10.0.2"));
    await plugin.del(cmdArgs(stdin, other));
    expect(JSON.parse(readFileSync(join(netDir, `${INDEX_FILE}.${bucketOf("a")}`), "utf8"))).toEqual([]);
    expect(reservations()).toEqual({});
  });

  test("an unreadable index bucket is rebuilt", async () => {
    const stdin = conf(tmp.dir, v4());
    await add(stdin, "a");
    writeFileSync(join(netDir, `${INDEX_FILE}.${bucketOf("a")}`), "[1,2");
    await plugin.check!(cmdArgs(stdin, "a"));
    await plugin.del(cmdArgs(stdin, "a"));
    expect(reservations()).toEqual({});
  });
});
