/**
 * dhcp IPAM ADD latency with dnsmasq on this machine, every side driven by tscni's libcni (one
 * plugin, `type: dhcp`, as a list): the compiled tscni exec'd as `dhcp` and talking to its daemon;
 * the same run in-process (libcni's inProcessExec: how tscni's own runtime calls it); upstream's
 * /usr/lib/cni/dhcp exec'd and talking to upstream's daemon. Same dnsmasq, interleaved. Each ADD is
 * a full DORA for a container whose eth0 is a port of the server's bridge (DEL, untimed, releases
 * it). Each executable's VERSION is timed too, to separate process start-up from the daemon's work.
 * A fourth side runs ours through the warm path (tscni-launcher + `tscni warm serve`, docs/warm-path.md).
 * Goal: ≤ 0.5× upstream.
 */
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { loadPlugin } from "../src/cli/registry.ts";
import { CNIConfig, defaultExec, type Exec, inProcessExec } from "../src/libcni/index.ts";
import { pluginMain } from "../src/skel/skel.ts";
import { confListFromObject } from "../src/spec/conf.ts";
import { buildTscni } from "../test/helpers/build.ts";
import { cleanupAll } from "../test/helpers/netns.ts";
import { addContainer, startDaemon, startServer, UPSTREAM_DHCP } from "../test/plugins/ipam/dhcp/fixture.ts";
import { interleaved, machineLine, type Side, table, writeSection } from "./lib.ts";

const exe = buildTscni();
const root = mkdtempSync(join(tmpdir(), "tscni-bench-dhcp-"));
const ourBin = join(root, "bin");
mkdirSync(ourBin);
const ours = join(ourBin, "dhcp");
symlinkSync(exe, ours);

// the warm path: the launcher beside the executable, the helper on a socket of this run
const launcher = join(dirname(exe), "tscni-launcher");
Bun.spawnSync(["cc", "-O2", "-static", "-o", launcher, join(import.meta.dir, "../native/warm-launcher.c")]);
const warmBin = join(root, "warm");
mkdirSync(warmBin);
symlinkSync(launcher, join(warmBin, "dhcp"));
process.env.TSCNI_WARM_SOCK = join(root, "run", "warm.sock");
const helper = spawn(exe, ["warm", "serve", "--socket", process.env.TSCNI_WARM_SOCK], {
  stdio: ["ignore", "ignore", "pipe"],
});
await new Promise((resolve) => helper.stderr?.once("data", resolve));

const srv = await startServer({
  extra: ["--dhcp-option=option:router,10.$N.0.1", "--dhcp-option=option:dns-server,10.$N.0.53"],
});
const dOurs = await startDaemon({ exe: ours, dir: join(root, "ours") });
const dUp = await startDaemon({ upstream: true, dir: join(root, "up") });

let seq = 0;
function side(name: string, cniPath: string, socket: string, exec: Exec): Side {
  const c = addContainer(srv);
  const list = confListFromObject({
    cniVersion: "1.0.0",
    name: "dhbench",
    plugins: [{ type: "dhcp", ipam: { type: "dhcp", daemonSocketPath: socket } }],
  });
  const cni = new CNIConfig({ path: [cniPath], cacheDir: join(root, `cache-${++seq}`), exec });
  let rt = { containerID: "", netNS: c.path, ifName: "eth0" };
  return {
    name,
    before: () => {
      rt = { ...rt, containerID: `bench-${++seq}` };
    },
    run: () => cni.addNetworkList(list, rt),
    after: () => cni.delNetworkList(list, rt),
  };
}

/** The same executable's VERSION: its start-up alone. */
function version(name: string, plugin: string): Side {
  return {
    name,
    run: () => {
      const p = Bun.spawnSync([plugin], {
        env: { CNI_COMMAND: "VERSION" },
        stdin: new TextEncoder().encode("{}"),
      });
      if (p.exitCode !== 0) throw new Error(`${name}: ${p.stdout}`);
    },
  };
}

try {
  const stats = await interleaved(
    [
      side("tscni ADD (exec)", ourBin, dOurs.socket, defaultExec),
      side(
        "tscni ADD (in-process)",
        ourBin,
        dOurs.socket,
        inProcessExec({ resolve: loadPlugin, pluginMain, self: exe }),
      ),
      side("tscni ADD (warm path: launcher + helper)", warmBin, dOurs.socket, defaultExec),
      side("upstream ADD", "/usr/lib/cni", dUp.socket, defaultExec),
      version("tscni VERSION", ours),
      version("upstream VERSION", UPSTREAM_DHCP),
    ],
    20,
    2,
  );
  const t = table(stats, "upstream ADD");
  const med = (n: string) => stats.find((s) => s.name === n)!.medianMs;
  const oursD = med("tscni ADD (exec)") - med("tscni VERSION");
  const upD = med("upstream ADD") - med("upstream VERSION");
  const daemon =
    `ADD − VERSION (the daemon's DORA and the plugin ↔ daemon call, without process start-up): ` +
    `tscni ${oursD.toFixed(2)} ms, upstream ${upD.toFixed(2)} ms (${(oursD / upD).toFixed(2)}×).`;
  console.log(`${t}\n${daemon}`);
  writeSection(
    "dhcp",
    `## dhcp IPAM ADD (DORA against dnsmasq in a netns, through each side's daemon, driven by libcni)\n\n${machineLine()}\n\n${t}\n\n${daemon}\n\nGoal: ≤ 0.5× upstream.`,
  );
} finally {
  helper.kill("SIGKILL");
  await dOurs.stop();
  await dUp.stop();
  srv.stop();
  cleanupAll();
  rmSync(root, { recursive: true, force: true });
}
