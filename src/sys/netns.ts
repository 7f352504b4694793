/**
 * Switching the calling thread's network namespace. Bun runs JavaScript on one thread, so a synchronous
 * `fn` runs entirely inside the target netns; the original netns is restored even when `fn` throws.
 * Never pass an async function: the event loop would run other work while the thread sits in `nsFd`.
 */
import { CLONE_NEWNET, close, O_RDONLY, open, setns } from "./libc.ts";

/** The calling thread's own netns (not the process leader's: /proc/self would be the leader). */
export const THREAD_NETNS_PATH = "/proc/thread-self/ns/net";

export function withNetnsFd<T>(nsFd: number, fn: () => T): T {
  const original = open(THREAD_NETNS_PATH, O_RDONLY);
  try {
    setns(nsFd, CLONE_NEWNET);
    try {
      const out = fn();
      if (out instanceof Promise) throw new Error("withNetnsFd: fn must be synchronous");
      return out;
    } finally {
      // If this fails the thread is stranded in the wrong netns; nothing sane can continue.
      try {
        setns(original, CLONE_NEWNET);
      } catch (err) {
        process.stderr.write(`fatal: cannot return to the original netns: ${err}\n`);
        process.exit(70);
      }
    }
  } finally {
    close(original);
  }
}
