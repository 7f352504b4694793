/**
 * The warm path: tscni-launcher (native/warm-launcher.c) exec'd under a plugin's name hands the call to
 * `tscni warm serve`, which runs it in the caller's netns. Same bytes as the exec'd plugin; a helper that
 * is gone, hung, or asked by a non-root caller never breaks a call.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawn, spawnSync } from "node:child_process";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { dirname, join } from "node:path";
import { buildTscni, REPO } from "../helpers/build.ts";
import { cleanupAll, makeNetns, type TempNetns, tempDir } from "../helpers/netns.ts";

let dir = "";
let tscni = "";
let launcher = "";
let helperNs: TempNetns;
let sockDir = "";
let sock = "";
let log = "";
let helper: ReturnType<typeof spawn> | undefined;

function startHelper(): Promise<void> {
  helper = spawn(
    "ip",
    [
      "netns",
      "exec",
      helperNs.name,
      tscni,
      "warm",
      "serve",
      "--socket",
      sock,
      "--log-calls",
      "--workers",
      String(WORKERS),
      "--call-timeout",
      "3",
    ],
    {
      stdio: ["ignore", "ignore", "pipe"],
    },
  );
  return new Promise((resolve, reject) => {
    helper?.stderr?.on("data", (d: Buffer) => {
      log += d.toString();
      if (log.includes("serving on")) resolve();
    });
    helper?.once("exit", (c) => reject(new Error(`helper exited ${c}: ${log}`)));
  });
}

const WORKERS = 2;

/** The pool's processes (the supervisor, and the workers whose parent it is), from /proc. */
function pool(): { supervisor?: number; workers: number[] } {
  const all: { pid: number; ppid: number }[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, "utf8").split("\0");
      if (cmd[1] !== "warm" || cmd[4] !== sock) continue;
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      all.push({ pid: Number(d), ppid: Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) });
    } catch {
      // exited meanwhile
    }
  }
  const pids = new Set(all.map((p) => p.pid));
  const sup = all.find((p) => !pids.has(p.ppid))?.pid;
  return { supervisor: sup, workers: all.filter((p) => p.ppid === sup).map((p) => p.pid) };
}

function cmdlineHas(pid: string, s: string): boolean {
  try {
    return /^\d+$/.test(pid) && readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").includes(s);
  } catch {
    return false;
  }
}

/** Polls (bounded) until `ok`; the test then asserts the state itself, never the time it took. */
async function until(ok: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !ok(); i++) await Bun.sleep(50);
}

/** SIGTERM to the supervisor (it stops its workers), by pid; nothing of the pool is left after. */
async function stopHelper(): Promise<void> {
  const sup = pool().supervisor;
  if (sup) process.kill(sup, "SIGTERM");
  await until(() => pool().supervisor === undefined && pool().workers.length === 0);
  helper?.kill("SIGKILL");
  helper = undefined;
}

beforeAll(async () => {
  tscni = buildTscni();
  chmodSync(dirname(tscni), 0o755); // the non-root caller's fallback execs it
  dir = tempDir("tscni-warm-").path;
  chmodSync(dir, 0o755);
  launcher = join(dirname(tscni), "tscni-launcher");
  const cc = spawnSync("cc", ["-O2", "-static", "-o", launcher, join(REPO, "native/warm-launcher.c")]);
  if (cc.status !== 0) throw new Error(`cc: ${cc.stderr}`);
  for (const [sub, target] of [
    ["warm", launcher],
    ["exec", tscni],
  ] as const) {
    mkdirSync(join(dir, sub));
    for (const p of ["bridge", "host-local"]) symlinkSync(target, join(dir, sub, p));
  }
  helperNs = makeNetns("wh");
  sockDir = join(dir, "run");
  sock = join(sockDir, "warm.sock");
  await startHelper();
}, 120_000);

afterAll(async () => {
  await stopHelper();
  cleanupAll();
});

function conf(host: TempNetns, extra: Record<string, unknown> = {}) {
  return JSON.stringify({
    cniVersion: "1.0.0",
    name: "warmnet",
    type: "bridge",
    bridge: "wbr0",
    isGateway: true,
    ipam: {
      type: "host-local",
      dataDir: join(dir, `ipam-${host.name}`),
      ranges: [[{ subnet: "10.96.0.0/24" }]],
    },
    ...extra,
  });
}

