/**
 * The plugin side of CNI (upstream pkg/skel, with GC and STATUS of spec 1.1): read the CNI_* environment
 * and stdin, validate them, negotiate the version, dispatch the verb, and print the result — or any
 * failure as CNI error JSON on stdout with exit code 1. Never a stack trace on stdout.
 *
 * The process I/O is a parameter (SkelIO): skel.ts gives it read(2)/write(2) over src/sys (Bun),
 * node.ts node:fs (any runtime), so this module imports neither.
 */
import { parsePluginStdin } from "../spec/conf.ts";
import { CniError, ErrCode } from "../spec/errors.ts";
import { formatResult } from "../spec/result.ts";
import { CURRENT_VERSION } from "../spec/types.ts";
import { validateContainerID, validateInterfaceName } from "../spec/validate.ts";
import { checkVersionCompatible, compareVersions, isSupportedVersion } from "../spec/version.ts";
import type { CmdArgs, Plugin } from "./types.ts";
import { versionReply } from "./version.ts";

export type Env = Readonly<Record<string, string | undefined>>;
/** Where output goes; may be async (the real stdout is). */
export type Sink = (text: string) => void | Promise<void>;

export interface PluginMainOptions {
  /** Default: process.env. */
  env?: Env;
  /** The bytes on stdin, or how to read them. Default: all of the process's stdin. */
  stdin?: Uint8Array | string | (() => Promise<Uint8Array>);
  /** Default: the process's stdout. */
  stdout?: Sink;
  /** Default: the process's stderr. */
  stderr?: Sink;
}

type Verb = "ADD" | "CHECK" | "DEL" | "GC" | "STATUS" | "VERSION";
const VERBS: readonly string[] = ["ADD", "CHECK", "DEL", "GC", "STATUS", "VERSION"];

/**
 * Which verbs need which variable (upstream skel's reqForCmd plus spec 1.1). DEL does not need
 * CNI_NETNS: the runtime may delete after the namespace is gone (containerd's second DEL).
 * Container id and interface name are validated whenever the verb needs them.
 */
const ENV_VARS: { name: string; requiredFor: readonly Verb[]; validate?: (v: string) => void }[] = [
  { name: "CNI_CONTAINERID", requiredFor: ["ADD", "CHECK", "DEL"], validate: validateContainerID },
  { name: "CNI_NETNS", requiredFor: ["ADD", "CHECK"] },
  { name: "CNI_IFNAME", requiredFor: ["ADD", "CHECK", "DEL"], validate: validateInterfaceName },
  { name: "CNI_ARGS", requiredFor: [] },
  { name: "CNI_PATH", requiredFor: ["ADD", "CHECK", "DEL", "GC", "STATUS"] },
];

/** The process's stdin/stdout/stderr as the skel uses them. */
export interface SkelIO {
  /** All of fd 0 until EOF. */
  readStdin(): Uint8Array;
  write(fd: 1 | 2, text: string): void;
  /** Whether fd 0 is a terminal (then VERSION does not read it). */
  stdinIsTerminal(): boolean;
}

/** Reads all of the process's stdin; failures are code 5. */
async function readStdinAll(io: SkelIO): Promise<Uint8Array> {
  try {
    return io.readStdin();
  } catch (err) {
    throw CniError.from(err, "error reading from stdin", ErrCode.IOFailure);
  }
}

const encoder = new TextEncoder();

async function readInput(io: SkelIO, stdin: PluginMainOptions["stdin"]): Promise<Uint8Array> {
  if (stdin === undefined) return readStdinAll(io);
  if (typeof stdin === "string") return encoder.encode(stdin);
  if (stdin instanceof Uint8Array) return stdin;
  try {
    return await stdin();
  } catch (err) {
    throw CniError.from(err, "error reading from stdin", ErrCode.IOFailure);
  }
}

/** Checks the environment for `verb`: every missing variable is listed in one code-4 error. */
function checkEnv(env: Env, verb: string): void {
  const missing: string[] = [];
  for (const v of ENV_VARS) {
    const required = (v.requiredFor as readonly string[]).includes(verb);
    const value = env[v.name] ?? "";
    if (value === "") {
      if (required) missing.push(v.name);
    } else if (required && v.validate) {
      v.validate(value);
    }
  }
  if (missing.length > 0) {
    throw new CniError(
      ErrCode.InvalidEnvironmentVariables,
      `required env variables [${missing.join(",")}] missing`,
    );
  }
}

