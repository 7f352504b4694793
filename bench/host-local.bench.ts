/**
 * host-local ADD on a /16 that is 0 %, 50 % and 95 % full: the compiled tscni vs upstream's Go
 * host-local, each on its own copy of the same store, runs interleaved. Upstream reads every
 * reservation file on each ADD (GetByID); ours finds a container's entries through its index.
 * Goals: ours 95 % / 0 % ≤ 1.5; ≤ 0.1× upstream at 95 %; within 1.3× of upstream at 0 %.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { interleaved, machineLine, type Side, type Stats, table, writeSection } from "./lib.ts";

const repo = resolve(import.meta.dir, "..");
const root = mkdtempSync(join(tmpdir(), "tscni-bench-hl-"));
const bin = join(root, "bin");
mkdirSync(bin);
symlinkSync(join(repo, "dist/tscni"), join(bin, "host-local"));
const USABLE = 65534 - 1; // 10.99.0.0/16 less network, broadcast and the gateway

function conf(network: string): Uint8Array {
  return new TextEncoder().encode(
    JSON.stringify({
      cniVersion: "1.0.0",
      name: network,
      type: "host-local",
      ipam: { type: "host-local", subnet: "10.99.0.0/16", dataDir: join(root, "data") },
    }),
  );
}

/** Fills the network's store like upstream would have: one file per IP, owner "<id>\r\n<ifname>". */
function fill(network: string, fraction: number): void {
  const dir = join(root, "data", network);
  mkdirSync(dir, { recursive: true });
  const n = Math.floor(USABLE * fraction);
  let last = "";
  for (let i = 0; i < n; i++) {
    const v = 2 + i; // 10.99.0.2 upward (10.99.0.1 is the gateway)
    last = `10.99.${v >> 8}.${v & 255}`;
    writeFileSync(join(dir, last), `fill-${i}\r\neth0`);
  }
  if (last) writeFileSync(join(dir, "last_reserved_ip.0"), last);
}

let seq = 0;
function side(name: string, exe: string, network: string): Side {
  let id = "";
  const call = (cmd: string) => {
    const p = Bun.spawnSync([exe], {
      env: {
        CNI_COMMAND: cmd,
        CNI_CONTAINERID: id,
        CNI_NETNS: "/dev/null",
        CNI_IFNAME: "eth0",
        CNI_PATH: bin,
      },
      stdin: conf(network),
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

const rows: { fill: number; stats: Stats[] }[] = [];
try {
  for (const fraction of [0, 0.5, 0.95]) {
    const pct = Math.round(fraction * 100);
    fill(`ours${pct}`, fraction);
    fill(`up${pct}`, fraction);
    const iterations = fraction > 0 ? 10 : 40;
    const stats = await interleaved(
      [
        side("tscni", join(bin, "host-local"), `ours${pct}`),
        side("upstream", "/usr/lib/cni/host-local", `up${pct}`),
      ],
      iterations,
      2,
    );
    rows.push({ fill: pct, stats });
    console.log(`${pct} % full:\n${table(stats)}`);
  }
  const ours = (p: number) => rows.find((r) => r.fill === p)!.stats[0]!.medianMs;
  const md = [
    "## host-local ADD on a /16 (process included)",
    "",
    machineLine(),
    "",
    ...rows.flatMap((r) => [`### ${r.fill} % full`, "", table(r.stats), ""]),
    `tscni 95 % / 0 %: ${(ours(95) / ours(0)).toFixed(2)} (goal ≤ 1.5)`,
  ].join("\n");
  writeSection("host-local", md);
} finally {
  rmSync(root, { recursive: true, force: true });
}
