/** sys/lock.ts: an exclusive flock across async work, within one process and across processes. */
import { afterAll, expect, test } from "bun:test";
import { join } from "node:path";
import { closeFile, O_CREAT, O_RDWR, openFile } from "../../src/sys/fs.ts";
import { flock, LOCK_UN } from "../../src/sys/libc.ts";
import { flockExclusive, serialized } from "../../src/sys/lock.ts";
import { tempDir } from "../helpers/netns.ts";

const work = tempDir("tscni-lock-");
afterAll(() => work.cleanup());

/** One holder: its own fd, the flock, `hold` ms of async work, then release; logs its start and end. */
function holder(path: string, name: string, hold: number, log: string[]): Promise<void> {
  return serialized(path, async () => {
    const fd = openFile(path, O_RDWR | O_CREAT, 0o600);
    try {
      await flockExclusive(fd);
      log.push(`${name}+`);
      await Bun.sleep(hold);
      log.push(`${name}-`);
      flock(fd, LOCK_UN);
    } finally {
      closeFile(fd);
    }
  });
}

test("two holders in one process, each with its own fd, take turns in call order", async () => {
  const path = join(work.path, "a.lock");
  const log: string[] = [];
  await Promise.all([holder(path, "a", 30, log), holder(path, "b", 1, log)]);
  expect(log).toEqual(["a+", "a-", "b+", "b-"]);
});

test("a failing holder does not stop the next one", async () => {
  const path = join(work.path, "b.lock");
  const failed = serialized(path, async () => {
    throw new Error("boom");
  });
  const log: string[] = [];
  await expect(failed).rejects.toThrow("boom");
  await holder(path, "c", 1, log);
  expect(log).toEqual(["c+", "c-"]);
});

test("a holder in another process is waited for while the event loop runs", async () => {
  const path = join(work.path, "c.lock");
  const other = Bun.spawn(["flock", path, "sleep", "0.3"]);
  for (let i = 0; i < 100 && !(Bun.spawnSync(["flock", "-n", path, "true"]).exitCode === 1); i++) {
    await Bun.sleep(5);
  }
  const log: string[] = [];
  let ticks = 0;
  const timer = setInterval(() => ticks++, 10);
  const start = Date.now();
  await holder(path, "d", 1, log);
  clearInterval(timer);
  await other.exited;
  expect(log).toEqual(["d+", "d-"]);
  expect(Date.now() - start).toBeGreaterThanOrEqual(150); // it did wait for the other process
  expect(ticks).toBeGreaterThan(5); // and timers ran meanwhile
});
