/**
 * The fuzz driver, run by fuzz.test.ts as its own process inside a throwaway "host" netns and a private
 * mount namespace (`ip netns exec`) with tmpfs over /var/lib/cni and /run/cni, so a plugin that falls back
 * to its default data dir writes where the driver can see it and the machine cannot.
 *
 *   bun fuzz-driver.ts --seed S --runs N --netns /var/run/netns/<container> --sandbox DIR [--exec EXE]
 *
 * In-process (default) each case is one skel invocation (pluginMainWith with in-memory I/O) of the
 * multicall registry's plugin; with --exec, the compiled executable is run as that plugin (a link named
 * after it), as a runtime would. After every case: exit 0 or 1, on 1 a CNI error JSON with a spec code,
 * no stack trace and no engine error (TypeError…) in the output, a failed ADD left no link in either
 * netns, a successful ADD is undone by DEL. At the end: no file outside the data dirs, no IP reservation,
 * no nft table, only the bridges a DEL keeps. Prints one JSON line: {runs, seed, byPlugin, failures}.
 */
import { mkdirSync, readdirSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import fc from "fast-check";
import { loadPlugin } from "../../src/cli/registry.ts";
import { linkList } from "../../src/netlink/link.ts";
import { NetlinkSocket } from "../../src/netlink/socket.ts";
import { openNetns } from "../../src/ns/index.ts";
import { pluginMainWith, type SkelIO } from "../../src/skel/core.ts";
import { setInProcessResolver } from "../../src/skel/inprocess.ts";
import {
  type Case,
  caseArb,
  describeCase,
  ENGINE_ERROR,
  FUZZ_PLUGINS,
  isSpecCode,
  type Sandbox,
  STACK_LINE,
} from "./fuzz-gen.ts";

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
}

const seed = Number(arg("seed") ?? Date.now() % 2 ** 31);
const runs = Number(arg("runs") ?? 1000);
const exe = arg("exec");
const root = arg("sandbox") ?? "";
const netnsPath = arg("netns") ?? "";
const metaNetnsPath = arg("meta-netns") ?? "";
if (!root || !netnsPath || !metaNetnsPath)
  throw new Error("--sandbox, --netns and --meta-netns are required");

const s: Sandbox = {
  root,
  data: join(root, "data"),
  bin: join(root, "bin"),
  file: join(root, "afile"),
  dir: join(root, "adir"),
  netns: netnsPath,
  metaNetns: metaNetnsPath,
  subnetEnv: join(root, "subnet.env"),
};
const cwd = join(root, "cwd", "deep");
for (const d of [s.data, s.bin, s.dir, cwd]) mkdirSync(d, { recursive: true });
writeFileSync(s.file, "not a netns\n");
writeFileSync(
  s.subnetEnv,
  "FLANNEL_NETWORK=10.245.0.0/16\nFLANNEL_SUBNET=10.245.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n",
);
const target = exe ?? process.execPath;
for (const p of FUZZ_PLUGINS) symlinkSync(target, join(s.bin, p));
// the IPAM and delegate plugins of this "executable" (bun, running the registry) run in-process
setInProcessResolver(loadPlugin, process.execPath);
process.chdir(cwd);

const hostSock = NetlinkSocket.open();
const contNs = openNetns(netnsPath);
const contSock = NetlinkSocket.open({ netnsFd: contNs.fd });
const metaNs = openNetns(metaNetnsPath);
const metaSock = NetlinkSocket.open({ netnsFd: metaNs.fd });
/** Links a DEL keeps on purpose (upstream alike): the bridges, whatever name the config gave them. */
function links(): string {
  const names = (sock: NetlinkSocket) =>
    linkList(sock)
      .filter((l) => l.kind !== "bridge")
      .map((l) => l.name)
      .sort()
      .join(",");
  return `host[${names(hostSock)}] container[${names(contSock)}] meta[${names(metaSock)}]`;
}
const baseline = links();

const memIO: SkelIO = {
  readStdin: () => new Uint8Array(),
  write: () => {},
  stdinIsTerminal: () => false,
};

interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
}

async function runInProcess(c: Case, env: Case["env"]): Promise<Outcome> {
  const plugin = await loadPlugin(c.plugin);
  if (!plugin) throw new Error(`no plugin ${c.plugin}`);
  let stdout = "";
  let stderr = "";
  const clean: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) clean[k] = v;
  const code = await pluginMainWith(memIO, plugin, {
    env: clean,
    stdin: c.stdin,
    stdout: (t) => {
      stdout += t;
    },
    stderr: (t) => {
      stderr += t;
    },
  });
  return { code, stdout, stderr };
}

async function runExec(c: Case, env: Case["env"]): Promise<Outcome> {
  const clean: Record<string, string> = { PATH: process.env["PATH"] ?? "/usr/bin:/bin" };
  // a NUL cannot pass through execve's environment: the kernel would cut it, so the case drops it
  for (const [k, v] of Object.entries(env)) if (v !== undefined && !v.includes("\u0000")) clean[k] = v;
  const p = Bun.spawn([join(s.bin, c.plugin)], {
    env: clean,
    stdin: c.stdin,
    stdout: "pipe",
    stderr: "pipe",
    cwd,
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
    p.exited,
  ]);
  return { code, stdout, stderr };
}

const run = exe ? runExec : runInProcess;

