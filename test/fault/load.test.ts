/**
 * Load (issue 18 §4): one bridge network (bridge + host-local, isGateway, ipMasq), the plugins exec'd by our
 * libcni as a runtime would, in one throwaway host netns.
 *
 * - 64 parallel ADDs into 64 container netns, then 64 parallel DELs, TSCNI_FAULT_LOAD_ROUNDS rounds (2; test:fault 5):
 *   every call succeeds, 64 distinct addresses (results, `ip -j addr` in each container and host-local's
 *   reservations agree), and after the DELs nothing of any attachment is left (chain-kit's hostLeftovers,
 *   container links, reservations, libcni cache). The 64-way ADD's wall time is printed; the same again
 *   through the warm path (native launcher + `tscni warm serve`), which saves the start-up of every process.
 * - interleaved: 32 attached; then their 32 DELs race 32 ADDs of others: no failure, no address held twice,
 *   the reservations exactly the live attachments; then all gone.
 * - TSCNI_FAULT_CYCLES (60; 1,000 under test:fault) sequential ADD/DEL cycles of bridge + dhcp (our
 *   daemon against dnsmasq): after the warm-up no growth in host links, nft rules, daemon state files,
 *   libcni cache files, the daemon's open fds; its RSS is printed and may not grow by more than 24 MiB.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { CNIConfig } from "../../src/libcni/api.ts";
import type { NetConfList } from "../../src/spec/types.ts";
import { netnsState } from "../e2e/chain-state.ts";
import { cleanupAll, makeNetns, type TempNetns, tempDir } from "../helpers/netns.ts";
import { startDaemon, startServer } from "../plugins/ipam/dhcp/fixture.ts";
import {
  BRIDGE,
  chainBin,
  chainList,
  hostLeftovers,
  NET,
  netExec,
  sharedInfra,
  warmPath,
} from "./chain-kit.ts";

afterAll(cleanupAll);

const WAYS = Number(process.env["TSCNI_FAULT_LOAD_WAYS"] ?? 64);
const ROUNDS = Number(process.env["TSCNI_FAULT_LOAD_ROUNDS"] ?? 2);
/** One warm-path round in `npm test` (its checks are the exec'd rounds'), all of them under test:fault. */
const WARM_ROUNDS = ROUNDS > 2 ? ROUNDS : 1;
const CYCLES = Number(process.env["TSCNI_FAULT_CYCLES"] ?? 60);
const SUBNET = "10.80.0.0/23";
const report: string[] = [];
afterAll(() => {
  if (report.length) console.log(`load:\n  ${report.join("\n  ")}`);
});

interface Net {
  host: TempNetns;
  conts: TempNetns[];
  dirs: { ipam: string; tuning: string; cache: string };
  list: NetConfList;
  cni: CNIConfig;
}

function makeNet(n: number, warm?: { bin: string; env: Record<string, string> }): Net {
  const host = makeNetns("ldh");
  host.run(["ip", "link", "set", "lo", "up"]);
  const base = tempDir("tscni-load-").path;
  const dirs = { ipam: join(base, "ipam"), tuning: join(base, "tuning"), cache: join(base, "cache") };
  const conts = Array.from({ length: n }, () => makeNetns("ldc"));
  const cni = new CNIConfig({
    path: [warm?.bin ?? chainBin("installed")],
    cacheDir: dirs.cache,
    exec: netExec(host.path, undefined, undefined, warm?.env),
  });
  return { host, conts, dirs, list: chainList(dirs, SUBNET, "bridge"), cni };
}

const rt = (n: Net, i: number) => ({
  containerID: `load${i}`,
  netNS: n.conts[i]?.path ?? "",
  ifName: "eth0",
});

function reservations(n: Net): Map<string, string> {
  const dir = join(n.dirs.ipam, NET);
  const out = new Map<string, string>();
  if (!existsSync(dir)) return out;
  for (const f of readdirSync(dir).filter((f) => /^[0-9.]+$/.test(f)))
    out.set(f, readFileSync(join(dir, f), "utf8").split(/\r?\n/)[0] ?? "");
  return out;
}

function cacheFiles(n: Net): string[] {
  const d = join(n.dirs.cache, "results");
  return existsSync(d) ? readdirSync(d) : [];
}

async function settle<T>(ps: Promise<T>[]): Promise<{ ok: T[]; errors: string[] }> {
  const all = await Promise.allSettled(ps);
  const ok: T[] = [];
  const errors: string[] = [];
  for (const r of all)
    if (r.status === "fulfilled") ok.push(r.value);
    else errors.push(String((r.reason as Error).message));
  return { ok, errors };
}

