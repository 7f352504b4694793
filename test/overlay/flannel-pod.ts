/**
 * Shared by the node-net tests: a CNI_PATH of bun wrappers for the flannel conflist's plugins, and a pod
 * brought up on a node through kubelet's flow (`tscni pod up`) on the canonical flannel conflist, which
 * reads the subnet.env node-net wrote and delegates to bridge + host-local.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BUN, REPO, writePluginWrappers } from "../plugins/_run.ts";

export { BUN };
export const MAIN = join(REPO, "src/cli/main.ts");

/** `<dir>/bin` with flannel, bridge, loopback and host-local, each exec'ing our main.ts under bun. */
export function flannelPluginDir(dir: string): string {
  return writePluginWrappers(join(dir, "bin"), [
    ["flannel", "meta"],
    ["bridge", "main"],
    ["loopback", "main"],
    ["host-local", "ipam"],
  ]);
}

export interface PodUp {
  /** The node's netns path (the pod flow runs there, as kubelet on that node). */
  nodeNetns: string;
  podNetns: string;
  /** Per-node state lives under `<dir>/…-<index>`. */
  dir: string;
  index: number;
  subnetFile: string;
  bin: string;
  pod: string;
  sandboxID: string;
}

/** `tscni pod up` on the node; the exit code, stderr and the parsed result's addresses. */
export function podUp(o: PodUp): { code: number | null; stderr: string; ips: string[] } {
  const i = o.index;
  const confDir = join(o.dir, `net.d-${i}`);
  mkdirSync(confDir);
  writeFileSync(
    join(confDir, "10-flannel.conflist"),
    JSON.stringify({
      name: "cbr0",
      cniVersion: "1.0.0",
      plugins: [
        {
          type: "flannel",
          delegate: { isDefaultGateway: true },
          subnetFile: o.subnetFile,
          dataDir: join(o.dir, `flannel-${i}`),
          ipam: { dataDir: join(o.dir, `ipam-${i}`) },
        },
      ],
    }),
  );
  const up = Bun.spawnSync(
    ["nsenter", `--net=${o.nodeNetns}`, BUN, MAIN, "pod", "up", o.pod, o.podNetns, "--id", o.sandboxID],
    {
      env: {
        PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin",
        NETCONFPATH: confDir,
        CNI_PATH: o.bin,
        CNI_CACHE_DIR: join(o.dir, `cache-${i}`),
      },
    },
  );
  const stderr = up.stderr.toString();
  if (up.exitCode !== 0) return { code: up.exitCode, stderr, ips: [] };
  const ips = (JSON.parse(up.stdout.toString()).ips as { address: string }[]).map(
    (x) => x.address.split("/")[0] ?? "",
  );
  return { code: up.exitCode, stderr, ips };
}
