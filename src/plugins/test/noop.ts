/**
 * The noop test plugin (like upstream plugins/test/noop): records every call and answers whatever its
 * config tells it to, so libcni and skel can be tested against a real process without a kernel.
 *
 * Config keys (besides the standard ones):
 *   debugFile         file to append one JSON line per call to (else env NOOP_DEBUG_FILE; else no log)
 *   result            the result to return on ADD, in the config's cniVersion
 *                     (default: prevResult if present, else an empty result)
 *   errorCode/errorMsg/errorDetails   fail with this CNI error …
 *   failOn            … only for these commands (e.g. ["ADD"]); default every command
 */
import type { CmdArgs, Plugin } from "../../skel/types.ts";
import { CniError, ErrCode } from "../../spec/errors.ts";
import { parseResult } from "../../spec/result.ts";
import type { Result } from "../../spec/types.ts";
import { writeFile } from "../../sys/fs.ts";

/** One line of the debug log. */
export interface NoopCall {
  command: string;
  containerID: string;
  netns: string;
  ifName: string;
  args: string;
  path: string[];
  stdin: Record<string, unknown>;
}

export const NOOP_ALL_VERSIONS = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] as const;

/** A noop plugin speaking `supportedVersions` (VERSION answers before any config is read). */
export function makeNoop(supportedVersions: readonly string[] = NOOP_ALL_VERSIONS): Plugin {
  return {
    supportedVersions,
    about: "noop: records its calls and returns what its config says (a test plugin)",
    add: (args) => {
      const conf = handle(args);
      const version = typeof conf.cniVersion === "string" ? conf.cniVersion : "0.1.0";
      if (conf.result !== undefined) return parseAs(conf.result, version, "result");
      if (conf.prevResult !== undefined) return parseAs(conf.prevResult, version, "prevResult");
      return { cniVersion: version };
    },
    del: (args) => void handle(args),
    check: (args) => void handle(args),
    gc: (args) => void handle(args),
    status: (args) => void handle(args),
  };
}

/** Logs the call, then throws the configured error if this command should fail. */
function handle(args: CmdArgs): Record<string, unknown> {
  const conf = parseConf(args.stdinData);
  const logFile = typeof conf.debugFile === "string" ? conf.debugFile : process.env.NOOP_DEBUG_FILE;
  if (logFile) {
    const call: NoopCall = {
      command: args.command,
      containerID: args.containerID,
      netns: args.netns,
      ifName: args.ifName,
      args: args.args,
      path: args.path,
      stdin: conf,
    };
    try {
      writeFile(logFile, `${JSON.stringify(call)}\n`, { append: true });
    } catch (err) {
      throw CniError.from(err, `noop: appending to debug file ${logFile}`, ErrCode.IOFailure);
    }
  }
  const failOn = Array.isArray(conf.failOn) ? conf.failOn : undefined;
  if (typeof conf.errorCode === "number" && (!failOn || failOn.includes(args.command))) {
    const msg = typeof conf.errorMsg === "string" ? conf.errorMsg : "noop: configured to fail";
    const details = typeof conf.errorDetails === "string" ? conf.errorDetails : "";
    throw new CniError(conf.errorCode, msg, details);
  }
  return conf;
}

function parseConf(stdin: Uint8Array): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder().decode(stdin));
  } catch (err) {
    throw CniError.from(err, "noop: parsing network configuration", ErrCode.DecodingFailure);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new CniError(ErrCode.DecodingFailure, "noop: network configuration is not a JSON object");
  }
  return v as Record<string, unknown>;
}

function parseAs(raw: unknown, version: string, what: string): Result {
  try {
    return parseResult(raw, version);
  } catch (err) {
    throw CniError.from(err, `noop: parsing ${what}`, ErrCode.DecodingFailure);
  }
}
