/**
 * IPAM delegation (upstream pkg/ipam): a main plugin hands its whole config to the plugin named by
 * `ipam.type`, found in CNI_PATH, with the same CNI_* environment and the verb changed.
 *
 * Fast path: when that executable is this very binary (the multicall tscni), the IPAM plugin runs
 * in-process with identical input and output — same stdin bytes, same CmdArgs, and the result goes
 * through the same version conversion the exec path's JSON would.
 */
import { inProcessResolver, inProcessSelf } from "../skel/inprocess.ts";
import type { CmdArgs, Plugin } from "../skel/types.ts";
import { CniError, ErrCode } from "../spec/errors.ts";
import { parseJSONObject } from "../spec/json.ts";
import { convertResult, parseResult } from "../spec/result.ts";
import type { Result } from "../spec/types.ts";
import { realpath } from "../sys/libc.ts";

type Verb = "ADD" | "DEL" | "CHECK" | "GC" | "STATUS";

function selfPath(): string | undefined {
  try {
    return realpath(inProcessSelf());
  } catch {
    return undefined;
  }
}

/**
 * The IPAM executable in CNI_PATH (upstream invoke.FindInPath). Bun.which, not libcni's findInPath:
 * that module brings node:child_process and node:fs/promises, ~4 ms of start-up the in-process path
 * never needs.
 */
function findPlugin(type: string, path: string[]): string {
  if (type.includes("/")) throw new CniError(ErrCode.InvalidNetworkConfig, `invalid plugin name: ${type}`);
  const file = path.length > 0 ? Bun.which(type, { PATH: path.join(":") }) : null;
  if (!file) {
    throw new CniError(
      ErrCode.PluginNotAvailable,
      `failed to find plugin "${type}" in path [${path.join(" ")}]`,
    );
  }
  return file;
}

/** The in-process plugin when `file` is this executable, else undefined (exec it). */
async function inProcess(type: string, file: string): Promise<Plugin | undefined> {
  const resolve = inProcessResolver();
  if (!resolve) return undefined;
  let real: string;
  try {
    real = realpath(file);
  } catch {
    return undefined;
  }
  return real === selfPath() ? resolve(type) : undefined;
}

function ipamType(stdin: Uint8Array): { type: string; cniVersion: string } {
  const conf = parseJSONObject(stdin, "network config");
  const ipam = conf.ipam as { type?: unknown } | undefined;
  if (!ipam || typeof ipam.type !== "string" || ipam.type === "") {
    throw new CniError(ErrCode.InvalidNetworkConfig, "IPAM config missing 'type' key");
  }
  return { type: ipam.type, cniVersion: typeof conf.cniVersion === "string" ? conf.cniVersion : "0.1.0" };
}

function env(verb: Verb, args: CmdArgs): Record<string, string> {
  return {
    CNI_COMMAND: verb,
    CNI_CONTAINERID: args.containerID,
    CNI_NETNS: args.netns,
    CNI_IFNAME: args.ifName,
    CNI_ARGS: args.args,
    CNI_PATH: args.path.join(":"),
  };
}

async function delegate(verb: Verb, args: CmdArgs, stdin: Uint8Array): Promise<Result | undefined> {
  const { type, cniVersion } = ipamType(stdin);
  const file = findPlugin(type, args.path);
  const plugin = await inProcess(type, file);
  if (plugin) {
    if (process.env.TSCNI_DEBUG === "1") process.stderr.write(`ipam: ${verb} ${type} in-process (${file})\n`);
    const a: CmdArgs = { ...args, command: verb, stdinData: stdin };
    switch (verb) {
      case "ADD":
        // Round-trip through the config's version, exactly as the printed JSON would be.
        return parseResult(convertResult(await plugin.add(a), cniVersion), cniVersion);
      case "DEL":
        return void (await plugin.del(a));
      case "CHECK":
        return void (await plugin.check?.(a));
      case "GC":
        return void (await plugin.gc?.(a));
      case "STATUS":
        return void (await plugin.status?.(a));
    }
  }
  const { execPlugin } = await import("../libcni/exec.ts");
  const out = await execPlugin({ pluginPath: file, env: env(verb, args), stdin });
  if (verb !== "ADD") return undefined;
  return parseResult(JSON.parse(new TextDecoder().decode(out)), cniVersion);
}

/** ADD through the IPAM plugin; `stdin` defaults to the main plugin's own config bytes. */
export async function ipamAdd(args: CmdArgs, stdin: Uint8Array = args.stdinData): Promise<Result> {
  const result = await delegate("ADD", args, stdin);
  if (!result) throw new CniError(ErrCode.Internal, "IPAM plugin returned no result");
  return result;
}

export async function ipamDel(args: CmdArgs, stdin: Uint8Array = args.stdinData): Promise<void> {
  await delegate("DEL", args, stdin);
}

export async function ipamCheck(args: CmdArgs, stdin: Uint8Array = args.stdinData): Promise<void> {
  await delegate("CHECK", args, stdin);
}

export async function ipamGC(args: CmdArgs, stdin: Uint8Array = args.stdinData): Promise<void> {
  await delegate("GC", args, stdin);
}

export async function ipamStatus(args: CmdArgs, stdin: Uint8Array = args.stdinData): Promise<void> {
  await delegate("STATUS", args, stdin);
}
