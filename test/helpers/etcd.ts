/**
 * A real etcd cluster for tests (Debian's /usr/bin/etcd 3.4), inside a throwaway netns:
 *
 *   const c = await startEtcdCluster({members: 3});   // members on 127.0.0.1:<port> inside c.netns
 *   c.endpoints                 ["http://127.0.0.1:23791", …]
 *   await c.exec(argv, {stdin, env, timeoutMs})   → {code, stdout, stderr}: a process inside the netns
 *                                                   (a plugin, a driver script; the test process cannot
 *                                                   reach the members itself)
 *   await c.runBun(file, args, opts)               the same with the pinned bun
 *   c.members[i].kill()         SIGKILL one member (sync) · await c.members[i].start() restarts it on its data dir
 *   await c.waitHealthy(n)      until n members answer /health
 *   startEtcdCluster({tls: true})   clients over https with client-cert auth; PEM paths in c.tls (the
 *       server certificate is for 127.0.0.1 and `host`). etcd logs a handshake without a client
 *       certificate as "tls: bad record MAC": pass c.tls's cert and key (and its CA).
 *   await c.stop()              kills every member, deletes the netns and data dirs (also at the end of the run)
 *
 * Every member runs under `setpriv --pdeathsig KILL`, so it dies with the test process whatever happens,
 * and its data dir lives under a temp dir. Election timings are short (heartbeat 50 ms, election 500 ms)
 * so member-kill tests take seconds, not minutes.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { makeNetns, type TempNetns, tempDir } from "./netns.ts";
import type { ProcOutput } from "./proc.ts";
import { onTestRunEnd } from "./teardown.ts";

export const ETCD_BIN = "/usr/bin/etcd";
const BUN = join(import.meta.dir, "../../node_modules/.bin/bun");

export function skipUnlessEtcd(): string | undefined {
  return existsSync(ETCD_BIN) ? undefined : `${ETCD_BIN} missing (scripts/setup installs etcd-server)`;
}

export interface EtcdMember {
  readonly name: string;
  readonly clientUrl: string;
  readonly peerUrl: string;
  readonly dataDir: string;
  readonly running: boolean;
  /** The member's pid while it runs (for CPU accounting in bench/). */
  readonly pid: number | undefined;
  kill(): void;
  start(): Promise<void>;
}

