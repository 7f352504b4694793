/**
 * In-process dispatch (src/libcni/inprocess.ts) against the exec path: every sequence of the corpus
 * below runs through links to the compiled tscni, once exec'd and once in-process, in a throwaway host
 * netns (see inprocess-driver.ts). Outcomes must be byte-identical — stdout bytes, or error code, msg
 * and details — except for MAC addresses the kernel picks afresh for every new link.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { symlinkSync } from "node:fs";
import { join } from "node:path";
import { install } from "../../src/cli/commands.ts";
import { installablePlugins } from "../../src/cli/registry.ts";
import { type Exec, inProcessExec } from "../../src/libcni/index.ts";
import { pluginMain } from "../../src/skel/skel.ts";
import type { Plugin } from "../../src/skel/types.ts";
import { buildTscni } from "../helpers/build.ts";
import { rejection } from "../helpers/errors.ts";
import { cleanupAll, makeNetns, type TempNetns, tempDir } from "../helpers/netns.ts";
import { BUN, REPO } from "../plugins/_run.ts";
import type { Case, DriverOutput, Outcome, Step } from "./inprocess-driver.ts";

let bin: string;
let dir: { path: string; cleanup(): void };
let dataDir: { path: string; cleanup(): void };
let host: TempNetns;
let ctr: TempNetns;
let out: DriverOutput;
const cases: Case[] = [];

function env(command: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    CNI_COMMAND: command,
    CNI_CONTAINERID: "inproc-ctr",
    CNI_NETNS: ctr.path,
    CNI_IFNAME: "eth0",
    CNI_ARGS: "",
    CNI_PATH: dir.path,
    ...extra,
  };
}

function step(
  plugin: string,
  command: string,
  config: unknown,
  more: { env?: Record<string, string>; raw?: string; prev?: boolean } = {},
): Step {
  return { plugin, env: env(command, more.env), config, raw: more.raw, prev: more.prev };
}

function corpus(): Case[] {
  const data = dataDir.path;
  const hostLocal = (v: string, subnet = "10.77.0.0/24") => ({
    cniVersion: v,
    name: "inproc",
    ipam: {
      type: "host-local",
      dataDir: data,
      ranges: [[{ subnet, rangeStart: "10.77.0.5", rangeEnd: "10.77.0.5" }]],
      routes: [{ dst: "0.0.0.0/0" }],
    },
  });
  const bridge = (v: string) => ({
    ...hostLocal(v),
    type: "bridge",
    bridge: "inpr0",
    isGateway: true,
  });
  const ptp = { ...hostLocal("1.0.0"), type: "ptp" };
  const staticConf = {
    cniVersion: "1.0.0",
    name: "inproc",
    ipam: { type: "static", addresses: [{ address: "10.78.0.2/24", gateway: "10.78.0.1" }] },
  };
  const out: Case[] = [];
  for (const p of installablePlugins()) {
    out.push({ name: `VERSION ${p}`, steps: [step(p, "VERSION", { cniVersion: "0.3.1" })] });
  }
  const lo = { cniVersion: "1.0.0", name: "lo", type: "loopback" };
  out.push(
    {
      name: "loopback ADD CHECK DEL",
      steps: [
        step("loopback", "ADD", lo),
        step("loopback", "CHECK", lo, { prev: true }),
        step("loopback", "DEL", lo),
      ],
    },
    {
      name: "host-local ADD CHECK STATUS DEL GC",
      steps: [
        step("host-local", "ADD", hostLocal("1.1.0")),
        step("host-local", "CHECK", hostLocal("1.1.0")),
        step("host-local", "STATUS", hostLocal("1.1.0")),
        step("host-local", "DEL", hostLocal("1.1.0")),
        step("host-local", "GC", { ...hostLocal("1.1.0"), "cni.dev/valid-attachments": [] }),
      ],
    },
    {
      name: "host-local ADD at 0.3.1",
      steps: [step("host-local", "ADD", hostLocal("0.3.1")), step("host-local", "DEL", hostLocal("0.3.1"))],
    },
    { name: "static ADD DEL", steps: [step("static", "ADD", staticConf), step("static", "DEL", staticConf)] },
    {
      name: "bridge + host-local ADD CHECK DEL",
      steps: [
        step("bridge", "ADD", bridge("1.0.0")),
        step("bridge", "CHECK", bridge("1.0.0"), { prev: true }),
        step("bridge", "DEL", bridge("1.0.0")),
      ],
    },
    {
      name: "bridge, then portmap and bandwidth chained on its result",
      steps: [
        step("bridge", "ADD", bridge("1.0.0")),
        step(
          "portmap",
          "ADD",
          {
            cniVersion: "1.0.0",
            name: "inproc",
            type: "portmap",
            runtimeConfig: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }] },
          },
          { prev: true },
        ),
        step(
          "bandwidth",
          "ADD",
          {
            cniVersion: "1.0.0",
            name: "inproc",
            type: "bandwidth",
            runtimeConfig: { bandwidth: { ingressRate: 1000000, ingressBurst: 100000 } },
          },
          { prev: true },
        ),
        step("bandwidth", "DEL", { cniVersion: "1.0.0", name: "inproc", type: "bandwidth" }),
        step("portmap", "DEL", {
          cniVersion: "1.0.0",
          name: "inproc",
          type: "portmap",
          runtimeConfig: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }] },
        }),
        step("bridge", "DEL", bridge("1.0.0")),
      ],
    },
    { name: "ptp + host-local ADD DEL", steps: [step("ptp", "ADD", ptp), step("ptp", "DEL", ptp)] },
    {
      name: "tuning without prevResult",
      steps: [step("tuning", "ADD", { cniVersion: "1.0.0", name: "t", type: "tuning" })],
    },
    // Failures: each must give the same error JSON through both paths, and leave nothing behind.
    { name: "stdin not JSON", steps: [step("bridge", "ADD", null, { raw: "{not json" })] },
    {
      name: "missing CNI_NETNS",
      steps: [step("bridge", "ADD", bridge("1.0.0"), { env: { CNI_NETNS: "" } })],
    },
    { name: "bad ifname", steps: [step("ptp", "ADD", ptp, { env: { CNI_IFNAME: "a/b" } })] },
    { name: "unknown CNI_COMMAND", steps: [step("bridge", "FOO", bridge("1.0.0"))] },
    { name: "unsupported cniVersion", steps: [step("bridge", "ADD", bridge("9.9.9"))] },
    { name: "CHECK at 0.3.1", steps: [step("bridge", "CHECK", bridge("0.3.1"))] },
    { name: "GC at 1.0.0", steps: [step("host-local", "GC", hostLocal("1.0.0"))] },
    {
      name: "empty ipam: an L2-only attachment",
      steps: [
        step("bridge", "ADD", { ...bridge("1.0.0"), ipam: {} }),
        step("bridge", "DEL", { ...bridge("1.0.0"), ipam: {} }),
      ],
    },
    {
      name: "ipam plugin not in CNI_PATH",
      steps: [step("bridge", "ADD", { ...bridge("1.0.0"), ipam: { type: "ghost" } })],
    },
    {
      name: "netns does not exist",
      steps: [step("ptp", "ADD", ptp, { env: { CNI_NETNS: "/var/run/netns/tscni-no-such-ns" } })],
    },
    {
      name: "DEL with the netns gone succeeds",
      steps: [
        step("bridge", "DEL", bridge("1.0.0"), { env: { CNI_NETNS: "/var/run/netns/tscni-no-such-ns" } }),
      ],
    },
    { name: "invalid subnet", steps: [step("host-local", "ADD", hostLocal("1.0.0", "10.77.0.0/33"))] },
    {
      name: "static bad address",
      steps: [
        step("static", "ADD", { ...staticConf, ipam: { type: "static", addresses: [{ address: "nope" }] } }),
      ],
    },
    {
      name: "plugin error with details",
      steps: [
        step("noop", "ADD", {
          cniVersion: "1.0.0",
          name: "n",
          type: "noop",
          errorCode: 117,
          errorMsg: "told to fail",
          errorDetails: "on purpose",
        }),
      ],
    },
    {
      name: "portmap on a result without IPs",
      steps: [
        step("portmap", "ADD", {
          cniVersion: "1.0.0",
          name: "p",
          type: "portmap",
          prevResult: { cniVersion: "1.0.0" },
          runtimeConfig: { portMappings: [{ hostPort: 1, containerPort: 1, protocol: "tcp" }] },
        }),
      ],
    },
  );
  return out;
}

/** MACs and host veth names are made afresh for every new link; nothing else may differ. */
function normalise(o: Outcome[]): Outcome[] {
  const fresh = (t: string) =>
    t.replace(/"mac":\s*"[0-9a-f:]{17}"/g, '"mac":"<mac>"').replace(/\bveth[0-9a-f]{8}\b/g, "veth<random>");
  return o.map((x) => ("ok" in x ? { ok: fresh(x.ok) } : { err: { ...x.err, msg: fresh(x.err.msg) } }));
}