/** CHECK needs config ≥ 0.4.0, GC and STATUS ≥ 1.1.0, and a plugin version at least the config's. */
function checkVerbAllowed(
  verb: string,
  since: string,
  configVersion: string,
  supported: readonly string[],
): void {
  if (compareVersions(configVersion, since) < 0) {
    throw new CniError(ErrCode.IncompatibleVersion, `config version does not allow ${verb}`);
  }
  if (!supported.some((v) => compareVersions(v, configVersion) >= 0)) {
    throw new CniError(ErrCode.IncompatibleVersion, `plugin version does not allow ${verb}`);
  }
}

/** VERSION: stdin is optional, and a terminal is not read (see version.ts). */
function versionOf(io: SkelIO, plugin: Plugin, opts: PluginMainOptions): Promise<string> {
  const read =
    opts.stdin !== undefined || !io.stdinIsTerminal() ? () => readInput(io, opts.stdin) : undefined;
  return versionReply(plugin.supportedVersions, read);
}

async function dispatch(plugin: Plugin, verb: string, args: CmdArgs, configVersion: string): Promise<string> {
  const supported = plugin.supportedVersions;
  switch (verb) {
    case "ADD": {
      checkVersionCompatible(configVersion, supported);
      const result = await plugin.add(args);
      try {
        return formatResult(result, configVersion);
      } catch (err) {
        // The plugin made its attachment but the answer cannot be given in the config's version (0.1.0
        // with no IP): the runtime sees a failed ADD, so nothing of it may stay. Undo with a DEL.
        try {
          await plugin.del(args);
        } catch {
          // the conversion error is the one to report; DEL is idempotent and the runtime's next DEL retries
        }
        throw err;
      }
    }
    case "DEL":
      checkVersionCompatible(configVersion, supported);
      await plugin.del(args);
      return "";
    case "CHECK":
      checkVerbAllowed(verb, "0.4.0", configVersion, supported);
      checkVersionCompatible(configVersion, supported);
      await plugin.check?.(args);
      return "";
    case "GC":
      checkVerbAllowed(verb, "1.1.0", configVersion, supported);
      checkVersionCompatible(configVersion, supported);
      await plugin.gc?.(args);
      return "";
    case "STATUS":
      checkVerbAllowed(verb, "1.1.0", configVersion, supported);
      checkVersionCompatible(configVersion, supported);
      await plugin.status?.(args);
      return "";
  }
  throw new CniError(ErrCode.InvalidEnvironmentVariables, `unknown CNI_COMMAND: ${verb}`);
}

/**
 * Runs one CNI invocation of `plugin` and returns the exit code (0, or 1 after printing CNI error JSON).
 * With no CNI_COMMAND and an `about` text, prints the about text and supported versions on stderr.
 */
export async function pluginMainWith(
  io: SkelIO,
  plugin: Plugin,
  opts: PluginMainOptions = {},
): Promise<number> {
  const env = opts.env ?? process.env;
  const stdout = opts.stdout ?? ((t: string) => io.write(1, t));
  const stderr = opts.stderr ?? ((t: string) => io.write(2, t));
  const verb = env["CNI_COMMAND"] ?? "";
  let errorVersion: string = CURRENT_VERSION;
  try {
    if (verb === "") {
      if (plugin.about) {
        await stderr(
          `${plugin.about}\nCNI protocol versions supported: ${plugin.supportedVersions.join(", ")}\n`,
        );
        return 0;
      }
      throw new CniError(ErrCode.InvalidEnvironmentVariables, "required env variables [CNI_COMMAND] missing");
    }
    if (!VERBS.includes(verb)) {
      throw new CniError(ErrCode.InvalidEnvironmentVariables, `unknown CNI_COMMAND: ${verb}`);
    }
    checkEnv(env, verb);
    if (verb === "VERSION") {
      await stdout(await versionOf(io, plugin, opts));
      return 0;
    }
    const stdinData = await readInput(io, opts.stdin);
    const conf = parsePluginStdin(stdinData);
    if (isSupportedVersion(conf.cniVersion)) errorVersion = conf.cniVersion;
    const args: CmdArgs = {
      command: verb,
      containerID: env["CNI_CONTAINERID"] ?? "",
      netns: env["CNI_NETNS"] ?? "",
      ifName: env["CNI_IFNAME"] ?? "",
      args: env["CNI_ARGS"] ?? "",
      path: (env["CNI_PATH"] ?? "").split(":").filter((p) => p !== ""),
      stdinData,
    };
    const output = await dispatch(plugin, verb, args, conf.cniVersion);
    if (output) await stdout(output);
    return 0;
  } catch (err) {
    if (env["TSCNI_DEBUG"] === "1" && err instanceof Error && err.stack) {
      await stderr(`${err.stack}\n`);
    }
    const cniErr = err instanceof CniError ? err : CniError.from(err);
    await stdout(JSON.stringify(cniErr.toJSON(errorVersion), null, 4));
    return 1;
  }
}
