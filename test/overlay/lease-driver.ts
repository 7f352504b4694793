/**
 * Runs src/overlay/lease.ts calls inside the etcd test netns (the test process cannot reach it): reads
 * {endpoints, prefix, steps} on stdin; a step is [op, ...args], a list of steps runs in parallel; prints
 * one JSON array of results ({ok} or {error}).
 */
import { EtcdClient } from "../../src/etcd/client.ts";
import {
  acquireLease,
  type HeldLease,
  listLeases,
  readNetworkConfig,
  renewLease,
} from "../../src/overlay/lease.ts";

const input = JSON.parse(await new Response(Bun.stdin.stream()).text());
const etcd = new EtcdClient({ endpoints: input.endpoints });
const prefix: string = input.prefix;
const held: HeldLease[] = [];

async function step([op, ...args]: [string, ...unknown[]]): Promise<unknown> {
  switch (op) {
    case "config":
      return etcd.put(`${prefix}/config`, args[0] as string);
    case "acquire": {
      const o = args[0] as { publicIP: string; vtepMAC: string; ttl: number };
      const h = await acquireLease(etcd, await readNetworkConfig(etcd, prefix), {
        publicIP: o.publicIP,
        vtepMAC: o.vtepMAC,
        ttlSeconds: o.ttl,
        prefix,
      });
      held.push(h);
      return h.lease;
    }
    case "renew": {
      const i = args[0] as number;
      const r = await renewLease(etcd, held[i]!, args[1] as number);
      if (r) held[i] = r;
      return !!r;
    }
    case "list":
      return (await listLeases(etcd, prefix)).sort((a, b) => a.subnet.localeCompare(b.subnet));
    case "sleep":
      return Bun.sleep(args[0] as number);
    default:
      throw new Error(`unknown op ${op}`);
  }
}

const out: unknown[] = [];
for (const s of input.steps as unknown[]) {
  const run = async (x: [string, ...unknown[]]) => {
    try {
      return { ok: (await step(x)) ?? null };
    } catch (err) {
      return { error: err instanceof Error ? err.message : String(err) };
    }
  };
  if (Array.isArray((s as unknown[])[0]))
    out.push(await Promise.all((s as [string, ...unknown[]][]).map(run)));
  else out.push(await run(s as [string, ...unknown[]]));
}
process.stdout.write(`${JSON.stringify(out)}\n`);