beforeAll(async () => {
  bin = buildTscni();
  dir = tempDir("tscni-inproc-bin");
  dataDir = tempDir("tscni-inproc-data");
  install(dir.path, bin);
  symlinkSync(bin, join(dir.path, "noop")); // a test plugin this executable runs but never installs
  host = makeNetns("inph");
  ctr = makeNetns("inpc");
  host.ip("link", "set", "lo", "up");
  cases.push(...corpus());
  const p = Bun.spawn(
    ["ip", "netns", "exec", host.name, BUN, join(REPO, "test/libcni/inprocess-driver.ts"), bin, dir.path],
    {
      stdin: new TextEncoder().encode(JSON.stringify(cases)),
      stdout: "pipe",
      stderr: "pipe",
    },
  );
  const [stdout, stderr, code] = await Promise.all([
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
    p.exited,
  ]);
  if (code !== 0) throw new Error(`driver failed (${code}): ${stderr}`);
  out = JSON.parse(stdout);
}, 300_000);

afterAll(() => {
  cleanupAll();
  dir?.cleanup();
  dataDir?.cleanup();
});

describe("in-process dispatch gives what exec gives", () => {
  test("every case of the corpus, byte for byte (MACs aside)", () => {
    expect(cases.length).toBeGreaterThan(30);
    expect(out.fallbackCalls).toBe(0);
    for (const c of cases) {
      const exec = normalise(out.exec[c.name] ?? []);
      expect({ case: c.name, outcomes: normalise(out.inProcess[c.name] ?? []) }).toEqual({
        case: c.name,
        outcomes: exec,
      });
      expect(exec).toHaveLength(c.steps.length);
    }
  });

  test("the corpus exercises successes and failures of real plugins", () => {
    const all = Object.values(out.exec).flat();
    const ok = all.filter((o) => "ok" in o).length;
    const codes = new Set(all.flatMap((o) => ("err" in o ? [o.err.code] : [])));
    expect(ok).toBeGreaterThan(20);
    for (const code of [4, 7, 50, 117]) expect(codes).toContain(code);
    // The bridge ADD through both paths gave an address from the single-address range.
    const add = out.inProcess["bridge + host-local ADD CHECK DEL"]?.[0];
    expect(add && "ok" in add ? JSON.parse(add.ok).ips[0].address : undefined).toBe("10.77.0.5/24");
  });

  test("failing plugins leave the runtime process as it was: same netns, no fd leaked, same answers", () => {
    expect(out.after.netns).toBe(out.before.netns);
    expect(out.after.fds).toBe(out.before.fds);
    for (const c of cases)
      expect(normalise(out.again[c.name] ?? [])).toEqual(normalise(out.inProcess[c.name] ?? []));
  });

  test("nothing is left in the container netns after the corpus", () => {
    const links = (ctr.ip("link", "show") as { ifname: string }[]).map((l) => l.ifname);
    expect(links).toEqual(["lo"]);
  });
});

