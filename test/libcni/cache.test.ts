import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type CachedAttachment,
  cacheFilePath,
  deleteCachedAttachment,
  listCachedAttachments,
  readCachedAttachment,
  readCachedResultJSON,
  writeCachedAttachment,
} from "../../src/libcni/cache.ts";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "tscni-cache-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const config = new TextEncoder().encode('{"cniVersion":"1.0.0","name":"net1","plugins":[{"type":"noop"}]}');

function entry(over: Partial<CachedAttachment> = {}): CachedAttachment {
  return {
    networkName: "net1",
    containerID: "ctr1",
    ifName: "eth0",
    config,
    netns: "/var/run/netns/x",
    cniArgs: [["K8S_POD_NAME", "p"]],
    capabilityArgs: { portMappings: [{ hostPort: 80, containerPort: 8080, protocol: "tcp" }] },
    result: { cniVersion: "1.0.0", ips: [{ address: "10.0.0.2/24" }] },
    ...over,
  };
}

describe("result cache", () => {
  test("writes upstream's cniCacheV1 layout: path, key order, base64 config, 0700 dir, 0600 file", async () => {
    await writeCachedAttachment(dir, entry());
    const path = join(dir, "results", "net1-ctr1-eth0");
    expect(cacheFilePath(dir, entry())).toBe(path);
    const text = readFileSync(path, "utf8");
    const json = JSON.parse(text);
    expect(Object.keys(json)).toEqual([
      "kind",
      "containerId",
      "config",
      "ifName",
      "networkName",
      "netns",
      "cniArgs",
      "capabilityArgs",
      "result",
    ]);
    expect(json.kind).toBe("cniCacheV1");
    expect(Buffer.from(json.config, "base64").toString()).toBe(new TextDecoder().decode(config));
    expect(json.cniArgs).toEqual([["K8S_POD_NAME", "p"]]);
    expect(statSync(join(dir, "results")).mode & 0o777).toBe(0o700);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readdirSync(join(dir, "results"))).toEqual(["net1-ctr1-eth0"]); // no temp file left
  });

  test("omits empty optional fields like Go's omitempty", async () => {
    await writeCachedAttachment(dir, entry({ netns: "", cniArgs: [], capabilityArgs: {}, result: {} }));
    const json = JSON.parse(readFileSync(join(dir, "results", "net1-ctr1-eth0"), "utf8"));
    expect(Object.keys(json)).toEqual(["kind", "containerId", "config", "ifName", "networkName"]);
  });

  test("reads back what it wrote, and a file written by upstream libcni", async () => {
    await writeCachedAttachment(dir, entry());
    const back = await readCachedAttachment(dir, entry());
    expect(back).toEqual(entry());
    // As upstream cni 1.1.2 writes it (no netns field, Go's HTML escaping).
    const goFile =
      '{"kind":"cniCacheV1","containerId":"c2","config":"eyJhIjoxfQ==","ifName":"net0","networkName":"n2",' +
      '"cniArgs":[["IgnoreUnknown","1"]],"result":{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.1.0.5/16"}],"dns":{}}}';
    writeFileSync(join(dir, "results", "n2-c2-net0"), goFile);
    const go = await readCachedAttachment(dir, { networkName: "n2", containerID: "c2", ifName: "net0" });
    expect(go?.netns).toBe("");
    expect(new TextDecoder().decode(go?.config)).toBe('{"a":1}');
    expect(go?.cniArgs).toEqual([["IgnoreUnknown", "1"]]);
    expect(go?.result?.cniVersion).toBe("0.4.0");
  });

  test("corrupt, truncated, wrong-kind and missing files read as absent", async () => {
    mkdirSync(join(dir, "results"), { recursive: true });
    const k = { networkName: "net1", containerID: "ctr1", ifName: "eth0" };
    expect(await readCachedResultJSON(dir, k)).toBeUndefined();
    writeFileSync(join(dir, "results", "net1-ctr1-eth0"), '{"kind":"cniCacheV1","containerId":"ctr1","conf');
    expect(await readCachedResultJSON(dir, k)).toBeUndefined();
    expect(await readCachedAttachment(dir, k)).toBeUndefined();
    writeFileSync(join(dir, "results", "net1-ctr1-eth0"), '{"kind":"somethingElse","result":{}}');
    expect(await readCachedResultJSON(dir, k)).toBeUndefined();
  });

  test("a pre-cniCacheV1 file (a bare result) is read as the result", async () => {
    mkdirSync(join(dir, "results"), { recursive: true });
    writeFileSync(join(dir, "results", "net1-ctr1-eth0"), '{"cniVersion":"0.3.1","ips":[]}');
    const k = { networkName: "net1", containerID: "ctr1", ifName: "eth0" };
    expect(await readCachedResultJSON(dir, k)).toEqual({ cniVersion: "0.3.1", ips: [] });
  });

  test("lists valid attachments, optionally of one container, skipping junk", async () => {
    await writeCachedAttachment(dir, entry());
    await writeCachedAttachment(dir, entry({ containerID: "ctr2" }));
    await writeCachedAttachment(dir, entry({ networkName: "other", containerID: "ctr1", ifName: "net1" }));
    writeFileSync(join(dir, "results", "net1-broken-eth0"), "{not json");
    const all = await listCachedAttachments(dir);
    expect(all.map((a) => `${a.networkName}/${a.containerID}/${a.ifName}`)).toEqual([
      "net1/ctr1/eth0",
      "net1/ctr2/eth0",
      "other/ctr1/net1",
    ]);
    const one = await listCachedAttachments(dir, "ctr1");
    expect(one.map((a) => a.networkName)).toEqual(["net1", "other"]);
    expect(await listCachedAttachments(join(dir, "absent"))).toEqual([]);
  });

  test("delete removes the file and tolerates its absence", async () => {
    await writeCachedAttachment(dir, entry());
    await deleteCachedAttachment(dir, entry());
    await deleteCachedAttachment(dir, entry());
    expect(readdirSync(join(dir, "results"))).toEqual([]);
  });

  test("refuses to build a path from empty names", () => {
    expect(() => cacheFilePath(dir, { networkName: "", containerID: "c", ifName: "eth0" })).toThrow(
      "cache file path requires network name",
    );
  });
});
