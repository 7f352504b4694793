/**
 * PodNetwork (kubelet's pod flow): the calls as a logging plugin sees them — loopback first (ifName lo),
 * then the default network (the lexically first config file), with the K8S_* CNI_ARGS; teardown in
 * reverse, a missing netns passed as ""; status from the cache.
 */
import { afterAll, expect, test } from "bun:test";
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PodNetwork } from "../../src/libcni/pod.ts";
import { cleanupAll, makeNetns, tempDir } from "../helpers/netns.ts";

afterAll(cleanupAll);

function logger(file: string, log: string, version: string, ip: string): void {
  writeFileSync(
    file,
    `#!/bin/sh
conf=$(cat)
name=$(printf '%s' "$conf" | sed -n 's/.*"name": *"\\([^"]*\\)".*/\\1/p')
echo "$CNI_COMMAND $name $CNI_IFNAME netns=$CNI_NETNS args=$CNI_ARGS" >> ${log}
if [ "$CNI_COMMAND" = ADD ]; then echo '{"cniVersion":"${version}","ips":[{"address":"${ip}"}]}'; fi
if [ "$CNI_COMMAND" = VERSION ]; then echo '{"cniVersion":"1.0.0","supportedVersions":["0.3.1","0.4.0","1.0.0"]}'; fi
exit 0
`,
  );
  chmodSync(file, 0o755);
}

test("setUp: loopback then the default network with K8S_* args; tearDown in reverse; status from the cache", async () => {
  const work = tempDir("pod");
  const ns = makeNetns("pod");
  const bin = join(work.path, "bin");
  const conf = join(work.path, "net.d");
  mkdirSync(bin);
  mkdirSync(conf);
  const log = join(work.path, "calls.log");
  logger(join(bin, "loopback"), log, "0.3.1", "127.0.0.1/8");
  logger(join(bin, "logger"), log, "1.0.0", "10.9.0.5/24");
  writeFileSync(
    join(conf, "10-first.conflist"),
    JSON.stringify({ cniVersion: "1.0.0", name: "first", plugins: [{ type: "logger" }] }),
  );
  writeFileSync(
    join(conf, "20-second.conf"),
    JSON.stringify({ cniVersion: "1.0.0", name: "second", type: "nope" }),
  );
  writeFileSync(join(conf, "05-ignored.txt"), "not a config");
  const net = new PodNetwork({ confDir: conf, path: [bin], cacheDir: join(work.path, "cache") });
  const pod = { namespace: "kube-system", name: "web", id: "sandbox1", uid: "u-1" };

  const up = await net.setUp(pod, ns.path);
  expect(up.network).toBe("first");
  expect(up.ips).toEqual(["10.9.0.5"]);
  expect((await net.status(pod, ns.path)).ips).toEqual(["10.9.0.5"]);

  await net.tearDown(pod, join(work.path, "gone-netns"));
  const args =
    "args=IgnoreUnknown=1;K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=sandbox1;K8S_POD_UID=u-1";
  expect(readFileSync(log, "utf8").trim().split("\n")).toEqual([
    `ADD cni-loopback lo netns=${ns.path} ${args}`,
    `ADD first eth0 netns=${ns.path} ${args}`,
    `DEL first eth0 netns= ${args}`,
    `DEL cni-loopback lo netns= ${args}`,
  ]);
  // After teardown nothing is cached: status falls back to CHECK, which says the pod is not attached.
  await expect(net.status(pod, ns.path)).rejects.toThrow(/CHECK needs a prior ADD/);
});

test("no config in the conf dir: a clear error", async () => {
  const work = tempDir("pod-empty");
  const net = new PodNetwork({ confDir: work.path, path: [], cacheDir: join(work.path, "cache") });
  await expect(net.setUp({ namespace: "a", name: "b", id: "c" }, "/x")).rejects.toThrow(
    /no net configurations found/,
  );
});
