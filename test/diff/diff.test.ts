/**
 * The differential conformance suite: every case of cases/*.json runs with upstream's Go plugins and
 * with ours (see runner.ts), and must come out the same or differ only as its `expect` says. Prints
 * the table at the end and writes test/diff/REPORT.md.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type KernelNeed, requiresKernel, skipLabel } from "../helpers/netns.ts";
import { type DiffCase, type KernelKind, loadCases } from "./cases.ts";
import { renderReport, renderTable } from "./report.ts";
import {
  type CaseResult,
  DIFF_DIR,
  type Impls,
  prepareImpls,
  runCase,
  skipReason,
  UPSTREAM_DIR,
} from "./runner.ts";

// Each case spawns a few dozen processes (plugins, ip, tc, nft); a loaded machine is slow, never wrong.
setDefaultTimeout(90_000);

const isRoot = process.getuid?.() === 0;
const haveUpstream = existsSync(join(UPSTREAM_DIR, "bridge"));
const cases = loadCases();
// Literal calls: scripts/vm-lane.ts picks the files to run in the VM by them.
const KERNEL_NEEDS: Record<KernelKind, KernelNeed> = {
  ipvlan: requiresKernel("ipvlan"),
  vlan: requiresKernel("vlan"),
  vrf: requiresKernel("vrf"),
};

/** The case's test name (tagged `[kernel …]` when it needs kinds, as the VM lane selects) and why it skips. */
function caseTest(c: DiffCase, other: string | undefined): { label: string; why?: string } {
  const kinds = c.kernel ?? [];
  const why = other ?? kinds.map((k) => KERNEL_NEEDS[k].why).find(Boolean);
  const tag = kinds.length > 0 ? `[kernel ${kinds.join(",")}] ` : "";
  return { label: skipLabel(`${tag}${c.name}`, why), why };
}
const results = new Map<string, CaseResult>();
let impls: Impls | undefined;
const started = performance.now();

describe.skipIf(!isRoot || !haveUpstream)("differential: upstream plugins 1.1.1 vs tscni", () => {
  beforeAll(() => {
    impls = prepareImpls();
  });

  afterAll(() => {
    const ordered = cases.flatMap((c) => results.get(c.name) ?? []);
    const seconds = ((performance.now() - started) / 1000).toFixed(0);
    console.log(`\n${renderTable(ordered)} (${seconds} s)`);
    // Without timings or random names, so the committed report changes only when results do.
    writeFileSync(join(DIFF_DIR, "REPORT.md"), renderReport(ordered, { ourKinds: impls?.ourKinds ?? {} }));
    impls?.cleanup();
  });

  for (const c of cases) {
    // Probing the kernel needs root; without it the whole describe is skipped anyway.
    const t = caseTest(c, isRoot && haveUpstream ? skipReason(c) : undefined);
    const why = t.why;
    if (why) {
      results.set(c.name, {
        name: c.name,
        description: c.description,
        status: "skip",
        verdict: `skipped: ${why}`,
        upstream: "—",
        ours: "—",
        notes: [],
      });
    }
    test.skipIf(!!why)(t.label, async () => {
      if (!impls) throw new Error("set-up failed");
      const r = await runCase(c, impls);
      results.set(c.name, r);
      if (r.status === "fail") {
        const diffs = Object.entries(r.comparison?.diffs ?? {}).flatMap(([a, ds]) =>
          ds
            .slice(0, 4)
            .map(
              (d) =>
                `${a} ${d.path}: upstream ${JSON.stringify(d.upstream)} · ours ${JSON.stringify(d.ours)}`,
            ),
        );
        const leaks = (r.comparison?.leaks ?? []).slice(0, 4).map((l) => `leak ${l}`);
        expect([r.verdict, ...diffs, ...leaks].join("\n")).toBe("same");
      }
      expect(r.status).toBe("pass");
    });
  }
});