async function bounded(c: Case, env: Case["env"]): Promise<Outcome> {
  let timer: Timer | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("no answer within 20 s")), 20000);
  });
  try {
    return await Promise.race([run(c, env), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Why `o` is not a well-formed answer (undefined when it is). */
function badAnswer(o: Outcome, verb: string | undefined): string | undefined {
  if (STACK_LINE.test(o.stdout) || STACK_LINE.test(o.stderr))
    return `stack trace in output: ${o.stdout}${o.stderr}`;
  if (o.code === 0) {
    if (verb === "ADD" || verb === "VERSION") {
      try {
        JSON.parse(o.stdout);
      } catch {
        return `exit 0 but stdout is not JSON: ${o.stdout.slice(0, 200)}`;
      }
    }
    return undefined;
  }
  if (o.code !== 1) return `exit ${o.code}: ${o.stdout.slice(0, 300)} ${o.stderr.slice(0, 300)}`;
  let e: { code?: unknown; msg?: unknown; cniVersion?: unknown };
  try {
    e = JSON.parse(o.stdout);
  } catch {
    return `exit 1 but stdout is not JSON: ${o.stdout.slice(0, 300)}`;
  }
  if (!isSpecCode(e.code)) return `error code ${String(e.code)} is not a spec code`;
  if (typeof e.msg !== "string" || e.msg === "") return "error without msg";
  if (typeof e.cniVersion !== "string") return "error without cniVersion";
  if (ENGINE_ERROR.test(e.msg)) return `engine error leaked as code ${e.code}: ${e.msg}`;
  return undefined;
}

const byPlugin: Record<string, { runs: number; ok: number; addOk: number }> = {};
let count = 0;

async function property(c: Case): Promise<void> {
  try {
    await check(c);
  } catch (err) {
    throw new Error(`${err instanceof Error ? err.message : String(err)}\n  case: ${describeCase(c)}`);
  }
}

async function check(c: Case): Promise<void> {
  count++;
  const verb = c.env["CNI_COMMAND"];
  const stat = byPlugin[c.plugin] ?? { runs: 0, ok: 0, addOk: 0 };
  byPlugin[c.plugin] = stat;
  stat.runs++;
  const o = await bounded(c, c.env);
  const bad = badAnswer(o, verb);
  if (bad) throw new Error(`${verb}: ${bad}`);
  if (o.code === 0) stat.ok++;
  if (verb === "ADD") {
    if (o.code !== 0) {
      const now = links();
      if (now !== baseline) throw new Error(`failed ADD left links: ${now} (before: ${baseline})`);
      return;
    }
    stat.addOk++;
    const del = await bounded(c, { ...c.env, CNI_COMMAND: "DEL" });
    const badDel = badAnswer(del, "DEL");
    if (badDel || del.code !== 0) throw new Error(`DEL after a successful ADD: ${badDel ?? del.stdout}`);
  }
  const now = links();
  if (now !== baseline) {
    // a DEL cleans what an ADD made: run one for this case, then compare again
    await bounded(c, { ...c.env, CNI_COMMAND: "DEL" });
    if (links() !== baseline) throw new Error(`${verb} left links: ${now} (before: ${baseline})`);
  }
}

/** Every file under `dir`, relative to it. */
function walk(dir: string, base = dir): string[] {
  let out: string[] = [];
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  for (const n of names) {
    const p = join(dir, n);
    const st = statSync(p, { throwIfNoEntry: false });
    if (st?.isDirectory()) out = out.concat(walk(p, base));
    else out.push(relative(base, p));
  }
  return out;
}

const failures: string[] = [];
try {
  await fc.assert(fc.asyncProperty(caseArb(s), property), {
    seed,
    numRuns: runs,
    endOnFailure: true,
  });
} catch (err) {
  const text = err instanceof Error ? err.message : String(err);
  const cause = err instanceof Error && err.cause instanceof Error ? err.cause.message : "";
  const got = cause || (/Got error: (.*?)(\n\nStack trace|\n\s+at |$)/s.exec(text)?.[1] ?? "");
  const head = text.split("\n").slice(0, 2).join(" ");
  failures.push(`${got.slice(0, 3000)}\n${head}\n${text.slice(text.indexOf("Counterexample"), 3000)}`);
}

// the file system: nothing outside the data dirs; the default dirs only their own subdirs
const stray = walk(root).filter(
  // a relative dataDir is relative to the working directory (upstream alike): cwd/ is a configured dir too
  (f) =>
    !f.startsWith("data/") &&
    !f.startsWith("bin/") &&
    !f.startsWith("cwd/") &&
    !["afile", "subnet.env"].includes(f),
);
if (stray.length) failures.push(`files outside the data dir: ${stray.join(", ")}`);
for (const [dir, allowed] of [
  ["/var/lib/cni", /^(networks|flannel)\//],
  ["/run/cni", /^tuning\//],
] as const) {
  const bad = walk(dir).filter((f) => !allowed.test(f));
  if (bad.length) failures.push(`files in ${dir} outside its data dirs: ${bad.join(", ")}`);
}
// every reservation released (host-local keeps only its lock and last_reserved_ip files)
const reservations = [...walk(join(s.data, "ipam")), ...walk("/var/lib/cni/networks")].filter((f) =>
  /\/[0-9a-f.:]+$/.test(f.includes("/") ? f : `/${f}`),
);
if (reservations.length) failures.push(`IP reservations left: ${reservations.join(", ")}`);

hostSock.close();
contSock.close();
contNs.close();
metaSock.close();
metaNs.close();
process.stdout.write(`${JSON.stringify({ runs: count, seed, byPlugin, failures })}\n`);