interface Call {
  code: number;
  stdout: string;
  stderr: string;
}

function call(
  host: TempNetns,
  via: "warm" | "exec",
  env: Record<string, string>,
  stdin: string,
  o: { as?: string[]; timeout?: string } = {},
): Call {
  const plugin = join(dir, via, "bridge");
  const r = spawnSync("ip", ["netns", "exec", host.name, ...(o.as ?? []), plugin], {
    input: stdin,
    encoding: "utf8",
    env: {
      PATH: process.env.PATH ?? "/usr/sbin:/usr/bin",
      CNI_PATH: join(dir, via),
      CNI_CONTAINERID: "ctr1",
      CNI_IFNAME: "eth0",
      TSCNI_WARM_SOCK: sock,
      ...(o.timeout && { TSCNI_WARM_TIMEOUT: o.timeout }),
      ...env,
    },
    timeout: 60_000,
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** MACs and host veth names differ between any two ADDs. */
function masked(s: string): string {
  return s.replace(/([0-9a-f]{2}:){5}[0-9a-f]{2}/g, "MAC").replace(/veth[0-9a-f]{8}/g, "VETH");
}

function links(n: TempNetns): string[] {
  return (n.ip("link", "show") as { ifname: string }[]).map((l) => l.ifname).filter((x) => x !== "lo");
}

describe("tscni warm", () => {
  test("ADD, CHECK, DEL through the helper: the exec'd plugin's bytes, in the caller's netns", async () => {
    const a = makeNetns("wa");
    const b = makeNetns("wb");
    const ca = makeNetns("wca");
    const cb = makeNetns("wcb");
    const warm = call(a, "warm", { CNI_COMMAND: "ADD", CNI_NETNS: ca.path }, conf(a));
    const exec = call(b, "exec", { CNI_COMMAND: "ADD", CNI_NETNS: cb.path }, conf(b));
    expect(warm.stderr).toBe("");
    expect(warm.code).toBe(0);
    expect(masked(warm.stdout).replace(ca.path, "NS")).toBe(masked(exec.stdout).replace(cb.path, "NS"));
    expect(exec.code).toBe(0);
    // the bridge is in the caller's netns, not the helper's
    expect(links(a)).toContain("wbr0");
    expect(links(helperNs)).toEqual([]);
    expect(
      (ca.ip("addr", "show", "dev", "eth0") as { addr_info: { local: string }[] }[])[0]?.addr_info[0]?.local,
    ).toBe("10.96.0.2");

    const prev = JSON.parse(warm.stdout);
    const check = call(
      a,
      "warm",
      { CNI_COMMAND: "CHECK", CNI_NETNS: ca.path },
      JSON.stringify({ ...JSON.parse(conf(a)), prevResult: prev }),
    );
    expect(check).toEqual({ code: 0, stdout: "", stderr: "" });
    const del = call(a, "warm", { CNI_COMMAND: "DEL", CNI_NETNS: ca.path }, conf(a));
    expect(del.code).toBe(0);
    expect(links(ca)).toEqual([]);
    // served by the helper, not by the fallback exec (its log arrives async)
    for (let i = 0; i < 50 && !log.includes("DEL bridge"); i++) await Bun.sleep(20);
    for (const verb of ["ADD", "CHECK", "DEL"])
      expect(log).toContain(`tscni warm: ${verb} bridge ctr1 eth0 → 0`);
  });

  test("errors and VERSION: the same bytes and exit code as exec", () => {
    const cases: [Record<string, string>, (h: TempNetns) => string][] = [
      [{ CNI_COMMAND: "ADD" }, (h) => conf(h, { ipam: { type: "no-such-ipam" } })],
      [{ CNI_COMMAND: "ADD" }, () => "{not json"],
      [{ CNI_COMMAND: "ADD", CNI_NETNS: "/var/run/netns/tscni-no-such" }, (h) => conf(h)],
      [{ CNI_COMMAND: "ADD", CNI_IFNAME: "a/b" }, (h) => conf(h)],
      [{ CNI_COMMAND: "VERSION" }, () => '{"cniVersion":"1.0.0"}'],
      [{ CNI_COMMAND: "BOGUS" }, (h) => conf(h)],
    ];
    for (const [env, stdin] of cases) {
      const [a, b] = [makeNetns("wa"), makeNetns("wb")];
      const [ca, cb] = [makeNetns("wca"), makeNetns("wcb")];
      const warm = call(a, "warm", { CNI_NETNS: ca.path, ...env }, stdin(a));
      const exec = call(b, "exec", { CNI_NETNS: cb.path, ...env }, stdin(b));
      const norm = (c: Call, h: TempNetns, n: TempNetns) => ({
        ...c,
        stdout: masked(c.stdout)
          .replaceAll(n.path, "NS")
          .replaceAll(h.name, "HOST")
          .replace(/\/(warm|exec)\]/, "/CNI_PATH]"),
      });
      expect(norm(warm, a, ca)).toEqual(norm(exec, b, cb));
      expect(links(ca)).toEqual([]);
    }
  });

  test("a stopped pool: CNI error JSON after TSCNI_WARM_TIMEOUT, code 999, exit 1", () => {
    const a = makeNetns("wa");
    const { workers } = pool();
    expect(workers.length).toBe(WORKERS);
    for (const pid of workers) process.kill(pid, "SIGSTOP");
    try {
      const r = call(a, "warm", { CNI_COMMAND: "VERSION" }, "{}", { timeout: "2" });
      expect(r.code).toBe(1);
      expect(JSON.parse(r.stdout)).toMatchObject({
        code: 999,
        msg: "tscni warm helper: no reply within TSCNI_WARM_TIMEOUT",
      });
    } finally {
      for (const pid of workers) process.kill(pid, "SIGCONT");
    }
  });

  test("a caller other than root is not served: EACCES on the socket, or refused by SO_PEERCRED; both exec", async () => {
    const a = makeNetns("wa");
    const nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];
    const denied = call(a, "warm", { CNI_COMMAND: "VERSION" }, "{}", { as: nobody });
    expect(denied.code).toBe(0);
    expect(JSON.parse(denied.stdout).supportedVersions).toContain("1.1.0");
    chmodSync(sockDir, 0o755);
    chmodSync(sock, 0o666);
    try {
      const refused = call(a, "warm", { CNI_COMMAND: "VERSION" }, "{}", { as: nobody });
      expect(refused.code).toBe(0);
      expect(JSON.parse(refused.stdout).supportedVersions).toContain("1.1.0");
      for (let i = 0; i < 50 && !/refused pid/.test(log); i++) await Bun.sleep(20); // the log arrives async
      expect(log).toMatch(/refused pid \d+ uid 65534/);
    } finally {
      chmodSync(sockDir, 0o700);
      chmodSync(sock, 0o600);
    }
  });

  test("no helper: the launcher execs tscni with the same argv and stdin", async () => {
    const a = makeNetns("wa");
    const c = makeNetns("wc");
    await stopHelper();
    try {
      const r = call(a, "warm", { CNI_COMMAND: "ADD", CNI_NETNS: c.path }, conf(a));
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout).ips[0].address).toBe("10.96.0.2/24");
      expect(links(a)).toContain("wbr0");
    } finally {
      await startHelper();
    }
  });
});