describe("inProcessExec on its own", () => {
  const enc = new TextEncoder();
  const verEnv = { CNI_COMMAND: "VERSION" };
  const throwing: Plugin = {
    supportedVersions: ["1.0.0"],
    add: () => {
      throw new TypeError("boom");
    },
    del: () => new Promise(() => {}), // never settles
  };

  test("a path that is not the multicall executable goes to the fallback", async () => {
    const calls: string[] = [];
    const fallback: Exec = {
      findInPath: async () => "",
      execPlugin: async (p) => {
        calls.push(p);
        return enc.encode("fallback");
      },
    };
    const x = inProcessExec({ resolve: async () => throwing, pluginMain, self: "/usr/bin/true", fallback });
    expect(new TextDecoder().decode(await x.execPlugin("/bin/sh", enc.encode("{}"), verEnv))).toBe(
      "fallback",
    );
    expect(calls).toEqual(["/bin/sh"]);
  });

  test("a plugin that throws fails the call with CNI error JSON, and the process goes on", async () => {
    const self = buildTscni();
    const x = inProcessExec({ resolve: async () => throwing, pluginMain, self });
    const conf = enc.encode(JSON.stringify({ cniVersion: "1.0.0", name: "n", type: "x" }));
    const env = {
      CNI_COMMAND: "ADD",
      CNI_CONTAINERID: "c",
      CNI_NETNS: "/x",
      CNI_IFNAME: "eth0",
      CNI_PATH: "/x",
    };
    const err = await rejection(x.execPlugin(self, conf, env));
    expect(err.code).toBe(999);
    expect(err.msg).toContain("boom");
    // An abort fails a call that never ends with the exec path's error instead of hanging the caller.
    const ac = new AbortController();
    const pending = rejection(x.execPlugin(self, conf, { ...env, CNI_COMMAND: "DEL" }, ac.signal));
    ac.abort();
    expect((await pending).msg).toBe(`plugin ${self} was cancelled and was killed`);
  });
});