export interface EtcdCluster {
  readonly netns: TempNetns;
  readonly endpoints: string[];
  readonly members: EtcdMember[];
  /** The client's CA / certificate / key PEM files when started with tls. */
  readonly tls?: EtcdTLSFiles;
  exec(argv: string[], o?: ExecOptions): Promise<ProcOutput>;
  runBun(file: string, args?: string[], o?: ExecOptions): Promise<ProcOutput>;
  /** Until `n` members answer /health with health true (default all running ones). */
  waitHealthy(n?: number, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export interface ExecOptions {
  stdin?: string;
  env?: Record<string, string>;
  timeoutMs?: number;
}

export interface EtcdClusterOptions {
  members?: number;
  /** First client port (peers use port + 100). */
  basePort?: number;
  /** Extra etcd flags for every member. */
  extraArgs?: string[];
  /** The address members listen on (default 127.0.0.1); `prepare` must give the netns that address. */
  host?: string;
  /** Runs in the cluster's netns before the members start (links, addresses: reach from other netns). */
  prepare?: (netns: TempNetns) => void;
  /**
   * Serve clients over TLS with client-certificate auth: a throwaway CA, a server certificate for
   * 127.0.0.1 and a client certificate are made with openssl (PEM paths in cluster.tls).
   */
  tls?: boolean;
}

export interface EtcdTLSFiles {
  ca: string;
  cert: string;
  key: string;
}

/** A CA, a server cert (SAN 127.0.0.1 and `host`) and a client cert under `dir`, with openssl. */
function makeCerts(dir: string, host = "127.0.0.1"): { server: EtcdTLSFiles; client: EtcdTLSFiles } {
  const san = host === "127.0.0.1" ? "IP:127.0.0.1" : `IP:127.0.0.1,IP:${host}`;
  const sh = (cmd: string) => {
    const p = Bun.spawnSync(["sh", "-c", cmd], { cwd: dir, stdout: "pipe", stderr: "pipe" });
    if (p.exitCode !== 0) throw new Error(`openssl: ${cmd}: ${p.stderr}`);
  };
  sh(
    "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1 -subj /CN=tscni-test-ca 2>/dev/null",
  );
  for (const [name, ext] of [
    ["server", `subjectAltName=${san}\nextendedKeyUsage=serverAuth,clientAuth`],
    ["client", "extendedKeyUsage=clientAuth"],
  ] as const) {
    sh(
      `openssl req -newkey rsa:2048 -nodes -keyout ${name}.key -out ${name}.csr -subj /CN=${name} 2>/dev/null`,
    );
    sh(
      `printf '${ext}\n' > ${name}.ext && openssl x509 -req -in ${name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out ${name}.pem -days 1 -extfile ${name}.ext 2>/dev/null`,
    );
  }
  const f = (n: string) => ({
    ca: join(dir, "ca.pem"),
    cert: join(dir, `${n}.pem`),
    key: join(dir, `${n}.key`),
  });
  return { server: f("server"), client: f("client") };
}

const live = new Set<EtcdCluster>();

/** A process inside the netns `netns` (by name), killed after timeoutMs. */
export async function execIn(netns: string, argv: string[], o: ExecOptions = {}): Promise<ProcOutput> {
  const proc = Bun.spawn(["ip", "netns", "exec", netns, ...argv], {
    env: { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin", ...o.env },
    stdin: o.stdin !== undefined ? new TextEncoder().encode(o.stdin) : "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const timer = setTimeout(() => proc.kill("SIGKILL"), o.timeoutMs ?? 60_000);
  try {
    const [stdout, stderr, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    return { code, stdout, stderr };
  } finally {
    clearTimeout(timer);
  }
}

export async function startEtcdCluster(o: EtcdClusterOptions = {}): Promise<EtcdCluster> {
  const n = o.members ?? 3;
  const base = o.basePort ?? 23791;
  const netns = makeNetns("etcd");
  netns.ip("link", "set", "lo", "up");
  o.prepare?.(netns);
  const dir = tempDir("tscni-etcd-");
  const names = Array.from({ length: n }, (_, i) => `m${i}`);
  const host = o.host ?? "127.0.0.1";
  const peer = (i: number) => `http://${host}:${base + 100 + i}`;
  const certs = o.tls ? makeCerts(dir.path, host) : undefined;
  const curlTLS = certs
    ? ["--cacert", certs.client.ca, "--cert", certs.client.cert, "--key", certs.client.key]
    : [];
  const client = (i: number) => `${certs ? "https" : "http"}://${host}:${base + i}`;
  const tlsArgs = certs
    ? [
        `--cert-file=${certs.server.cert}`,
        `--key-file=${certs.server.key}`,
        `--trusted-ca-file=${certs.server.ca}`,
        "--client-cert-auth",
      ]
    : [];
  const initialCluster = names.map((nm, i) => `${nm}=${peer(i)}`).join(",");
  const token = `tscni-${Math.random().toString(36).slice(2, 10)}`;

  const members: EtcdMember[] = names.map((name, i) => {
    let proc: ReturnType<typeof Bun.spawn> | undefined;
    const dataDir = join(dir.path, name);
    const m: EtcdMember = {
      name,
      clientUrl: client(i),
      peerUrl: peer(i),
      dataDir,
      get pid() {
        return proc?.pid;
      },
      get running() {
        return proc !== undefined && proc.exitCode === null && proc.signalCode === null;
      },
      kill() {
        if (proc && proc.exitCode === null) proc.kill("SIGKILL");
        proc = undefined;
      },
      async start() {
        if (m.running) return;
        const args = [
          "setpriv",
          "--pdeathsig",
          "KILL",
          ETCD_BIN,
          `--name=${name}`,
          `--data-dir=${dataDir}`,
          `--listen-client-urls=${client(i)}`,
          `--advertise-client-urls=${client(i)}`,
          `--listen-peer-urls=${peer(i)}`,
          `--initial-advertise-peer-urls=${peer(i)}`,
          `--initial-cluster=${initialCluster}`,
          `--initial-cluster-token=${token}`,
          "--initial-cluster-state=new",
          "--heartbeat-interval=50",
          "--election-timeout=500",
          "--logger=zap",
          `--log-outputs=${join(dir.path, `${name}.log`)}`,
          ...tlsArgs,
          ...(o.extraArgs ?? []),
        ];
        proc = Bun.spawn(["ip", "netns", "exec", netns.name, ...args], {
          stdin: "ignore",
          stdout: "ignore",
          stderr: "ignore",
        });
      },
    };
    return m;
  });

  const cluster: EtcdCluster = {
    netns,
    endpoints: members.map((m) => m.clientUrl),
    members,
    ...(certs ? { tls: certs.client } : {}),
    exec: (argv, eo) => execIn(netns.name, argv, eo),
    runBun: (file, args = [], eo) => execIn(netns.name, [BUN, file, ...args], eo),
    async waitHealthy(want, timeoutMs = 20_000) {
      const need = want ?? members.filter((m) => m.running).length;
      const deadline = Date.now() + timeoutMs;
      let last = "";
      while (Date.now() < deadline) {
        let ok = 0;
        for (const m of members) {
          if (!m.running) continue;
          const r = await execIn(
            netns.name,
            ["curl", "-sS", "-m", "1", ...curlTLS, `${m.clientUrl}/health`],
            {
              timeoutMs: 3000,
            },
          );
          last = r.stdout || `curl ${r.code}: ${r.stderr.trim()}`;
          if (r.code === 0 && /"health":\s*"true"/.test(r.stdout)) ok++;
        }
        if (ok >= need) return;
        await Bun.sleep(100);
      }
      const logs = members
        .map((m) => {
          const f = join(dir.path, `${m.name}.log`);
          const tail = existsSync(f)
            ? readFileSync(f, "utf8").trim().split("\n").slice(-3).join("\n")
            : "(no log)";
          return `${m.name}: ${tail}`;
        })
        .join("\n");
      throw new Error(
        `etcd cluster: fewer than ${need} members healthy after ${timeoutMs} ms (last: ${last})\n${logs}`,
      );
    },
    async stop() {
      if (!live.has(cluster)) return;
      live.delete(cluster);
      for (const m of members) m.kill();
      await Bun.sleep(50);
      netns.cleanup();
      dir.cleanup();
    },
  };
  live.add(cluster);
  try {
    await Promise.all(members.map((m) => m.start()));
    await cluster.waitHealthy(n);
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}

/** Kills whatever cluster a failed test left (sync: SIGKILL; the netns and dirs go with cleanupAll). */
onTestRunEnd(() => {
  for (const c of [...live]) {
    for (const m of c.members) m.kill();
    live.delete(c);
  }
});
