/**
 * Delegation to another plugin (upstream pkg/invoke's DelegateAdd/DelegateDel/DelegateCheck): the
 * plugin named `type` is found in CNI_PATH and run with the caller's CNI_* environment, the verb
 * changed, and the given config on stdin. IPAM (index.ts) and meta plugins such as flannel use it.
 *
 * Fast path: when that executable is this very binary (the multicall tscni), the plugin runs
 * in-process with identical input and output — same stdin bytes, same CmdArgs, and the result goes
 * through the same version conversion the exec path's JSON would.
 */
import { inProcessResolver, inProcessSelf } from "../skel/inprocess.ts";
import type { CmdArgs, Plugin } from "../skel/types.ts";
import { CniError, ErrCode } from "../spec/errors.ts";
import { convertResult, parseResult } from "../spec/result.ts";
import type { Result } from "../spec/types.ts";
import { realpath } from "../sys/libc.ts";

export type DelegateVerb = "ADD" | "DEL" | "CHECK" | "GC" | "STATUS";

/**
 * The files that are "this executable": the multicall binary and the warm path's launcher beside it
 * (tscni-launcher, native/warm-launcher.c), which ends up running this same code.
 */
function selfPaths(): string[] {
  const out: string[] = [];
  for (const p of [inProcessSelf(), `${inProcessSelf().replace(/[^/]*$/, "")}tscni-launcher`]) {
    try {
      out.push(realpath(p));
    } catch {
      // no launcher installed
    }
  }
  return out;
}

/**
 * The executable in CNI_PATH (upstream invoke.FindInPath). Bun.which, not libcni's findInPath:
 * that module brings node:child_process and node:fs/promises, ~4 ms of start-up the in-process path
 * never needs.
 */
export function findPlugin(type: string, path: readonly string[]): string {
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
  return selfPaths().includes(real) ? resolve(type) : undefined;
}

function env(verb: DelegateVerb, args: CmdArgs): Record<string, string> {
  return {
    CNI_COMMAND: verb,
    CNI_CONTAINERID: args.containerID,
    CNI_NETNS: args.netns,
    CNI_IFNAME: args.ifName,
    CNI_ARGS: args.args,
    CNI_PATH: args.path.join(":"),
  };
}

/**
 * Runs plugin `type` for `verb` with `stdin` as its config; ADD returns the result decoded in
 * `cniVersion` (the delegated config's), the other verbs undefined. Errors are the plugin's own.
 */
export async function delegate(
  verb: DelegateVerb,
  type: string,
  args: CmdArgs,
  stdin: Uint8Array,
  cniVersion: string,
): Promise<Result | undefined> {
  const file = findPlugin(type, args.path);
  const plugin = await inProcess(type, file);
  if (plugin) {
    if (process.env.TSCNI_DEBUG === "1")
      process.stderr.write(`delegate: ${verb} ${type} in-process (${file})\n`);
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
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder().decode(out));
  } catch (err) {
    throw CniError.from(err, `decoding the result of plugin ${type}`, ErrCode.DecodingFailure);
  }
  return parseResult(raw, cniVersion);
}

/** ADD through plugin `type` (upstream invoke.DelegateAdd). */
export async function delegateAdd(
  type: string,
  args: CmdArgs,
  stdin: Uint8Array,
  cniVersion: string,
): Promise<Result> {
  const result = await delegate("ADD", type, args, stdin, cniVersion);
  if (!result) throw new CniError(ErrCode.Internal, `plugin ${type} returned no result`);
  return result;
}

/** DEL through plugin `type` (upstream invoke.DelegateDel). */
export async function delegateDel(type: string, args: CmdArgs, stdin: Uint8Array, cniVersion: string) {
  await delegate("DEL", type, args, stdin, cniVersion);
}

/** CHECK through plugin `type` (upstream invoke.DelegateCheck). */
export async function delegateCheck(type: string, args: CmdArgs, stdin: Uint8Array, cniVersion: string) {
  await delegate("CHECK", type, args, stdin, cniVersion);
}
