/**
 * The part of bench/ipam-etcd.bench.ts that runs inside the etcd netns (the members listen there):
 * argv: <tscni executable dir with whereabouts + host-local links> <endpoints> <scratch dir>.
 * Prints one JSON object with the measurements.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { EtcdClient } from "../src/etcd/client.ts";
import { formatAddr } from "../src/ipam-common/ipmath.ts";
import { loadWhereaboutsConf, type PoolRange } from "../src/ipam-etcd/config.ts";
import { Pool } from "../src/ipam-etcd/pool.ts";
import { interleaved } from "./lib.ts";

const [bin, endpoints, scratch] = process.argv.slice(2) as [string, string, string];
const enc = new TextEncoder();

function wconf(network: string, node: string, range = "10.99.0.0/16"): Uint8Array {
  return enc.encode(
    JSON.stringify({
      cniVersion: "1.0.0",
      name: "bench",
      type: "macvlan",
      ipam: { type: "whereabouts", range, network_name: network, node_name: node, etcd_host: endpoints },
    }),
  );
}

function hlconf(): Uint8Array {
  mkdirSync(join(scratch, "hl"), { recursive: true });
  return enc.encode(
    JSON.stringify({
      cniVersion: "1.0.0",
      name: "bench",
      type: "macvlan",
      ipam: { type: "host-local", subnet: "10.98.0.0/16", dataDir: join(scratch, "hl") },
    }),
  );
}

function envFor(cmd: string, id: string, ifName = "eth0"): Record<string, string> {
  return {
    CNI_COMMAND: cmd,
    CNI_CONTAINERID: id,
    CNI_NETNS: "/proc/self/ns/net",
    CNI_IFNAME: ifName,
    CNI_PATH: bin,
  };
}

function callSync(plugin: string, cmd: string, id: string, stdin: Uint8Array): void {
  const p = Bun.spawnSync([join(bin, plugin)], { env: envFor(cmd, id), stdin });
  if (p.exitCode !== 0) throw new Error(`${plugin} ${cmd} ${id}: ${p.stdout}${p.stderr}`);
}

async function call(
  plugin: string,
  cmd: string,
  id: string,
  ifName: string,
  stdin: Uint8Array,
): Promise<string> {
  const p = Bun.spawn([join(bin, plugin)], {
    env: envFor(cmd, id, ifName),
    stdin,
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, code] = await Promise.all([new Response(p.stdout).text(), p.exited]);
  if (code !== 0) throw new Error(`${plugin} ${cmd} ${id}/${ifName}: ${out}`);
  return out;
}

let seq = 0;
function side(name: string, plugin: string, conf: Uint8Array) {
  let id = "";
  return {
    name,
    before: () => {
      id = `b-${++seq}`;
    },
    run: () => callSync(plugin, "ADD", id, conf),
    after: () => callSync(plugin, "DEL", id, conf),
  };
}

// 1. One ADD: whereabouts on the 3-member cluster vs host-local (both the compiled tscni).
const one = await interleaved(
  [side("whereabouts (etcd)", "whereabouts", wconf("one", "n1")), side("host-local", "host-local", hlconf())],
  30,
  3,
);

// 2. 64-way concurrency across 2 nodes, one range.
async function wave(n: number, network: string): Promise<{ ms: number; distinct: number }> {
  const t0 = performance.now();
  const outs = await Promise.all(
    Array.from({ length: n }, (_, i) =>
      call("whereabouts", "ADD", `w${i}`, "eth0", wconf(network, `node-${i % 2}`)),
    ),
  );
  const ms = performance.now() - t0;
  const distinct = new Set(outs.map((o) => JSON.parse(o).ips[0].address)).size;
  await Promise.all(
    Array.from({ length: n }, (_, i) =>
      call("whereabouts", "DEL", `w${i}`, "eth0", wconf(network, `node-${i % 2}`)),
    ),
  );
  return { ms, distinct };
}
const w64 = await wave(64, "wave");

// 3. whereabouts' failing case: 128 pods × 16 attachments (16 networks, one range each), 2 nodes;
//    the pods start at once, each pod's attachments in turn (multus calls them one after another).
const PODS = 128;
const NETS = 16;
const t0 = performance.now();
const addrs = await Promise.all(
  Array.from({ length: PODS }, async (_, p) => {
    const got: string[] = [];
    for (let k = 0; k < NETS; k++) {
      const out = await call(
        "whereabouts",
        "ADD",
        `pod${p}`,
        `net${k}`,
        wconf(`net${k}`, `node-${p % 2}`, `10.${100 + k}.0.0/24`),
      );
      got.push(`${k} ${JSON.parse(out).ips[0].address}`);
    }
    return got;
  }),
);
const bigMs = performance.now() - t0;
const flat = addrs.flat();

// 4. The same 2,048 allocations with the allocator in-process (a runtime using tscni's libcni runs
//    our plugins in its own process): what etcd and the txn design sustain without process start-up.
const client = new EtcdClient({ endpoints: endpoints.split(",") });
const pools = Array.from({ length: NETS }, (_, k) => {
  const conf = loadWhereaboutsConf(wconf(`inproc${k}`, "node-0", `10.${120 + k}.0.0/24`), "");
  return new Pool(client, conf.prefix, conf.ranges[0] as PoolRange);
});
const t1 = performance.now();
const inproc = await Promise.all(
  Array.from({ length: PODS }, async (_, p) => {
    const got: string[] = [];
    for (let k = 0; k < NETS; k++) {
      const a = await (pools[k] as Pool).allocate({
        containerID: `pod${p}`,
        ifName: `net${k}`,
        node: `node-${p % 2}`,
        podNamespace: "",
        podName: "",
      });
      got.push(`${k} ${formatAddr(a)}`);
    }
    return got;
  }),
);
const inprocMs = performance.now() - t1;
const inflat = inproc.flat();

process.stdout.write(
  `${JSON.stringify({ inproc: { ms: inprocMs, allocations: inflat.length, distinct: new Set(inflat).size }, one, w64, big: { pods: PODS, nets: NETS, ms: bigMs, allocations: flat.length, distinct: new Set(flat).size } })}\n`,
);
