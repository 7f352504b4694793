/**
 * The process side of VERSION (Bun: fd reads and writes through src/sys): the multicall entry answers
 * a plugin's VERSION call with this alone (src/cli/main.ts), and skel.ts asks whether stdin is a terminal.
 */
import { fstat, readAll, write } from "../sys/fs.ts";
import { versionReply } from "./version.ts";

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
