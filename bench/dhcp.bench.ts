/**
 * dhcp IPAM ADD latency with dnsmasq on this machine: the compiled tscni run as `dhcp` talking to
 * its daemon vs upstream's /usr/lib/cni/dhcp plugin talking to upstream's daemon, same driver, same
 * dnsmasq, interleaved. Each ADD is a full DORA for a container whose eth0 is a port of the
 * server's bridge (DEL, untimed, releases it). Goal: ≤ 0.5× upstream.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildTscni } from "../test/helpers/build.ts";
import { cleanupAll } from "../test/helpers/netns.ts";
import {
  addContainer,
  ipamConf,
  startDaemon,
  startServer,
  UPSTREAM_DHCP,
} from "../test/plugins/ipam/dhcp/fixture.ts";
import { interleaved, machineLine, type Side, table, writeSection } from "./lib.ts";

const exe = buildTscni();
const root = mkdtempSync(join(tmpdir(), "tscni-bench-dhcp-"));
mkdirSync(join(root, "bin"));
const ours = join(root, "bin", "dhcp");
symlinkSync(exe, ours);

const srv = await startServer({
  extra: ["--dhcp-option=option:router,10.$N.0.1", "--dhcp-option=option:dns-server,10.$N.0.53"],
});
const dOurs = await startDaemon({ exe: ours, dir: join(root, "ours") });
const dUp = await startDaemon({ upstream: true, dir: join(root, "up") });

let seq = 0;
function side(name: string, plugin: string, socket: string): Side {
  const c = addContainer(srv);
  let id = "";
  const call = (cmd: string) => {
    const p = Bun.spawnSync([plugin], {
      env: {
        CNI_COMMAND: cmd,
        CNI_CONTAINERID: id,
        CNI_NETNS: c.path,
        CNI_IFNAME: "eth0",
        CNI_PATH: "/nonexistent",
      },
      stdin: new TextEncoder().encode(JSON.stringify(ipamConf(socket))),
    });
    if (p.exitCode !== 0) throw new Error(`${name} ${cmd}: ${p.stdout}${p.stderr}`);
  };
  return {
    name,
    before: () => {
      id = `bench-${++seq}`;
    },
    run: () => call("ADD"),
    after: () => call("DEL"),
  };
}

/** The same executable's VERSION: its start-up alone, to take out of ADD. */
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
      side("tscni ADD", ours, dOurs.socket),
      side("upstream ADD", UPSTREAM_DHCP, dUp.socket),
      version("tscni VERSION", ours),
      version("upstream VERSION", UPSTREAM_DHCP),
    ],
    20,
    2,
  );
  const t = table(stats, "upstream ADD");
  const med = (n: string) => stats.find((s) => s.name === n)!.medianMs;
  const oursD = med("tscni ADD") - med("tscni VERSION");
  const upD = med("upstream ADD") - med("upstream VERSION");
  const daemon = `ADD − VERSION (the daemon's DORA + the plugin ↔ daemon call, without process start-up): tscni ${oursD.toFixed(2)} ms, upstream ${upD.toFixed(2)} ms (${(oursD / upD).toFixed(2)}×).`;
  console.log(`${t}\n${daemon}`);
  writeSection(
    "dhcp",
    `## dhcp IPAM ADD (DORA against dnsmasq in a netns, through each side's daemon)\n\n${machineLine()}\n\n${t}\n\n${daemon}\n\nGoal: ≤ 0.5× upstream.`,
  );
} finally {
  await dOurs.stop();
  await dUp.stop();
  srv.stop();
  cleanupAll();
  rmSync(root, { recursive: true, force: true });
}
