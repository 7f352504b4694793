/**
 * One plugin invocation as libcni makes it (upstream pkg/invoke's Args, ExecPluginWithResult,
 * GetVersionInfo): the CNI_* environment, the result fix-up and decoding, VERSION decoding.
 */
import { CniError, ErrCode } from "../spec/errors.ts";
import { parseResult } from "../spec/result.ts";
import type { Result } from "../spec/types.ts";
import { CURRENT_VERSION } from "../spec/types.ts";
import { decodeVersionInfo, type VersionInfo } from "../spec/version.ts";
import type { Exec } from "./exec.ts";

export type CniCommand = "ADD" | "DEL" | "CHECK" | "GC" | "STATUS" | "VERSION";

export interface InvokeArgs {
  command: CniCommand;
  containerID?: string;
  netNS?: string;
  ifName?: string;
  args?: readonly (readonly [string, string])[];
  path: readonly string[];
}

/** The CNI_* variables for one call; all six are always set so inherited values never leak in. */
export function cniEnv(a: InvokeArgs): Record<string, string> {
  return {
    CNI_COMMAND: a.command,
    CNI_CONTAINERID: a.containerID ?? "",
    CNI_NETNS: a.netNS ?? "",
    CNI_ARGS: (a.args ?? []).map(([k, v]) => `${k}=${v}`).join(";"),
    CNI_IFNAME: a.ifName ?? "",
    CNI_PATH: a.path.join(":"),
  };
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeJSON(v: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(v));
}

/** Runs a plugin for ADD and decodes its stdout as a result of the config's version (or its own). */
export async function execWithResult(
  exec: Exec,
  pluginPath: string,
  config: Record<string, unknown>,
  args: InvokeArgs,
  signal?: AbortSignal,
): Promise<Result> {
  const stdout = await exec.execPlugin(pluginPath, encodeJSON(config), cniEnv(args), signal);
  let raw: unknown;
  try {
    raw = JSON.parse(decoder.decode(stdout));
  } catch (err) {
    throw CniError.from(err, `decoding result of plugin ${pluginPath}`, ErrCode.DecodingFailure);
  }
  if (raw !== null && !isObject(raw)) {
    throw new CniError(ErrCode.DecodingFailure, `decoding result of plugin ${pluginPath}: not a JSON object`);
  }
  // `null` decodes as an empty result, as in upstream.
  const obj: Record<string, unknown> = isObject(raw) ? raw : {};
  // A result without cniVersion is taken to be in the config's version (upstream issue #895).
  const version =
    typeof obj.cniVersion === "string" && obj.cniVersion !== ""
      ? obj.cniVersion
      : String(config.cniVersion ?? "");
  try {
    return parseResult({ ...obj, cniVersion: version }, version);
  } catch (err) {
    throw CniError.from(err, `decoding result of plugin ${pluginPath}`, ErrCode.DecodingFailure);
  }
}

export async function execWithoutResult(
  exec: Exec,
  pluginPath: string,
  config: Record<string, unknown>,
  args: InvokeArgs,
  signal?: AbortSignal,
): Promise<void> {
  await exec.execPlugin(pluginPath, encodeJSON(config), cniEnv(args), signal);
}

/** What a plugin's VERSION command reported. */
export type PluginInfo = VersionInfo;

/**
 * Asks a plugin which spec versions it supports. Plugins older than VERSION itself answer
 * "unknown CNI_COMMAND: VERSION" and are taken to speak 0.1.0 (upstream GetVersionInfo).
 */
export async function getVersionInfo(
  exec: Exec,
  pluginPath: string,
  signal?: AbortSignal,
): Promise<PluginInfo> {
  // Dummy values: plugins built on old skel versions insist these are set.
  const env = {
    ...cniEnv({ command: "VERSION", path: [] }),
    CNI_NETNS: "dummy",
    CNI_IFNAME: "dummy",
    CNI_PATH: "dummy",
  };
  let stdout: Uint8Array;
  try {
    stdout = await exec.execPlugin(pluginPath, encodeJSON({ cniVersion: CURRENT_VERSION }), env, signal);
  } catch (err) {
    if (err instanceof CniError && err.msg === "unknown CNI_COMMAND: VERSION") {
      return { cniVersion: CURRENT_VERSION, supportedVersions: ["0.1.0"] };
    }
    throw CniError.from(err, `getting version info of plugin ${pluginPath}`);
  }
  try {
    return decodeVersionInfo(JSON.parse(decoder.decode(stdout)));
  } catch (err) {
    throw CniError.from(err, `plugin ${pluginPath}`, ErrCode.DecodingFailure);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
