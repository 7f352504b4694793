/**
 * The VERSION reply, shared by the skel (core.ts) and the multicall entry's VERSION path
 * (version-main.ts), which answers from the plugin's known versions without loading the plugin or the
 * rest of the skel: a VERSION probe then costs about what an empty compiled program costs. Only node:
 * built-ins here: core.ts is part of the Node library build.
 */

import { isObject, parseJSON } from "../spec/json.ts";
import { CURRENT_VERSION } from "../spec/types.ts";
import { isSupportedVersion, versionInfo } from "../spec/version.ts";

/**
 * The reply speaks the version the runtime asked in (when it is one we know), else the latest.
 * `read` gives stdin, or is undefined when stdin is not to be read (a terminal: a bare probe must not
 * hang). Like upstream, an unreadable or bad stdin does not fail the probe.
 */
export async function versionReply(
  supported: readonly string[],
  read: (() => Uint8Array | Promise<Uint8Array>) | undefined,
): Promise<string> {
  let asked: string = CURRENT_VERSION;
  if (read) {
    try {
      const conf = parseJSON(await read(), "version request");
      const v = isObject(conf) ? conf["cniVersion"] : undefined;
      if (typeof v === "string" && isSupportedVersion(v)) asked = v;
    } catch {
      // Upstream ignores VERSION's stdin entirely; an unreadable one must not fail the probe.
    }
  }
  return `${JSON.stringify(versionInfo(supported, asked))}\n`;
}
