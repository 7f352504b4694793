/** Whether stdin is a terminal, for the skel's "do not block a bare probe on stdin" rule (Bun: src/sys). */
import { fstat } from "../sys/fs.ts";

/** Whether fd 0 is a terminal (/dev/null, a character device too, is not one). */
export function stdinIsTerminal(): boolean {
  try {
    const st = fstat(0);
    return st.isCharacterDevice() && !(st.rdev === 0x103); // 1:3 is /dev/null
  } catch {
    return false;
  }
}
