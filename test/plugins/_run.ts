/**
 * Runs a plugin as a process inside a throwaway "host" netns, the way a runtime would exec it:
 *
 *   runPlugin({plugin: "ptp", hostNetns, env: {CNI_COMMAND: "ADD", …}, config}) → {code, json, stdout, stderr}
 *
 * `plugin` is one of ours (src/plugins/{main,ipam,meta}/<name>/main.ts run with the pinned bun) or an
 * absolute path (upstream's /usr/lib/cni/<name>). `hostNetns` is the netns *name* the plugin runs in
 * (`ip netns exec`), never the machine's root netns. CNI_PATH defaults to ipamPath().
 *
 *   ipamPath() → a temp CNI_PATH dir holding `host-local` and `static` wrappers of our IPAM plugins
 *                (made once per test process, removed at exit).
 */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { onTestRunEnd } from "../helpers/teardown.ts";

export const REPO = resolve(import.meta.dir, "../..");
export const BUN = join(REPO, "node_modules/.bin/bun");
export const UPSTREAM_DIR = "/usr/lib/cni";

export interface RunPluginOptions {
  /** Our plugin's name ("ptp") or an absolute path to an executable ("/usr/lib/cni/ptp"). */
  plugin: string;
  /** Name of the netns the plugin runs in (its host side). */
  hostNetns: string;
  /** CNI_* variables; CNI_PATH defaults to ipamPath(). */
  env: Record<string, string>;
  config: string | object;
}

export interface RunPluginResult {
  code: number;
  stdout: string;
  stderr: string;
  // biome-ignore lint/suspicious/noExplicitAny: whatever the plugin printed, parsed
  json: any;
}

function ourMain(name: string): string {
  for (const group of ["main", "ipam", "meta"]) {
    const p = join(REPO, "src/plugins", group, name, "main.ts");
    if (existsSync(p)) return p;
  }
  throw new Error(`no plugin ${name} under src/plugins/*/`);
}

let ipamDir: string | undefined;

export type PluginGroup = "main" | "ipam" | "meta";

/** Writes `dir/<name>` shell wrappers that exec our src/plugins/<group>/<name>/main.ts with the pinned bun. */
export function writePluginWrappers(
  dir: string,
  plugins: readonly (readonly [string, PluginGroup])[],
): string {
  mkdirSync(dir, { recursive: true });
  for (const [name, group] of plugins) {
    const file = join(dir, name);
    writeFileSync(file, `#!/bin/sh\nexec ${BUN} ${join(REPO, "src/plugins", group, name, "main.ts")} "$@"\n`);
    chmodSync(file, 0o755);
  }
  return dir;
}

/** A CNI_PATH dir with wrappers `host-local` and `static` that exec our IPAM plugins. */
export function ipamPath(): string {
  if (ipamDir) return ipamDir;
  const dir = mkdtempSync(join(tmpdir(), "tscni-ipam-path-"));
  writePluginWrappers(dir, [
    ["host-local", "ipam"],
    ["static", "ipam"],
  ]);
  ipamDir = dir;
  onTestRunEnd(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export async function runPlugin(o: RunPluginOptions): Promise<RunPluginResult> {
  const cmd = o.plugin.startsWith("/") ? [o.plugin] : [BUN, ourMain(o.plugin)];
  const stdin = typeof o.config === "string" ? o.config : JSON.stringify(o.config);
  const proc = Bun.spawn(["ip", "netns", "exec", o.hostNetns, ...cmd], {
    env: {
      PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin",
      CNI_CONTAINERID: "ctr",
      CNI_NETNS: "",
      CNI_IFNAME: "eth0",
      CNI_ARGS: "",
      CNI_PATH: ipamPath(),
      ...o.env,
    },
    stdin: new TextEncoder().encode(stdin),
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  let json: unknown;
  try {
    json = stdout.trim() === "" ? undefined : JSON.parse(stdout);
  } catch {
    json = undefined;
  }
  return { code, stdout, stderr, json };
}
