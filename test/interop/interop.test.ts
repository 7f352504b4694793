/**
 * Cross-driving: upstream's Go libcni (test/interop/main.go) runs our plugins (the compiled multicall
 * binary, via the same CNI_PATH dir as the diff suite) over the valid cases of test/diff/cases. For each
 * case the Go runtime must get the same ADD result and CHECK/DEL outcomes as our own libcni gets from the
 * same plugins, and its DEL must leave nothing but shared scaffolding (the bridge, the container's lo).
 * Go libcni 1.1 speaks up to spec 1.0.0: 1.1.0 cases run at 1.0.0 on both sides.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createNamedNetns, deleteNamedNetns } from "../../src/ns/index.ts";
import { BRIDGE_PLACEHOLDER, type DiffCase, loadCases, macsIn, substitute } from "../diff/cases.ts";
import { makeNormaliser, type Normaliser } from "../diff/normalise.ts";
import {
  type Impls,
  prepareHostLinks,
  prepareImpls,
  runOnce,
  skipReason,
  UPSTREAM_MAX_VERSION,
} from "../diff/runner.ts";
import { skipLabel } from "../helpers/netns.ts";
import { buildInterop, type GoOutcome, runInterop } from "./go.ts";

setDefaultTimeout(90_000);

const isRoot = process.getuid?.() === 0;
const cases = loadCases().filter((c) => !c.invalid);
let impls: Impls | undefined;
// Built while the tests are collected, so a missing toolchain shows as skips with their reason.
const buildDir = mkdtempSync(join(tmpdir(), "tscni-interop-build-"));
const built = isRoot ? buildInterop(buildDir) : { skip: "needs root for network namespaces" };
const bin = "bin" in built ? built.bin : undefined;
const why = "skip" in built ? built.skip : undefined;

function tag(): string {
  return Math.random().toString(36).slice(2, 8).padEnd(6, "0");
}

function ipJson(args: string[]): { ifname?: string }[] {
  const p = Bun.spawnSync(["ip", ...args], { stdout: "pipe" });
  return JSON.parse(p.stdout.toString() || "[]");
}

interface GoRun {
  outcomes: Record<"add" | "check" | "del", GoOutcome>;
  n: Normaliser;
  /** Link names left after DEL, per side. */
  left: { host: string[]; container: string[] };
}

async function runGo(c: DiffCase, bridge: string, containerID: string, version?: string): Promise<GoRun> {
  if (!bin || !impls) throw new Error("set-up failed");
  const t = tag();
  const hostNs = `tscni-i-${t}-h`;
  const ctrNs = `tscni-i-${t}-c`;
  const tmp = mkdtempSync(join(tmpdir(), "tscni-interop-"));
  const vars = { BRIDGE: bridge, DATADIR: join(tmp, "ipam") };
  const conflist = substitute(c.conflist, vars);
  if (version) conflist.cniVersion = version;
  createNamedNetns(hostNs);
  try {
    prepareHostLinks(c, hostNs);
    createNamedNetns(ctrNs);
    const outcomes = await runInterop(bin, hostNs, {
      conflist: JSON.stringify(conflist),
      cniPath: impls.ours,
      cacheDir: join(tmp, "cache"),
      netns: `/var/run/netns/${ctrNs}`,
      containerID,
      ifName: c.ifName ?? "eth0",
      cniArgs: Object.entries(substitute(c.cniArgs ?? {}, vars)),
      capabilityArgs: substitute(c.capabilityArgs ?? {}, vars),
    });
    const names = (ns: string) => ipJson(["-n", ns, "-j", "link", "show"]).map((l) => String(l.ifname));
    return {
      outcomes,
      n: makeNormaliser({
        containerID,
        ctrNetns: ctrNs,
        tempDirs: [tmp, ...impls.ours],
        keepMacs: macsIn(c),
        names: { [bridge]: BRIDGE_PLACEHOLDER },
      }),
      left: { host: names(hostNs), container: names(ctrNs) },
    };
  } finally {
    for (const ns of [ctrNs, hostNs]) {
      try {
        deleteNamedNetns(ns);
      } catch {
        // not made
      }
    }
    rmSync(tmp, { recursive: true, force: true });
  }
}

function summary(o: GoOutcome, n: Normaliser): unknown {
  return o.ok
    ? { ok: true, result: o.result === undefined ? undefined : n(o.result) }
    : { ok: false, code: o.code };
}

describe("Go libcni driving our plugins", () => {
  beforeAll(() => {
    if (bin) impls = prepareImpls();
  });

  afterAll(() => {
    impls?.cleanup();
    if (existsSync(buildDir)) rmSync(buildDir, { recursive: true, force: true });
  });

  for (const c of cases) {
    const caseWhy = why ?? skipReason(c);
    test.skipIf(!!caseWhy)(skipLabel(c.name, caseWhy), async () => {
      if (!impls) throw new Error("set-up failed");
      const version = c.conflist.cniVersion === "1.1.0" ? UPSTREAM_MAX_VERSION : undefined;
      const shared = { bridge: `tsi${tag()}`, containerID: `interop-${c.name}`.slice(0, 60) };
      const [go, ts] = await Promise.all([
        runGo(c, shared.bridge, shared.containerID, version),
        runOnce({ c, cniPath: impls.ours, ...shared, ...(version ? { version } : {}) }),
      ]);
      const o = go.outcomes;
      // Errors of Go libcni itself (e.g. CHECK at 0.3.1) carry no code (0): only the outcome is compared.
      // CHECK after a failed ADD is not compared: Go libcni then runs the plugins without a prevResult,
      // ours refuses before running any (no cached result).
      const expected = (verb: "add" | "check" | "del") => {
        const t = ts.norm[verb];
        if (verb === "check" && !ts.norm.add.ok) return summary(o.check, go.n);
        if (t.ok) return verb === "add" ? t : { ok: true };
        const g = o[verb];
        return { ok: false, code: !g.ok && g.code === 0 ? 0 : t.code };
      };
      expect({
        add: summary(o.add, go.n),
        check: summary(o.check, go.n),
        del: summary(o.del, go.n),
      }).toEqual({ add: expected("add"), check: expected("check"), del: expected("del") });
      expect(go.left.container).toEqual(["lo"]);
      // only what the host had before the case (lo, a hostLinks master) and the kept bridge remain
      const before = c.hostLinks === "veth-master" ? ["up0", "down0"] : [];
      expect(go.left.host.filter((n) => n !== "lo" && n !== shared.bridge && !before.includes(n))).toEqual(
        [],
      );
    });
  }
});
