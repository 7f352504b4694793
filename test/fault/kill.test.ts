/**
 * kill -9 at every step, then DEL (issue 18 §2), for ptp with ipMasq: the compiled executable runs under
 * `strace -f -e inject=SYSCALL:signal=SIGKILL:when=N` (no hook in the plugin) for N = 1… until the ADD
 * completes, per syscall family (netlink sends, file writes and renames). After each kill: DEL with the same
 * arguments succeeds, then no link besides lo in the container, the host netns as before, no IP
 * reservation and no nft map element; finally a fresh ADD succeeds.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { buildTscni } from "../helpers/build.ts";
import { cleanupAll, makeNetns, type TempNetns, tempDir } from "../helpers/netns.ts";

afterAll(cleanupAll);

const SYSCALLS = (
  process.env["TSCNI_FAULT_KILL_SYSCALLS"] ?? "sendto,sendmsg;write,pwrite64;rename,renameat2"
).split(";");
const MAX_N = Number(process.env["TSCNI_FAULT_KILL_MAX"] ?? 200);

interface Kit {
  host: TempNetns;
  cont: TempNetns;
  data: string;
  bin: string;
}

function kit(): Kit {
  const exe = buildTscni();
  const bin = tempDir("tscni-kill-bin-").path;
  for (const p of ["ptp", "host-local"]) symlinkSync(exe, join(bin, p));
  return { host: makeNetns("kh"), cont: makeNetns("kc"), data: tempDir("tscni-kill-").path, bin };
}

function conf(k: Kit): string {
  return JSON.stringify({
    cniVersion: "1.1.0",
    name: "killnet",
    type: "ptp",
    ipMasq: true,
    ipam: { type: "host-local", ranges: [[{ subnet: "10.78.0.0/24" }]], dataDir: k.data },
  });
}

function plugin(k: Kit, verb: string, inject?: string): { code: number; signal: boolean; out: string } {
  const env = {
    PATH: process.env["PATH"] ?? "/usr/bin:/bin",
    CNI_COMMAND: verb,
    CNI_CONTAINERID: "killctr",
    CNI_NETNS: k.cont.path,
    CNI_IFNAME: "eth0",
    CNI_PATH: k.bin,
  };
  const cmd = ["nsenter", `--net=${k.host.path}`];
  if (inject) cmd.push("strace", "-f", "-qq", "-o", "/dev/null", "-e", `inject=${inject}`);
  cmd.push(join(k.bin, "ptp"));
  const p = Bun.spawnSync(cmd, {
    env,
    stdin: new TextEncoder().encode(conf(k)),
    stdout: "pipe",
    stderr: "pipe",
  });
  const out = p.stdout.toString();
  // strace reports the tracee's death by SIGKILL as its own (exit 137, or killed itself)
  const signal = p.exitCode === 137 || p.signalCode === "SIGKILL";
  return { code: p.exitCode ?? -1, signal, out };
}

function state(k: Kit) {
  const names = (n: TempNetns) => (n.ip("link", "show") as { ifname: string }[]).map((l) => l.ifname).sort();
  const nft = JSON.parse(k.host.run(["nft", "-j", "list", "ruleset"]).stdout || '{"nftables":[]}');
  const elems = (nft.nftables as Record<string, { elem?: unknown[] }>[]).filter(
    (o) => ((o.map ?? o.set)?.elem?.length ?? 0) > 0,
  ).length;
  const dir = join(k.data, "killnet");
  const reservations = existsSync(dir) ? readdirSync(dir).filter((f) => /^[0-9.]+$/.test(f)) : [];
  const routes = (k.host.ip("-4", "route", "show") as unknown[]).length;
  return { host: names(k.host), cont: names(k.cont), elems, reservations, routes };
}

describe("kill -9 during ptp ADD, then DEL", () => {
  for (const sys of SYSCALLS) {
    test(`SIGKILL at the Nth ${sys}: DEL cleans everything, a fresh ADD works`, () => {
      const k = kit();
      const clean = state(k);
      let completed = false;
      let kills = 0;
      for (let n = 1; n <= MAX_N && !completed; n++) {
        const r = plugin(k, "ADD", `${sys}:signal=SIGKILL:when=${n}`);
        if (r.signal) kills++;
        else {
          expect(r.code).toBe(0);
          completed = true;
        }
        const d = plugin(k, "DEL");
        if (d.code !== 0) throw new Error(`DEL after kill at ${sys} #${n} failed: ${d.out}`);
        expect({ n, ...state(k) }).toEqual({ n, ...clean });
      }
      expect(completed).toBe(true);
      expect(plugin(k, "ADD").code).toBe(0);
      expect(plugin(k, "DEL").code).toBe(0);
      console.log(`kill: ptp ${sys}: ${kills} kill points, each cleaned by DEL`);
    }, 300_000);
  }
});
