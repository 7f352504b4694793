/**
 * The VERSION reply, shared by the skel (core.ts) and the multicall entry's VERSION path
 * (src/cli/main.ts), which answers from the plugin's known versions without loading the plugin or the
 * rest of the skel: a VERSION probe then costs about what an empty compiled program costs.
 */

import { isObject, parseJSON } from "../spec/json.ts";
import { CURRENT_VERSION } from "../spec/types.ts";
import { isSupportedVersion, versionInfo } from "../spec/version.ts";
import { fstat, readAll, write } from "../sys/fs.ts";

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

/** Whether fd 0 is a terminal (/dev/null, a character device too, is not one). */
export function stdinIsTerminal(): boolean {
  try {
    const st = fstat(0);
    return st.isCharacterDevice() && !(st.rdev === 0x103); // 1:3 is /dev/null
  } catch {
    return false;
  }
}

/** The process's VERSION call (CNI_COMMAND=VERSION): what pluginMain prints for it, and exit code 0. */
export async function versionMain(supported: readonly string[]): Promise<number> {
  write(1, await versionReply(supported, stdinIsTerminal() ? undefined : () => readAll(0)));
  return 0;
}