/**
 * Per container netns, its links and eth0's IPv4 address by `ip -j` — one shell running every `ip`, as 128
 * spawns from here cost seconds on this machine.
 */
function containers(cs: TempNetns[]): { links: string[]; addr: string | undefined }[] {
  const script = cs.map((c) => `ip -n ${c.name} -j addr show && echo`).join("\n");
  const p = Bun.spawnSync(["sh", "-c", script], { stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`ip addr show failed: ${p.stderr}`);
  const rows = p.stdout
    .toString()
    .split("\n")
    .filter((r) => r.trim() !== "");
  if (rows.length !== cs.length) throw new Error(`ip printed ${rows.length} rows for ${cs.length} netns`);
  return rows.map((row) => {
    const links = JSON.parse(row) as { ifname: string; addr_info: { family: string; local: string }[] }[];
    return {
      links: links.map((l) => l.ifname),
      addr: links.find((l) => l.ifname === "eth0")?.addr_info.find((a) => a.family === "inet")?.local,
    };
  });
}

async function rounds(
  how: string,
  count: number,
  warm?: { bin: string; env: Record<string, string> },
): Promise<void> {
  const n = makeNet(WAYS, warm);
  const pristine = netnsState(n.host.path);
  const times: number[] = [];
  const delTimes: number[] = [];
  let infra: string[] | undefined;
  for (let round = 0; round < count; round++) {
    const t0 = performance.now();
    const added = await settle(n.conts.map((_, i) => n.cni.addNetworkList(n.list, rt(n, i))));
    times.push(performance.now() - t0);
    expect(added.errors).toEqual([]);
    const ips = added.ok.map((r) => r.ips?.[0]?.address.split("/")[0] ?? "");
    expect(new Set(ips).size).toBe(WAYS);
    expect(containers(n.conts).map((c) => c.addr)).toEqual(ips); // container i has result i's address
    const held = reservations(n);
    expect([...held.keys()].sort()).toEqual([...ips].sort());
    expect(new Set(held.values()).size).toBe(WAYS);
    const ports = (n.host.ip("link", "show", "master", BRIDGE) as unknown[]).length;
    expect(ports).toBe(WAYS);
    expect(cacheFiles(n)).toHaveLength(WAYS);

    const t1 = performance.now();
    const deleted = await settle(n.conts.map((_, i) => n.cni.delNetworkList(n.list, rt(n, i))));
    delTimes.push(performance.now() - t1);
    expect(deleted.errors).toEqual([]);
    infra ??= sharedInfra(n.host.path);
    expect(hostLeftovers(n.host.path, pristine, infra)).toEqual([]);
    expect(reservations(n).size).toBe(0);
    expect(cacheFiles(n)).toEqual([]);
    expect(containers(n.conts).filter((c) => c.links.join() !== "lo")).toEqual([]);
  }
  const ms = (xs: number[]) => xs.map((x) => `${(x / 1000).toFixed(2)} s`).join(", ");
  report.push(`${how}: ${WAYS}-way ADD wall time per round: ${ms(times)}; ${WAYS}-way DEL: ${ms(delTimes)}`);
}

describe("64-way load on one bridge network", () => {
  test(`${WAYS} parallel ADDs then ${WAYS} parallel DELs, ${ROUNDS} rounds: no failure, no duplicate, no leak`, async () => {
    await rounds("plugins exec'd", ROUNDS);
  }, 600_000);

  test(`${WARM_ROUNDS} such round(s) through the warm path (launcher + tscni warm serve): no failure, no duplicate, no leak`, async () => {
    const warm = await warmPath();
    try {
      await rounds("warm path", WARM_ROUNDS, warm);
    } finally {
      warm.stop();
    }
  }, 600_000);

  test("ADDs interleaved with DELs: no failure, no address held twice, reservations are the live set", async () => {
    const half = Math.floor(WAYS / 2);
    const n = makeNet(WAYS);
    const pristine = netnsState(n.host.path);
    const first = await settle(n.conts.slice(0, half).map((_, i) => n.cni.addNetworkList(n.list, rt(n, i))));
    expect(first.errors).toEqual([]);
    // the first half leaves while the second half arrives, in one interleaved burst
    const mixed: Promise<unknown>[] = [];
    for (let i = 0; i < half; i++) {
      mixed.push(n.cni.delNetworkList(n.list, rt(n, i)));
      mixed.push(n.cni.addNetworkList(n.list, rt(n, half + i)));
    }
    const burst = await settle(mixed);
    expect(burst.errors).toEqual([]);
    const live = containers(n.conts.slice(half)).map((c) => c.addr);
    expect(new Set(live).size).toBe(WAYS - half);
    const held = reservations(n);
    expect([...held.keys()].sort()).toEqual([...(live as string[])].sort());
    expect([...held.values()].sort()).toEqual(
      n.conts
        .slice(half)
        .map((_, i) => `load${half + i}`)
        .sort(),
    );
    expect(containers(n.conts.slice(0, half)).filter((c) => c.links.join() !== "lo")).toEqual([]);
    const rest = await settle(
      n.conts.slice(half).map((_, i) => n.cni.delNetworkList(n.list, rt(n, half + i))),
    );
    expect(rest.errors).toEqual([]);
    expect(hostLeftovers(n.host.path, pristine)).toEqual([]);
    expect(reservations(n).size).toBe(0);
    expect(cacheFiles(n)).toEqual([]);
    report.push(`interleaved: ${half} ADDs + ${half} DELs at once, ${burst.ok.length} succeeded`);
  }, 300_000);
});

function daemonStats(pid: number): { fds: number; rssKiB: number } {
  const fds = readdirSync(`/proc/${pid}/fd`).length;
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return { fds, rssKiB: Number(m?.[1] ?? 0) };
}

describe("sequential ADD/DEL cycles", () => {
  test(`${CYCLES} cycles of bridge + dhcp: no growth in links, rules, files, daemon fds; daemon RSS bounded`, async () => {
    const srv = await startServer({ extra: ["--dhcp-option=option:router,10.$N.0.1"] });
    const bin = chainBin("installed");
    const d = await startDaemon({ exe: join(bin, "dhcp") });
    const cont = makeNetns("ldd");
    const cache = tempDir("tscni-load-cache-").path;
    try {
      const list = {
        cniVersion: "1.1.0",
        name: "dhcpload",
        plugins: [
          { type: "bridge", bridge: "br0", ipMasq: true, ipam: { type: "dhcp", daemonSocketPath: d.socket } },
        ],
      } as unknown as NetConfList;
      const cni = new CNIConfig({ path: [bin], cacheDir: cache, exec: netExec(srv.ns.path) });
      const shape = () => {
        const s = netnsState(srv.ns.path);
        const rules = s.nft.filter((o: { rule?: unknown }) => o.rule !== undefined).length;
        const elems = s.nft.reduce(
          (k: number, o: { map?: { elem?: unknown[] }; set?: { elem?: unknown[] } }) =>
            k + ((o.map ?? o.set)?.elem?.length ?? 0),
          0,
        );
        return {
          links: s.links.map((l: { ifname: string }) => l.ifname).sort(),
          addrs: s.addrs.length,
          routes: s.routes4.length,
          rules,
          elems,
          iptables: s.iptables.split("\n").length,
          state: readdirSync(d.stateDir).length,
          cache: existsSync(join(cache, "results")) ? readdirSync(join(cache, "results")).length : 0,
          cont: (cont.ip("link", "show") as unknown[]).length,
        };
      };
      const cycle = async (i: number) => {
        const r = { containerID: `cyc${i}`, netNS: cont.path, ifName: "eth0" };
        const res = await cni.addNetworkList(list, r);
        if (!res.ips?.[0]) throw new Error(`cycle ${i}: no address`);
        await cni.delNetworkList(list, r);
      };
      const warm = Math.min(10, CYCLES);
      for (let i = 0; i < warm; i++) await cycle(i);
      const before = shape();
      const s0 = daemonStats(d.proc.pid);
      const t0 = performance.now();
      for (let i = warm; i < CYCLES; i++) await cycle(i);
      const secs = (performance.now() - t0) / 1000;
      const s1 = daemonStats(d.proc.pid);
      expect(shape()).toEqual(before);
      expect(before.state).toBe(0);
      expect(before.cache).toBe(0);
      expect(before.cont).toBe(1);
      expect(s1.fds).toBe(s0.fds);
      expect(s1.rssKiB - s0.rssKiB).toBeLessThan(24 * 1024);
      const deadline = Date.now() + 5000;
      while (srv.leases().length > 0 && Date.now() < deadline) await Bun.sleep(50);
      expect(srv.leases()).toEqual([]);
      report.push(
        `${CYCLES} sequential bridge+dhcp cycles (${((CYCLES - warm) / secs) | 0}/s after ${warm} warm-up): daemon fds ${s0.fds} → ${s1.fds}, RSS ${(s0.rssKiB / 1024).toFixed(1)} → ${(s1.rssKiB / 1024).toFixed(1)} MiB; links, nft rules, state and cache files unchanged`,
      );
    } finally {
      await d.stop();
      cont.cleanup();
      srv.stop();
    }
  }, 1_800_000);
});
