/**
 * portmap ADD (nftables backend) on a host that already has 1,000 containers' port mappings vs one
 * that has none; DEL after each ADD, untimed. Upstream's Go portmap (iptables, plugins 1.1.1) on an
 * empty host is shown for scale. Each host is a throwaway netns (with a bridge that routes the
 * container addresses); every plugin run is `nsenter --net=<netns> <plugin>`, the same for all sides.
 * Goal: ours with 1,000 / ours with none ≤ 1.2 (the ADD is one `nft -f` of `add element`s, which
 * does not read the table).
 */
import { existsSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { nftApply } from "../src/firewall/nft.ts";
import { addElementLines, desiredElems } from "../src/plugins/meta/portmap/nft.ts";
import { interleaved, machineLine, type Side, table, writeSection } from "./lib.ts";

const repo = resolve(import.meta.dir, "..");
const dir = mkdtempSync(join(tmpdir(), "tscni-bench-portmap-"));
const EXISTING = 1000;

function sh(cmd: string[]): void {
  const p = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`${cmd.join(" ")}: ${p.stderr.toString().trim()}`);
}

/** The compiled tscni as "portmap" when its registry has it, else portmap's main.ts compiled alone. */
function ourPlugin(): string {
  const link = join(dir, "portmap");
  const dist = join(repo, "dist/tscni");
  if (existsSync(dist)) {
    symlinkSync(dist, link);
    const p = Bun.spawnSync([link], {
      env: { CNI_COMMAND: "VERSION" },
      stdin: new TextEncoder().encode("{}"),
    });
    if (p.exitCode === 0) return link;
    rmSync(link);
  }
  sh([
    process.execPath,
    "build",
    "--compile",
    "--minify",
    join(repo, "src/plugins/meta/portmap/main.ts"),
    "--outfile",
    link,
  ]);
  return link;
}

const hosts: string[] = [];
function makeHost(tag: string): string {
  const name = `tscni-bench-pm-${tag}-${process.pid}`;
  sh(["ip", "netns", "add", name]);
  hosts.push(name);
  for (const cmd of [
    ["link", "add", "br0", "type", "bridge"],
    ["addr", "add", "10.99.0.1/16", "dev", "br0"],
    ["link", "set", "br0", "up"],
  ]) {
    sh(["ip", "-n", name, ...cmd]);
  }
  return name;
}

function conf(id: number, ip: string): Uint8Array {
  return new TextEncoder().encode(
    JSON.stringify({
      cniVersion: "1.0.0",
      name: "benchnet",
      type: "portmap",
      runtimeConfig: {
        portMappings: [
          { hostPort: 8080 + (id % 1000), containerPort: 80, protocol: "tcp" },
          { hostPort: 8080 + (id % 1000), containerPort: 80, protocol: "udp" },
        ],
      },
      prevResult: {
        cniVersion: "1.0.0",
        interfaces: [{ name: "eth0", sandbox: "/var/run/netns/bench" }],
        ips: [{ address: `${ip}/16`, interface: 0 }],
      },
    }),
  );
}

function call(host: string, exe: string, verb: string, id: string, stdin: Uint8Array): void {
  const p = Bun.spawnSync(["nsenter", `--net=/var/run/netns/${host}`, exe], {
    env: {
      PATH: process.env.PATH ?? "/usr/sbin:/usr/bin",
      CNI_COMMAND: verb,
      CNI_CONTAINERID: id,
      CNI_NETNS: "/var/run/netns/bench",
      CNI_IFNAME: "eth0",
      CNI_PATH: "/usr/lib/cni",
    },
    stdin,
  });
  if (p.exitCode !== 0) throw new Error(`${exe} ${verb} in ${host}: ${p.stdout}${p.stderr}`);
}

let seq = 0;
function side(name: string, host: string, exe: string): Side {
  let id = "";
  let stdin: Uint8Array = new Uint8Array();
  return {
    name,
    before: () => {
      const n = ++seq;
      id = `bench-${n}`;
      stdin = conf(n, `10.99.${200 + ((n >> 8) % 50)}.${n & 255 || 1}`);
    },
    run: () => call(host, exe, "ADD", id, stdin),
    after: () => call(host, exe, "DEL", id, stdin),
  };
}

/** 1,000 containers' elements in one transaction, as 1,000 ADDs would have left them. */
async function fill(host: string, exe: string): Promise<void> {
  call(host, exe, "ADD", "structure", conf(0, "10.99.250.1"));
  const lines: string[] = [];
  for (let i = 0; i < EXISTING; i++) {
    const v = 0x100 + i; // 10.99.1.0 upward, away from the bridge's 10.99.0.1
    const ip = `10.99.${v >> 8}.${v & 255}`;
    const owner = { network: "benchnet", containerID: `existing-${i}`, ifName: "eth0" };
    lines.push(
      ...addElementLines(
        desiredElems(owner, {
          snat: true,
          masqAll: false,
          portMappings: [
            { hostPort: 20000 + i, containerPort: 80, protocol: "tcp" },
            { hostPort: 20000 + i, containerPort: 80, protocol: "udp" },
          ],
          addrs: [{ family: 4, ip, prefix: 16, subnet: "10.99.0.0/16" }],
        }),
      ),
    );
  }
  await nftApply(`${lines.join("\n")}\n`, { netnsPath: `/var/run/netns/${host}` });
}

try {
  const exe = ourPlugin();
  const full = makeHost("full");
  const empty = makeHost("empty");
  const upstream = makeHost("up");
  await fill(full, exe);
  call(empty, exe, "ADD", "structure", conf(0, "10.99.250.1"));
  const stats = await interleaved(
    [
      side(`tscni, ${EXISTING} existing`, full, exe),
      side("tscni, none", empty, exe),
      side("upstream (iptables), none", upstream, "/usr/lib/cni/portmap"),
    ],
    30,
    3,
  );
  const ratio = stats[0]!.medianMs / stats[1]!.medianMs;
  const md = [
    "## portmap ADD, nftables backend (process included; DEL untimed)",
    "",
    machineLine(),
    "",
    table(stats, "tscni, none"),
    "",
    `tscni ${EXISTING} existing / none: ${ratio.toFixed(2)} (goal ≤ 1.2)`,
  ].join("\n");
  console.log(md);
  writeSection("portmap", md);
} finally {
  for (const h of hosts) Bun.spawnSync(["ip", "netns", "del", h]);
  rmSync(dir, { recursive: true, force: true });
}
