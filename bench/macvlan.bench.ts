/**
 * macvlan + host-local through libcni's CNIConfig: ADD, DEL and an ADD+DEL cycle, ours (the compiled
 * dist/tscni, run through links named macvlan/host-local, so IPAM runs in-process) vs upstream's Go
 * plugins from /usr/lib/cni, on one veth master in a throwaway host netns: this file re-executes itself
 * inside one (`ip netns exec`). A third side reaches the same plugins through the warm path (links to
 * the native launcher, dist/tscni-launcher, and the resident helper `tscni warm serve`; docs/warm-path.md)
 * as containerd/CRI-O would once it is installed. Goal: cycle ≤ 0.8× upstream.
 */
import { chmodSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { CNIConfig, type RuntimeConf } from "../src/libcni/index.ts";
import { createNamedNetns, deleteNamedNetns } from "../src/ns/index.ts";
import { parseConfList } from "../src/spec/conf.ts";
import type { NetConfList } from "../src/spec/types.ts";
import { interleaved, machineLine, type Side, table, writeSection } from "./lib.ts";

const repo = resolve(import.meta.dir, "..");
const TSCNI = join(repo, "dist/tscni");
const UPSTREAM = "/usr/lib/cni";
const ITERATIONS = Number(process.env.TSCNI_BENCH_ITERATIONS ?? 40);
const WARMUP = 3;
const INNER = "--inner";

function tag(): string {
  return Math.random().toString(36).slice(2, 8);
}

/** Outer process: make the host netns, run this file inside it, always delete it. */
function outer(): number {
  const ns = `tscni-bench-mv-${tag()}`;
  const add = Bun.spawnSync(["ip", "netns", "add", ns]);
  if (add.exitCode !== 0) throw new Error(`ip netns add ${ns}: ${add.stderr}`);
  try {
    const p = Bun.spawnSync(["ip", "netns", "exec", ns, process.execPath, import.meta.path, INNER], {
      stdout: "inherit",
      stderr: "inherit",
    });
    return p.exitCode ?? 1;
  } finally {
    Bun.spawnSync(["ip", "netns", "del", ns]);
  }
}

/** Whether dist/tscni answers as `name` (the lead registers plugins in the multicall registry). */
function tscniKnows(name: string): boolean {
  const p = Bun.spawnSync([TSCNI, name], { env: { CNI_COMMAND: "VERSION", PATH: process.env.PATH ?? "" } });
  return p.exitCode === 0;
}

/** CNI_PATH dir for our side: links to dist/tscni, or a bun wrapper for a plugin tscni does not know yet. */
function ourPluginDir(dir: string): { dir: string; note: string } {
  const path = join(dir, "ours-bin");
  Bun.spawnSync(["mkdir", "-p", path]);
  const notes: string[] = [];
  const bun = join(repo, "node_modules/.bin/bun");
  for (const [name, main] of [
    ["macvlan", "src/plugins/main/macvlan/main.ts"],
    ["host-local", "src/plugins/ipam/host-local/main.ts"],
  ] as const) {
    const file = join(path, name);
    if (tscniKnows(name)) {
      symlinkSync(TSCNI, file);
    } else {
      writeFileSync(file, `#!/bin/sh\nexec ${bun} ${join(repo, main)} "$@"\n`);
      chmodSync(file, 0o755);
      notes.push(name);
    }
  }
  const note = notes.length
    ? `Note: dist/tscni does not know ${notes.join(", ")} yet; ran through \`bun <main.ts>\` wrappers instead.`
    : "";
  return { dir: path, note };
}

/** CNI_PATH dir whose macvlan/host-local are the launcher, and the helper it talks to (dies with us). */
async function warmPluginDir(dir: string): Promise<{ dir: string; stop: () => void }> {
  const launcher = join(dirname(TSCNI), "tscni-launcher");
  const cc = Bun.spawnSync(["cc", "-O2", "-static", "-o", launcher, join(repo, "native/warm-launcher.c")]);
  if (cc.exitCode !== 0) throw new Error(`building the launcher: ${cc.stderr}`);
  const path = join(dir, "warm-bin");
  Bun.spawnSync(["mkdir", "-p", path]);
  for (const name of ["macvlan", "host-local"]) symlinkSync(launcher, join(path, name));
  const sock = join(dir, "warm.sock");
  const helper = Bun.spawn(["setpriv", "--pdeathsig", "KILL", TSCNI, "warm", "serve", "--socket", sock], {
    stdout: "ignore",
    stderr: "ignore",
  });
  for (let i = 0; i < 200 && !(await Bun.file(sock).exists()); i++) await Bun.sleep(25);
  // libcni passes its environment on to the plugins, as a runtime does: the launcher finds the socket.
  process.env.TSCNI_WARM_SOCK = sock;
  process.env.TSCNI_WARM_FALLBACK = TSCNI;
  return { dir: path, stop: () => helper.kill("SIGKILL") };
}

const MASTER = "mvbench0";

function confList(name: string, subnet: string, dataDir: string): NetConfList {
  const list = {
    cniVersion: "1.0.0",
    name,
    plugins: [
      { type: "macvlan", master: MASTER, mode: "bridge", ipam: { type: "host-local", dataDir, subnet } },
    ],
  };
  return parseConfList(JSON.stringify(list));
}

interface Sut {
  name: string;
  cni: CNIConfig;
  list: NetConfList;
  rt: RuntimeConf;
}

function sut(name: string, path: string, dir: string, n: number, netns: string): Sut {
  const cni = new CNIConfig({ path: [path], cacheDir: join(dir, `cache-${n}`) });
  const list = confList(`bench${n}`, `10.${200 + n}.0.0/16`, join(dir, `data-${n}`));
  return { name, cni, list, rt: { containerID: `bench${n}`, netNS: netns, ifName: "eth0" } };
}

async function inner(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "tscni-bench-macvlan-"));
  const veth = Bun.spawnSync(["ip", "link", "add", MASTER, "type", "veth", "peer", "name", `${MASTER}p`]);
  if (veth.exitCode !== 0) throw new Error(`ip link add ${MASTER}: ${veth.stderr}`);
  Bun.spawnSync(["ip", "link", "set", MASTER, "up"]);
  Bun.spawnSync(["ip", "link", "set", `${MASTER}p`, "up"]);
  const netns: string[] = [];
  let warm: { dir: string; stop: () => void } | undefined;
  try {
    const ours = ourPluginDir(dir);
    warm = await warmPluginDir(dir);
    for (let i = 0; i < 3; i++) netns.push(createNamedNetns(`tscni-bench-c-${tag()}`));
    const sides = [
      sut("tscni", ours.dir, dir, 0, netns[0]!),
      sut("tscni, warm path", warm.dir, dir, 2, netns[2]!),
      sut("upstream", UPSTREAM, dir, 1, netns[1]!),
    ];
    const add = (s: Sut) => s.cni.addNetworkList(s.list, s.rt);
    const del = (s: Sut) => s.cni.delNetworkList(s.list, s.rt);
    const bench = (make: (s: Sut) => Side) => interleaved(sides.map(make), ITERATIONS, WARMUP);

    const adds = await bench((s) => ({ name: s.name, run: () => add(s), after: () => del(s) }));
    const dels = await bench((s) => ({ name: s.name, before: () => add(s), run: () => del(s) }));
    const cycles = await bench((s) => ({
      name: s.name,
      run: async () => {
        await add(s);
        await del(s);
      },
    }));
    const ratio = (name: string) =>
      cycles.find((r) => r.name === name)!.medianMs / cycles.find((r) => r.name === "upstream")!.medianMs;
    const md = [
      "## macvlan + host-local through libcni (ADD, DEL, ADD+DEL)",
      "",
      machineLine(),
      "",
      "Ours: dist/tscni through links (IPAM in-process), exec'd; ours through the warm path (links to the",
      "native launcher, the resident `tscni warm serve` pool running the plugin); upstream: /usr/lib/cni Go",
      "plugins; all driven by src/libcni CNIConfig (exec, as a runtime) in a throwaway host netns, macvlan",
      "bridge mode on a veth master + host-local.",
      "",
      "ADD",
      "",
      table(adds),
      "",
      "DEL",
      "",
      table(dels),
      "",
      "ADD+DEL cycle",
      "",
      table(cycles),
      "",
      `Goal: cycle ≤ 0.8× upstream — exec'd ${ratio("tscni").toFixed(2)}×, through the warm path ${ratio("tscni, warm path").toFixed(2)}×.`,
      ...(ours.note ? ["", ours.note] : []),
    ].join("\n");
    console.log(md);
    writeSection("macvlan", md);
  } finally {
    warm?.stop();
    for (const ns of netns) deleteNamedNetns(ns);
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv.includes(INNER)) await inner();
else process.exitCode = outer();
