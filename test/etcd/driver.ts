/**
 * Runs EtcdClient calls inside the etcd test netns (the test process cannot reach it): reads
 * {options, calls: [[method, ...args]]} on stdin, prints one JSON line per call:
 * {ok: result} or {error: message, unavailable}.
 */
import { EtcdClient, EtcdError } from "../../src/etcd/client.ts";

const input = JSON.parse(await new Response(Bun.stdin.stream()).text());
const client = new EtcdClient(input.options);
const out: unknown[] = [];
for (const [method, ...args] of input.calls as [string, ...unknown[]][]) {
  try {
    // biome-ignore lint/suspicious/noExplicitAny: dispatch by name from the test's script
    const r = await (client as any)[method](...args);
    out.push({ ok: r ?? null });
  } catch (err) {
    out.push({
      error: err instanceof Error ? err.message : String(err),
      unavailable: err instanceof EtcdError && err.unavailable,
    });
  }
}
process.stdout.write(`${JSON.stringify(out)}\n`);
