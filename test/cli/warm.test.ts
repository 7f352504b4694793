/**
 * The warm path: tscni-launcher (native/warm-launcher.c) exec'd under a plugin's name hands the call to
 * `tscni warm serve`, which runs it in the caller's netns. Same bytes as the exec'd plugin; a helper that
 * is gone, hung, or asked by a non-root caller never breaks a call.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, symlinkSync } from "node:fs";
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
    ["netns", "exec", helperNs.name, tscni, "warm", "serve", "--socket", sock, "--log-calls"],
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

function stopHelper(): void {
  helper?.kill("SIGKILL");
  spawnSync("pkill", ["-KILL", "-f", `warm serve --socket ${sock}`]);
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

afterAll(() => {
  stopHelper();
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

  test("a hung helper: CNI error JSON after TSCNI_WARM_TIMEOUT, code 999, exit 1", () => {
    const a = makeNetns("wa");
    const pid = Number(
      spawnSync("pgrep", ["-f", `warm serve --socket ${sock}`], { encoding: "utf8" }).stdout.split("\n")[0],
    );
    expect(pid).toBeGreaterThan(0);
    process.kill(pid, "SIGSTOP");
    try {
      const r = call(a, "warm", { CNI_COMMAND: "VERSION" }, "{}", { timeout: "2" });
      expect(r.code).toBe(1);
      expect(JSON.parse(r.stdout)).toMatchObject({
        code: 999,
        msg: "tscni warm helper: no reply within TSCNI_WARM_TIMEOUT",
      });
    } finally {
      process.kill(pid, "SIGCONT");
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
    stopHelper();
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
