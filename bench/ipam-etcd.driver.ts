/**
 * The part of bench/ipam-etcd.bench.ts that runs inside the etcd netns (the members listen there):
 * argv: <dir with whereabouts + host-local links to tscni> <endpoints> <scratch dir> <dir with the same
 * links to tscni-launcher> <tscni>. The driver starts the warm helper (`tscni warm serve`) itself, inside
 * the etcd netns, for the warm-path sides. Prints one JSON object with the measurements.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { EtcdClient } from "../src/etcd/client.ts";
import { formatAddr } from "../src/ipam-common/ipmath.ts";
import { loadWhereaboutsConf, type PoolRange } from "../src/ipam-etcd/config.ts";
import { Pool } from "../src/ipam-etcd/pool.ts";
import { interleaved } from "./lib.ts";

const [execBin, endpoints, scratch, warmBin, tscni] = process.argv.slice(2) as [
  string,
  string,
  string,
  string,
  string,
];

/** How a plugin is reached: exec'd tscni (today) or the launcher handing the call to the resident helper. */
interface Path {
  bin: string;
  env: Record<string, string>;
}
const EXEC: Path = { bin: execBin, env: {} };
const WARM_SOCK = join(scratch, "warm.sock");
const WARM: Path = { bin: warmBin, env: { TSCNI_WARM_SOCK: WARM_SOCK, TSCNI_WARM_FALLBACK: tscni } };
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

function envFor(path: Path, cmd: string, id: string, ifName = "eth0"): Record<string, string> {
  return {
    ...path.env,
    CNI_COMMAND: cmd,
    CNI_CONTAINERID: id,
    CNI_NETNS: "/proc/self/ns/net",
    CNI_IFNAME: ifName,
    CNI_PATH: path.bin,
  };
}

function callSync(path: Path, plugin: string, cmd: string, id: string, stdin: Uint8Array): void {
  const p = Bun.spawnSync([join(path.bin, plugin)], { env: envFor(path, cmd, id), stdin });
  if (p.exitCode !== 0) throw new Error(`${plugin} ${cmd} ${id}: ${p.stdout}${p.stderr}`);
}

async function call(
  path: Path,
  plugin: string,
  cmd: string,
  id: string,
  ifName: string,
  stdin: Uint8Array,
): Promise<string> {
  const p = Bun.spawn([join(path.bin, plugin)], {
    env: envFor(path, cmd, id, ifName),
    stdin,
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, code] = await Promise.all([new Response(p.stdout).text(), p.exited]);
  if (code !== 0) throw new Error(`${plugin} ${cmd} ${id}/${ifName}: ${out}`);
  return out;
}

let seq = 0;
function side(name: string, plugin: string, conf: Uint8Array, path = EXEC) {
  let id = "";
  return {
    name,
    before: () => {
      id = `b-${++seq}`;
    },
    run: () => callSync(path, plugin, "ADD", id, conf),
    after: () => callSync(path, plugin, "DEL", id, conf),
  };
}

// The warm helper, in this netns (the launcher hands it the call; it runs the plugin in-process).
// setpriv --pdeathsig: the helper dies with this driver however it ends (the pool's workers with it).
const helper = Bun.spawn(["setpriv", "--pdeathsig", "KILL", tscni, "warm", "serve", "--socket", WARM_SOCK], {
  stdout: "ignore",
  stderr: "ignore",
});
for (let i = 0; i < 200 && !(await Bun.file(WARM_SOCK).exists()); i++) await Bun.sleep(25);

// 1. One ADD: whereabouts on the 3-member cluster vs host-local (both the compiled tscni), exec'd as a
//    runtime does; then the same two through the warm path.
const one = await interleaved(
  [side("whereabouts (etcd)", "whereabouts", wconf("one", "n1")), side("host-local", "host-local", hlconf())],
  30,
  3,
);
console.error(`one ADD exec'd: done at ${(performance.now() / 1000).toFixed(1)} s`);
const oneWarm = await interleaved(
  [
    side("whereabouts (etcd), warm path", "whereabouts", wconf("onew", "n1"), WARM),
    side("host-local, warm path", "host-local", hlconf(), WARM),
  ],
  30,
  3,
);

// 2. 64-way concurrency across 2 nodes, one range.
async function wave(n: number, network: string): Promise<{ ms: number; distinct: number }> {
  const t0 = performance.now();
  const outs = await Promise.all(
    Array.from({ length: n }, (_, i) =>
      call(EXEC, "whereabouts", "ADD", `w${i}`, "eth0", wconf(network, `node-${i % 2}`)),
    ),
  );
  const ms = performance.now() - t0;
  const distinct = new Set(outs.map((o) => JSON.parse(o).ips[0].address)).size;
  await Promise.all(
    Array.from({ length: n }, (_, i) =>
      call(EXEC, "whereabouts", "DEL", `w${i}`, "eth0", wconf(network, `node-${i % 2}`)),
    ),
  );
  return { ms, distinct };
}
console.error(`one ADD warm: done at ${(performance.now() / 1000).toFixed(1)} s`);
const w64 = await wave(64, "wave");
console.error(`64-way: done at ${(performance.now() / 1000).toFixed(1)} s`);

// 3. whereabouts' failing case: 128 pods × 16 attachments (16 networks, one range each), 2 nodes;
//    the pods start at once, each pod's attachments in turn (multus calls them one after another).
const PODS = 128;
const NETS = 16;
async function bigCase(path: Path, firstOctet: number) {
  const t0 = performance.now();
  const addrs = await Promise.all(
    Array.from({ length: PODS }, async (_, p) => {
      const got: string[] = [];
      for (let k = 0; k < NETS; k++) {
        const net = `net${firstOctet + k}`;
        const conf = wconf(net, `node-${p % 2}`, `10.${firstOctet + k}.0.0/24`);
        const out = await call(path, "whereabouts", "ADD", `pod${p}`, `net${k}`, conf);
        got.push(`${k} ${JSON.parse(out).ips[0].address}`);
      }
      return got;
    }),
  );
  const ms = performance.now() - t0;
  const flat = addrs.flat();
  return { pods: PODS, nets: NETS, ms, allocations: flat.length, distinct: new Set(flat).size };
}
// TSCNI_BENCH_QUICK=1 leaves out the exec'd 2,048 (minutes of process start-ups).
const big = process.env.TSCNI_BENCH_QUICK === "1" ? undefined : await bigCase(EXEC, 100);
console.error(`2,048 exec'd: done at ${(performance.now() / 1000).toFixed(1)} s`);
const bigWarm = await bigCase(WARM, 140);
console.error(`2,048 warm: done at ${(performance.now() / 1000).toFixed(1)} s`);

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
console.error(`in-process: done at ${(performance.now() / 1000).toFixed(1)} s`);
const inflat = inproc.flat();

// The helper is a child: it would keep this process alive.
helper.kill("SIGKILL");
process.stdout.write(
  `${JSON.stringify({ inproc: { ms: inprocMs, allocations: inflat.length, distinct: new Set(inflat).size }, one, oneWarm, w64, big, bigWarm })}\n`,
);
