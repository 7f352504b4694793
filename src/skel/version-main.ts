/**
 * The process side of VERSION (Bun): the multicall entry answers a plugin's VERSION call with this alone
 * (src/cli/main.ts), without the plugin, the rest of the skel or bun:ffi.
 *
 * Stdin goes through Bun's stream, not src/sys: importing bun:ffi and its first dlopen cost a VERSION
 * probe ~2.5 ms (1.32× the empty executable against 1.17×, docs/startup.md). Whether stdin is a terminal
 * (a bare probe in a shell must not wait for input) needs fstat, so it is asked only when nothing has
 * arrived after a moment: a runtime's pipe is written at once, a slow one is still read to the end.
 */
import { versionReply } from "./version.ts";

const ASK_TERMINAL_AFTER_MS = 50;
const WAITING = Symbol("waiting");

async function readStdinUnlessTerminal(): Promise<Uint8Array> {
  const reader = Bun.stdin.stream().getReader();
  const pending = reader.read();
  let timer: Timer | undefined;
  const waited = new Promise<typeof WAITING>((resolve) => {
    timer = setTimeout(() => resolve(WAITING), ASK_TERMINAL_AFTER_MS);
  });
  const first = await Promise.race([pending, waited]);
  clearTimeout(timer);
  if (first === WAITING) {
    const { stdinIsTerminal } = await import("./terminal.ts");
    if (stdinIsTerminal()) {
      void reader.cancel();
      return new Uint8Array(); // not JSON: the reply speaks the latest version, as for no stdin
    }
  }
  const chunks: Uint8Array[] = [];
  for (let r = first === WAITING ? await pending : first; !r.done; r = await reader.read()) {
    chunks.push(r.value);
  }
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
}

/** The process's VERSION call (CNI_COMMAND=VERSION): what pluginMain prints for it, and exit code 0. */
export async function versionMain(supported: readonly string[]): Promise<number> {
  await Bun.write(Bun.stdout, await versionReply(supported, readStdinUnlessTerminal));
  return 0;
}