/** `call` without blocking the test's event loop, so several run at once. */
function callAsync(
  host: TempNetns,
  via: "warm" | "exec",
  env: Record<string, string>,
  stdin: string,
): Promise<Call> {
  const p = spawn("ip", ["netns", "exec", host.name, join(dir, via, "bridge")], {
    env: {
      PATH: process.env.PATH ?? "/usr/sbin:/usr/bin",
      CNI_PATH: join(dir, via),
      CNI_CONTAINERID: "ctr1",
      CNI_IFNAME: "eth0",
      TSCNI_WARM_SOCK: sock,
      ...env,
    },
  });
  let stdout = "";
  let stderr = "";
  p.stdout.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  p.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  p.stdin.end(stdin);
  return new Promise((resolve) => p.once("close", (code) => resolve({ code: code ?? -1, stdout, stderr })));
}

describe("tscni warm: the pool", () => {
  // A real hung call from outside: an IPAM plugin on CNI_PATH (exec'd by the worker, not one of ours) that
  // never answers. It leaves its pid so the test can see the watchdog killed it with its worker.
  const hangPid = () => join(dir, "hang.pid");
  beforeAll(() => {
    const script = join(dir, "warm", "hang-ipam");
    writeFileSync(script, `#!/bin/sh\necho $$ > ${hangPid()}\nexec sleep 3600 <&-\n`);
    chmodSync(script, 0o755);
  });

  test("parallel ADDs from several netns through the pool: the same results as exec'd", async () => {
    const n = 4;
    const hosts = Array.from({ length: n }, () => [makeNetns("wpa"), makeNetns("wpb")] as const);
    const ctrs = Array.from({ length: n }, () => [makeNetns("wpca"), makeNetns("wpcb")] as const);
    const warm = await Promise.all(
      hosts.map(([a], i) =>
        callAsync(a, "warm", { CNI_COMMAND: "ADD", CNI_NETNS: ctrs[i]![0].path }, conf(a)),
      ),
    );
    const exec = await Promise.all(
      hosts.map(([, b], i) =>
        callAsync(b, "exec", { CNI_COMMAND: "ADD", CNI_NETNS: ctrs[i]![1].path }, conf(b)),
      ),
    );
    for (let i = 0; i < n; i++) {
      const [a] = hosts[i]!;
      const [ca, cb] = ctrs[i]!;
      expect(warm[i]!.stderr).toBe("");
      expect(warm[i]!.code).toBe(0);
      expect(exec[i]!.code).toBe(0);
      expect(masked(warm[i]!.stdout).replace(ca.path, "NS")).toBe(
        masked(exec[i]!.stdout).replace(cb.path, "NS"),
      );
      expect(links(a)).toContain("wbr0");
      expect(
        (ca.ip("addr", "show", "dev", "eth0") as { addr_info: { local: string }[] }[])[0]?.addr_info[0]
          ?.local,
      ).toBe("10.96.0.2");
    }
    const dels = await Promise.all(
      hosts.map(([a], i) =>
        callAsync(a, "warm", { CNI_COMMAND: "DEL", CNI_NETNS: ctrs[i]![0].path }, conf(a)),
      ),
    );
    for (let i = 0; i < n; i++) {
      expect(dels[i]!.code).toBe(0);
      expect(links(ctrs[i]![0])).toEqual([]);
    }
    expect(links(helperNs)).toEqual([]);
  });

  test("a worker killed while idle: the next call works and the pool is whole again", async () => {
    const before = pool().workers;
    expect(before.length).toBe(WORKERS);
    process.kill(before[0]!, "SIGKILL");
    const a = makeNetns("wpk");
    const c = makeNetns("wpkc");
    const r = call(a, "warm", { CNI_COMMAND: "ADD", CNI_NETNS: c.path, CNI_CONTAINERID: "killed1" }, conf(a));
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).ips[0].address).toBe("10.96.0.2/24");
    await until(() => log.includes("ADD bridge killed1 eth0 → 0") && pool().workers.length === WORKERS);
    expect(log).toContain("ADD bridge killed1 eth0 → 0"); // served by a worker, not by the fallback
    expect(log).toMatch(new RegExp(`worker ${before[0]} exited \\(signal SIGKILL\\); replacing it`));
    const after = pool().workers;
    expect(after.length).toBe(WORKERS);
    expect(after).not.toContain(before[0]);
  });

  test("a hung IPAM call: the watchdog kills its worker, the caller gets CNI error 11; the pool serves on", async () => {
    const a = makeNetns("wph");
    const c = makeNetns("wphc");
    const hungConf = conf(a, { ipam: { type: "hang-ipam" } });
    const hung = callAsync(
      a,
      "warm",
      { CNI_COMMAND: "ADD", CNI_NETNS: c.path, CNI_CONTAINERID: "hung1" },
      hungConf,
    );
    // while one worker is stuck in that call, another serves a call at once
    await until(() => existsSync(hangPid()));
    const sleeper = Number(readFileSync(hangPid(), "utf8"));
    expect(existsSync(`/proc/${sleeper}`)).toBe(true);
    const b = makeNetns("wpo");
    const other = call(
      b,
      "warm",
      { CNI_COMMAND: "VERSION", CNI_CONTAINERID: "beside1" },
      '{"cniVersion":"1.0.0"}',
    );
    expect(other.code).toBe(0);
    expect(JSON.parse(other.stdout).supportedVersions).toContain("1.1.0");

    const r = await hung;
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toEqual({
      cniVersion: "1.0.0",
      code: 11,
      msg: "tscni warm helper: the call timed out (ran longer than 3 s); its worker was stopped",
      details: "ADD bridge hung1",
    });
    // the hung plugin died with its worker: nothing of the call is left running
    await until(
      () => !existsSync(`/proc/${sleeper}`) || readFileSync(`/proc/${sleeper}/stat`, "utf8").includes(") Z"),
    );
    expect(
      existsSync(`/proc/${sleeper}`) && !readFileSync(`/proc/${sleeper}/stat`, "utf8").includes(") Z"),
    ).toBe(false);
    expect(log).toMatch(/ADD bridge hung1 \(caller \d+\) ran over 3000 ms; killing worker \d+/);

    // the runtime's DEL after a failed ADD, and the next ADD, go through the pool again
    await until(() => pool().workers.length === WORKERS);
    expect(pool().workers.length).toBe(WORKERS);
    const del = call(a, "warm", { CNI_COMMAND: "DEL", CNI_NETNS: c.path, CNI_CONTAINERID: "hung1" }, conf(a));
    expect(del.code).toBe(0);
    expect(links(c)).toEqual([]);
    const add = call(
      a,
      "warm",
      { CNI_COMMAND: "ADD", CNI_NETNS: c.path, CNI_CONTAINERID: "after1" },
      conf(a),
    );
    expect(add.code).toBe(0);
    expect(JSON.parse(add.stdout).ips[0].address).toBe("10.96.0.2/24");
    await until(() => log.includes("ADD bridge after1 eth0 → 0"));
    expect(log).toContain("ADD bridge after1 eth0 → 0");
  });

  test.skipIf(!existsSync("/usr/bin/systemd-socket-activate"))(
    "socket activation (tscni-warm.socket): the supervisor takes systemd's socket and its workers serve it",
    async () => {
      const sock2 = join(sockDir, "activated.sock");
      let out = "";
      const sa = spawn(
        "systemd-socket-activate",
        ["-l", sock2, tscni, "warm", "serve", "--socket", sock2, "--workers", "1", "--log-calls"],
        { stdio: ["ignore", "ignore", "pipe"] },
      );
      sa.stderr.on("data", (d: Buffer) => {
        out += d.toString();
      });
      try {
        await until(() => out.includes(`Listening on ${sock2}`));
        const a = makeNetns("wps");
        // the first call starts the pool (it waits in the socket's backlog meanwhile)
        const r = call(
          a,
          "warm",
          { CNI_COMMAND: "VERSION", TSCNI_WARM_SOCK: sock2 },
          '{"cniVersion":"1.0.0"}',
        );
        expect(r.code).toBe(0);
        expect(JSON.parse(r.stdout).supportedVersions).toContain("1.1.0");
        await until(() => out.includes("VERSION bridge ctr1 eth0 → 0"));
        expect(out).toContain("tscni warm: serving on systemd's socket (1 workers");
        expect(out).toContain("tscni warm: VERSION bridge ctr1 eth0 → 0");
      } finally {
        sa.kill("SIGTERM"); // it exec'd the supervisor: this pid is the pool's
        await new Promise((resolve) => (sa.exitCode !== null ? resolve(0) : sa.once("exit", resolve)));
      }
      await until(() => !readdirSync("/proc").some((d) => cmdlineHas(d, sock2)));
      expect(readdirSync("/proc").some((d) => cmdlineHas(d, sock2))).toBe(false);
    },
    30_000,
  );

  test("SIGTERM to the supervisor stops every worker: no process of the pool is left", async () => {
    expect(pool().workers.length).toBe(WORKERS);
    await stopHelper();
    expect(pool()).toEqual({ supervisor: undefined, workers: [] });
    await startHelper(); // for afterAll's own stop
  });

  test("a supervisor killed with SIGKILL takes its workers with it (PR_SET_PDEATHSIG)", async () => {
    await until(() => pool().workers.length === WORKERS);
    const { supervisor, workers } = pool();
    expect(workers.length).toBe(WORKERS);
    process.kill(supervisor ?? 0, "SIGKILL");
    await until(() => workers.every((w) => !existsSync(`/proc/${w}`)));
    expect(workers.filter((w) => existsSync(`/proc/${w}`))).toEqual([]);
    helper = undefined;
    await startHelper(); // for afterAll's own stop
  });
});
