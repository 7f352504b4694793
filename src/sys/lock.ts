/**
 * An exclusive flock held across async work. A blocking flock on the JS thread would stop the event
 * loop: a holder in this process (its own fd conflicts like another process's) could then never
 * finish — deadlock — and a holder elsewhere would freeze every timer here. So the lock is taken with
 * LOCK_NB and polled (`flockExclusive`), and calls of this process queue per key first (`serialized`):
 * they go in call order and do not poll against each other.
 */
import { SysError } from "./errno.ts";
import { flock, LOCK_EX, LOCK_NB } from "./libc.ts";

const POLL_MS = 2;
const queues = new Map<string, Promise<unknown>>();

/** Runs `fn` once every earlier call of this process with the same `key` has settled. */
export function serialized<T>(key: string, fn: () => Promise<T>): Promise<T> {
  const turn = (queues.get(key) ?? Promise.resolve()).then(fn);
  const tail = turn.catch(() => {});
  queues.set(key, tail);
  void tail.then(() => {
    if (queues.get(key) === tail) queues.delete(key);
  });
  return turn;
}

/** Takes flock(LOCK_EX) on `fd`, waiting for another holder without blocking the event loop. */
export async function flockExclusive(fd: number): Promise<void> {
  for (;;) {
    try {
      flock(fd, LOCK_EX | LOCK_NB);
      return;
    } catch (err) {
      if (!(err instanceof SysError && err.code === "EAGAIN")) throw err;
      await Bun.sleep(POLL_MS);
    }
  }
}
