/**
 * One run of one case, inside the throwaway "host" netns (`ip netns exec <host> bun driver.ts '<json>'`):
 * captures the state, then through OUR libcni (CNIConfig with path = the given CNI_PATH dir) runs ADD,
 * captures the state, CHECK, DEL, captures the state again, and prints one JSON line (DriverOutput).
 * Every failure is data (an Outcome), never a crash: the runner compares failures too.
 */
import { CNIConfig } from "../../src/libcni/index.ts";
import { parseConfList } from "../../src/spec/conf.ts";
import { CniError } from "../../src/spec/errors.ts";
import { convertResult } from "../../src/spec/result.ts";
import { type CaptureOptions, captureState, type State } from "./state.ts";

export interface DriverArgs extends CaptureOptions {
  cniPath: string[];
  cacheDir: string;
  /** The conflist text, templates already substituted. */
  conflist: string;
  containerID: string;
  ifName: string;
  cniArgs?: [string, string][];
  capabilityArgs?: Record<string, unknown>;
}

export type Outcome =
  | { ok: true; result?: Record<string, unknown> }
  | { ok: false; code: number; msg: string; details: string };

export interface DriverOutput {
  before: State;
  afterAdd: State;
  afterDel: State;
  add: Outcome;
  check: Outcome;
  del: Outcome;
}

async function outcome(fn: () => Promise<Record<string, unknown> | undefined>): Promise<Outcome> {
  try {
    const result = await fn();
    return result === undefined ? { ok: true } : { ok: true, result };
  } catch (err) {
    const e = CniError.from(err);
    return { ok: false, code: e.code, msg: e.msg, details: e.details ?? "" };
  }
}

/** Whether some address is still in IPv6 DAD on a link that has carrier (so DAD will end). */
function dadPending(prefix: string[]): boolean {
  const p = Bun.spawnSync(["ip", ...prefix, "-j", "addr", "show"], { stdout: "pipe" });
  const links = JSON.parse(p.stdout.toString() || "[]") as {
    flags?: string[];
    addr_info?: { tentative?: boolean; local?: string }[];
  }[];
  // Link-local addresses are left out of the comparison (normalise.ts), so their DAD is not waited for.
  const pending = (x: { tentative?: boolean; local?: string }) =>
    x.tentative && !x.local?.startsWith("fe80:");
  return links.some((l) => l.flags?.includes("LOWER_UP") && l.addr_info?.some(pending));
}

/**
 * Waits (up to 3 s) for IPv6 DAD of global addresses to finish in both netns, so the snapshot after ADD does not depend on
 * when it was taken: a tentative address has no local route yet, and a plugin may or may not skip DAD.
 */
async function settle(ctrNetns: string): Promise<void> {
  const deadline = Date.now() + 3000;
  while (Date.now() < deadline && (dadPending([]) || dadPending(["-n", ctrNetns]))) await Bun.sleep(100);
}

export async function drive(a: DriverArgs): Promise<DriverOutput> {
  const cni = new CNIConfig({ path: a.cniPath, cacheDir: a.cacheDir });
  const rt = {
    containerID: a.containerID,
    netNS: `/var/run/netns/${a.ctrNetns}`,
    ifName: a.ifName,
    args: a.cniArgs ?? [],
    capabilityArgs: a.capabilityArgs ?? {},
  };
  const list = () => parseConfList(a.conflist);
  const before = captureState(a);
  const add = await outcome(async () => {
    const r = await cni.addNetworkList(list(), rt);
    // The wire shape in the version the plugins answered in, as a runtime would print it.
    return convertResult(r, r.cniVersion);
  });
  await settle(a.ctrNetns);
  const afterAdd = captureState(a);
  const check = await outcome(async () => {
    await cni.checkNetworkList(list(), rt);
    return undefined;
  });
  const del = await outcome(async () => {
    await cni.delNetworkList(list(), rt);
    return undefined;
  });
  const afterDel = captureState(a);
  return { before, afterAdd, afterDel, add, check, del };
}

if (import.meta.main) {
  const args = JSON.parse(process.argv[2] ?? "{}") as DriverArgs;
  console.log(JSON.stringify(await drive(args)));
}
