// `scripts/vm test` (npm run test:vm): runs, in one boot of the VM, every test that needs a kernel link
// kind this host lacks. Tests declare their needs with requiresKernel(...) (test/helpers/netns.ts), which
// tags their names `[kernel a,b]`; this script finds the files that declare a kind the host cannot make,
// and runs just those tests (bun test -t) in the guest. A host that has every kind needs no VM.
//
// Environment: TSCNI_VM=force runs the lane even when the host has the kinds; TSCNI_VM_TIMEOUT (seconds,
// default 1500) bounds the guest; TSCNI_VM_COUNTS=FILE receives "passed failed skipped" for scripts/test.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";

const repo = join(import.meta.dir, "..");

interface Counts {
  passed: number;
  failed: number;
  skipped: number;
}

function testFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) out.push(...testFiles(p));
    else if (e.endsWith(".test.ts")) out.push(p);
  }
  return out.sort();
}

/** The kinds each test file declares through requiresKernel("a", "b"). */
function declaredKinds(file: string): Set<string> {
  const kinds = new Set<string>();
  for (const call of readFileSync(file, "utf8").matchAll(/requiresKernel\(([^)]*)\)/g)) {
    for (const lit of (call[1] ?? "").matchAll(/"([a-z0-9_]+)"/g)) if (lit[1]) kinds.add(lit[1]);
  }
  return kinds;
}

/** Whether this host's kernel makes links of `kind` (probed with iproute2 in a throwaway netns). */
function hostHas(kind: string, netns: string): boolean {
  const ip = (...args: string[]) => spawnSync("ip", ["-n", netns, ...args], { stdio: "ignore" }).status === 0;
  const type: Record<string, string[]> = {
    ipvlan: ["link", "p0", "type", "ipvlan", "mode", "l2"],
    vlan: ["link", "p0", "type", "vlan", "id", "5"],
    macvlan: ["link", "p0", "type", "macvlan"],
    macvtap: ["link", "p0", "type", "macvtap"],
    vrf: ["type", "vrf", "table", "10"],
    tuntap: ["type", "tun"],
  };
  const ok = ip("link", "add", "probe0", ...(type[kind] ?? ["type", kind]));
  ip("link", "del", "probe0");
  return ok;
}

function count(log: string, word: string): number {
  const m = [...log.matchAll(new RegExp(`^ *(\\d+) ${word}$`, "gm"))].pop();
  return m ? Number(m[1]) : 0;
}

function report(c: Counts, note: string): void {
  console.log(`vm lane: ${c.passed} passed, ${c.failed} failed, ${c.skipped} skipped${note}`);
  if (process.env.TSCNI_VM_COUNTS)
    writeFileSync(process.env.TSCNI_VM_COUNTS, `${c.passed} ${c.failed} ${c.skipped}\n`);
}

function main(): number {
  const files = testFiles(join(repo, "test")).map((f) => ({ file: f, kinds: declaredKinds(f) }));
  const all = new Set(files.flatMap((f) => [...f.kinds]));
  const netns = `tscni-vmprobe-${process.pid}`;
  spawnSync("ip", ["netns", "add", netns]);
  let missing: string[];
  try {
    spawnSync("ip", ["-n", netns, "link", "add", "p0", "type", "veth", "peer", "name", "p1"]);
    missing = [...all].filter((k) => !hostHas(k, netns)).sort();
  } finally {
    spawnSync("ip", ["netns", "del", netns]);
  }
  const force = process.env.TSCNI_VM === "force";
  const lane = force ? [...all].sort() : missing;
  if (!lane.length) {
    report(
      { passed: 0, failed: 0, skipped: 0 },
      ` (not needed: this kernel makes ${[...all].sort().join(", ")})`,
    );
    return 0;
  }
  const chosen = files.filter((f) => lane.some((k) => f.kinds.has(k))).map((f) => relative(repo, f.file));
  // a test runs in the guest when its tag names a kind the lane is for
  const filter = `\\[kernel [^\\]]*\\b(${lane.join("|")})\\b`;
  console.log(
    `vm lane: kinds ${lane.join(", ")}${force ? " (TSCNI_VM=force)" : " (this kernel lacks them)"}`,
  );
  console.log(`vm lane: ${chosen.length} files: ${chosen.join(" ")}`);

  const out = mkdtempSync("/tmp/tscni-vm-out.");
  const start = performance.now();
  try {
    const secs = process.env.TSCNI_VM_TIMEOUT ?? "1500";
    const inner = `bun test --timeout 600000 -t '${filter}' ${chosen.join(" ")} 2>&1 | tee /run/vm-out/test.log; exit \${PIPESTATUS[0]}`;
    // setpriv: the runner (and through it the guest) dies with this process
    const r = spawnSync(
      "setpriv",
      ["--pdeathsig", "KILL", join(repo, "scripts/vm"), "run", "-t", secs, "--", "bash", "-c", inner],
      {
        stdio: "inherit",
        env: { ...process.env, TSCNI_VM_OUT: out },
      },
    );
    const took = ` in ${((performance.now() - start) / 1000).toFixed(0)} s (boot included)`;
    let log = "";
    try {
      log = readFileSync(join(out, "test.log"), "utf8");
    } catch {
      // no log: the guest never ran the tests
    }
    const c = { passed: count(log, "pass"), failed: count(log, "fail"), skipped: count(log, "skip") };
    if (r.status !== 0 && c.failed === 0) {
      console.log(
        `vm lane: FAILED — the guest did not run the tests (status ${r.status}); see the output above`,
      );
      c.failed = 1;
    }
    if (c.passed === 0 && c.failed === 0) {
      console.log("vm lane: FAILED — no test ran in the guest");
      c.failed = 1;
    }
    report(c, took);
    return c.failed ? 1 : 0;
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

process.exit(main());
