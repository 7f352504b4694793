/** Shared bits of the host-local tests: configs, CmdArgs, temp data dirs. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { CmdArgs } from "../../../../src/skel/types.ts";

export const REPO = join(import.meta.dir, "../../../..");
export const BUN = join(REPO, "node_modules/.bin/bun");
export const UPSTREAM = "/usr/lib/cni/host-local";

export function tempDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), "tscni-hl-"));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function conf(
  dataDir: string,
  ipam: Record<string, unknown>,
  extra: Record<string, unknown> = {},
): string {
  return JSON.stringify({
    cniVersion: "1.1.0",
    name: "testnet",
    type: "bridge",
    ...extra,
    ipam: { type: "host-local", dataDir, ...ipam },
  });
}

export function cmdArgs(stdin: string, containerID = "ctr1", ifName = "eth0", args = ""): CmdArgs {
  return {
    command: "ADD",
    containerID,
    netns: "/var/run/netns/x",
    ifName,
    args,
    path: [],
    stdinData: new TextEncoder().encode(stdin),
  };
}
