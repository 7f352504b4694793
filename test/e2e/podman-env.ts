/**
 * A throwaway podman for end-to-end tests: podman 4 with its CNI backend, run inside a throwaway "host"
 * netns, with every piece of state it lets us move under one temp dir.
 *
 *   ensurePodman() → undefined, or why podman cannot run here (apt-installs what is missing first)
 *   makePodmanEnv({pluginDir?}) → PodmanEnv  the host netns, the configs, a busybox rootfs
 *   createNetwork(env, name, subnet) → the conflist `podman network create` wrote, as it wrote it
 *   adaptConflist(written, dataDir) → that shape minus the plugins tscni lacks, host-local's dataDir set
 *   installTscni(dir) → the plugin dir `tscni install` laid out (the compiled multicall executable)
 *   missingPlugins(dir, conflist) → the plugin types the conflist needs that dir does not hold
 *
 * Where podman cannot be redirected we clean up exactly our own entries: libcni's result cache
 * (/var/lib/cni/results/<net>-*, podman 4.3 always uses libcni's default cache dir), the cgroupfs
 * dirs libpod-<id> of our containers, and /run/netns/netns-<uuid> (podman deletes those itself).
 * runc's state dir is moved by a wrapper script registered as the "runc" runtime, since podman passes
 * `--runtime-flag` to itself but not to conmon's exit command.
 */
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { dirname, join } from "node:path";
import { buildTscni } from "../helpers/build.ts";
import { makeNetns, type RunResult, type TempNetns, tempDir } from "../helpers/netns.ts";

/** package → a file it provides (checked instead of dpkg, like scripts/setup). */
export const PODMAN_PACKAGES: Record<string, string> = {
  podman: "/usr/bin/podman",
  "busybox-static": "/bin/busybox",
  runc: "/usr/sbin/runc",
  conmon: "/usr/bin/conmon",
  // the host side's HTTP client (busybox-static's wget segfaults resolving on glibc hosts)
  curl: "/usr/bin/curl",
};

/** What the CNI cache of podman 4.3 is (libcni's default; not configurable through podman). */
export const LIBCNI_RESULTS = "/var/lib/cni/results";

const PODMAN_TIMEOUT_MS = 30_000;

function exec(cmd: string[], timeoutMs: number, env?: Record<string, string>): RunResult {
  const p = Bun.spawnSync(cmd, {
    env: env ? { ...process.env, ...env } : undefined,
    stdout: "pipe",
    stderr: "pipe",
    timeout: timeoutMs,
    killSignal: "SIGKILL",
  });
  const timedOut = p.signalCode === "SIGKILL" ? `\n(killed after ${timeoutMs} ms)` : "";
  return { code: p.exitCode ?? -1, stdout: p.stdout.toString(), stderr: p.stderr.toString() + timedOut };
}

function missingPackages(): string[] {
  return Object.entries(PODMAN_PACKAGES)
    .filter(([, file]) => !existsSync(file))
    .map(([pkg]) => pkg);
}

/** Installs podman and friends with apt when missing; the reason the e2e must skip when that fails. */
export function ensurePodman(): string | undefined {
  const missing = missingPackages();
  if (missing.length === 0) return undefined;
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  const install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", ...missing];
  let r = exec(install, 300_000, env);
  if (r.code !== 0) {
    exec(["apt-get", "update", "-qq"], 120_000, env);
    r = exec(install, 300_000, env);
  }
  if (r.code === 0 && missingPackages().length === 0) return undefined;
  const tail = r.stderr.trim().split("\n").slice(-2).join(" ");
  return `podman cannot be installed (apt-get install ${missing.join(" ")}: ${tail || `exit ${r.code}`})`;
}

/** Builds the multicall executable and lays its plugin links into `dir` (`tscni install dir`). */
export function installTscni(dir: string): string {
  const exe = buildTscni();
  const r = exec([exe, "install", dir], 30_000);
  if (r.code !== 0) throw new Error(`tscni install ${dir} failed (${r.code}): ${r.stderr.trim()}`);
  return dir;
}

/** A rootfs of busybox-static: one link per applet, root in passwd/group, a page to serve in /www. */
export function makeBusyboxRootfs(dir: string, page: string): void {
  for (const d of ["bin", "etc", "www", "proc", "sys", "dev", "tmp"])
    mkdirSync(join(dir, d), { recursive: true });
  writeFileSync(join(dir, "bin/busybox"), readFileSync("/bin/busybox"));
  chmodSync(join(dir, "bin/busybox"), 0o755);
  const list = exec(["/bin/busybox", "--list"], 10_000);
  if (list.code !== 0) throw new Error(`busybox --list failed: ${list.stderr}`);
  for (const applet of list.stdout.split("\n").filter((a) => a && a !== "busybox")) {
    symlinkSync("busybox", join(dir, "bin", applet));
  }
  writeFileSync(join(dir, "etc/passwd"), "root:x:0:0:root:/:/bin/sh\n");
  writeFileSync(join(dir, "etc/group"), "root:x:0:\n");
  writeFileSync(join(dir, "www/index.html"), page);
}

export interface PodmanEnv {
  /** The temp dir holding all of podman's state, the configs and the rootfs. */
  readonly dir: string;
  /** The throwaway netns podman (and so every plugin's host side) runs in. */
  readonly host: TempNetns;
  readonly pluginDir: string;
  /** Where the conflists live (podman's network_config_dir). */
  readonly netDir: string;
  /** host-local's dataDir for every network. */
  readonly ipamDir: string;
  readonly rootfs: string;
  /** Networks created through createNetwork (their cache entries are removed at cleanup). */
  readonly networks: string[];
  /** `podman args…` inside the host netns, killed after timeoutMs. */
  podman(args: string[], timeoutMs?: number): RunResult;
  /** The same, throwing with podman's stderr unless it exits 0; its stdout. */
  podmanOk(args: string[], timeoutMs?: number): string;
  /** Any command inside the host netns (nsenter: unlike `ip netns exec`, keeps /sys and its cgroups). */
  hostRun(cmd: string[], timeoutMs?: number): RunResult;
  /** Removes every container, our cache entries and cgroups, the netns and the temp dir. */
  cleanup(): void;
}

export const PAGE = "hello from tscni\n";

/** pluginDir defaults to `<dir>/bin` (empty: lay tscni's links there with installTscni). */
/** Default dirs podman 4.3's CNI backend creates on first use (libcni's cache, tuning's backups). */
const PODMAN_DEFAULT_DIRS = ["/var/lib/cni/results", "/var/lib/cni", "/run/cni/tuning", "/run/cni"];

export function makePodmanEnv(opts: { pluginDir?: string } = {}): PodmanEnv {
  // the ones this host lacks are removed again at cleanup (when empty): the host ends as it began
  const absentDirs = PODMAN_DEFAULT_DIRS.filter((d) => !existsSync(d));
  const tmp = tempDir("tscni-podman-");
  const dir = tmp.path;
  const pluginDir = opts.pluginDir ?? join(dir, "bin");
  const host = makeNetns("podman");
  const netDir = join(dir, "net.d");
  const ipamDir = join(dir, "ipam");
  const rootfs = join(dir, "rootfs");
  for (const d of [netDir, ipamDir, join(dir, "tmp"), join(dir, "runc")]) mkdirSync(d, { recursive: true });
  makeBusyboxRootfs(rootfs, PAGE);
  host.run(["ip", "link", "set", "lo", "up"]);

  const runc = join(dir, "runc.sh");
  writeFileSync(runc, `#!/bin/sh\nexec ${PODMAN_PACKAGES.runc} --root ${join(dir, "runc")} "$@"\n`);
  chmodSync(runc, 0o755);
  const q = JSON.stringify;
  // crun refuses this VM's hybrid cgroup layout; no systemd; the VM cannot raise rlimits; file locks
  // instead of the shared /dev/shm/libpod_lock every root podman on the machine would use.
  writeFileSync(
    join(dir, "containers.conf"),
    `[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]

[network]
network_backend = "cni"
cni_plugin_dirs = [${q(pluginDir)}]
network_config_dir = ${q(netDir)}

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = ${q(join(dir, "events.log"))}
lock_type = "file"
tmp_dir = ${q(join(dir, "tmp"))}
static_dir = ${q(join(dir, "storage/libpod"))}
volume_path = ${q(join(dir, "storage/volumes"))}

[engine.runtimes]
runc = [${q(runc)}]
`,
  );
  writeFileSync(
    join(dir, "storage.conf"),
    `[storage]\ndriver = "vfs"\nrunroot = ${q(join(dir, "run"))}\ngraphroot = ${q(join(dir, "storage"))}\n`,
  );
  const podEnv = {
    CONTAINERS_CONF: join(dir, "containers.conf"),
    CONTAINERS_STORAGE_CONF: join(dir, "storage.conf"),
  };
  const nsenter = ["nsenter", `--net=${host.path}`];
  const networks: string[] = [];

  const env: PodmanEnv = {
    dir,
    host,
    pluginDir,
    netDir,
    ipamDir,
    rootfs,
    networks,
    podman: (args, timeoutMs = PODMAN_TIMEOUT_MS) => exec([...nsenter, "podman", ...args], timeoutMs, podEnv),
    podmanOk(args, timeoutMs) {
      const r = env.podman(args, timeoutMs);
      if (r.code !== 0) throw new Error(`podman ${args.join(" ")} failed (${r.code}): ${r.stderr.trim()}`);
      return r.stdout;
    },
    hostRun: (cmd, timeoutMs = 10_000) => exec([...nsenter, ...cmd], timeoutMs),
    cleanup() {
      const errors: unknown[] = [];
      const step = (fn: () => void) => {
        try {
          fn();
        } catch (err) {
          errors.push(err);
        }
      };
      step(() => env.podman(["rm", "--all", "--force", "--time", "0"], 60_000));
      step(() => removeCgroups(containerIds(join(dir, "events.log"))));
      step(() => removeCacheEntries(networks));
      step(() => host.cleanup());
      step(() => unmountUnder(dir));
      step(() => tmp.cleanup());
      for (const d of absentDirs) {
        try {
          rmdirSync(d);
        } catch {
          // not empty (another user of the dir) or never made: leave it
        }
      }
      if (errors.length) throw errors[0];
    },
  };
  return env;
}

/** Runs `podman network create`, returning the conflist it wrote, untouched. */
// biome-ignore lint/suspicious/noExplicitAny: the conflist as podman wrote it
export function createNetwork(env: PodmanEnv, name: string, subnet: string): any {
  env.networks.push(name);
  env.podmanOk(["network", "create", "--subnet", subnet, name]);
  return JSON.parse(readFileSync(join(env.netDir, `${name}.conflist`), "utf8"));
}

/** Plugins podman's conflist has that tscni does not implement yet (dropped by adaptConflist). */
export const NOT_YET_IN_TSCNI: string[] = [];

/**
 * podman's shape with our changes only: NOT_YET_IN_TSCNI dropped, host-local's dataDir set, and the
 * firewall plugin's records beside it (<dataDir>/../firewall) instead of /var/lib/cni/firewall.
 */
// biome-ignore lint/suspicious/noExplicitAny: the conflist as podman wrote it
export function adaptConflist(written: any, dataDir: string): any {
  const conf = structuredClone(written);
  // biome-ignore lint/suspicious/noExplicitAny: plugin entries
  conf.plugins = conf.plugins.filter((p: any) => !NOT_YET_IN_TSCNI.includes(p.type));
  for (const p of conf.plugins) if (p.ipam) p.ipam.dataDir = dataDir;
  for (const p of conf.plugins) if (p.type === "firewall") p.dataDir = join(dirname(dataDir), "firewall");
  return conf;
}

export function writeConflist(env: PodmanEnv, conf: { name: string }): void {
  writeFileSync(join(env.netDir, `${conf.name}.conflist`), JSON.stringify(conf, null, 2));
}

/** Every plugin type (and IPAM type) the conflist runs that `dir` does not hold. */
// biome-ignore lint/suspicious/noExplicitAny: a conflist
export function missingPlugins(dir: string, conf: any): string[] {
  const need = new Set<string>();
  for (const p of conf.plugins) {
    need.add(p.type);
    if (p.ipam?.type) need.add(p.ipam.type);
  }
  return [...need].filter((t) => !existsSync(join(dir, t))).sort();
}

/** IPs host-local holds for `network` in dataDir (its reservation files are named by the IP). */
export function reservations(ipamDir: string, network: string): string[] {
  const d = join(ipamDir, network);
  if (!existsSync(d)) return [];
  return readdirSync(d).filter((f) => /^[0-9a-f.:]+$/i.test(f) && (f.includes(".") || f.includes(":")));
}

function containerIds(eventsLog: string): string[] {
  if (!existsSync(eventsLog)) return [];
  const ids = new Set<string>();
  for (const line of readFileSync(eventsLog, "utf8").split("\n")) {
    const m = /"ID":"([0-9a-f]{64})"/.exec(line);
    if (m?.[1] && line.includes('"Type":"container"')) ids.add(m[1]);
  }
  return [...ids];
}

/** cgroupfs leaves an empty libpod-<id> per container in every v1 hierarchy: remove ours (rmdir only). */
function removeCgroups(ids: string[]): void {
  const root = "/sys/fs/cgroup";
  if (ids.length === 0 || !existsSync(root)) return;
  for (const ctrl of readdirSync(root)) {
    for (const id of ids) {
      for (const d of [
        join(root, ctrl, "libpod_parent", `libpod-${id}`),
        join(root, ctrl, "libpod_parent", `libpod-conmon-${id}`),
      ]) {
        try {
          rmdirSync(d);
        } catch {
          // absent, or not empty (then not ours to force)
        }
      }
    }
  }
}

function removeCacheEntries(networks: string[]): void {
  if (!existsSync(LIBCNI_RESULTS)) return;
  for (const f of readdirSync(LIBCNI_RESULTS)) {
    if (networks.some((n) => f.startsWith(`${n}-`))) rmSync(join(LIBCNI_RESULTS, f), { force: true });
  }
}

/** A container killed mid-way can leave its shm mount under our storage: lazily unmount, deepest first. */
function unmountUnder(dir: string): void {
  const mounts = readFileSync("/proc/self/mounts", "utf8")
    .split("\n")
    .map((l) => l.split(" ")[1] ?? "")
    .filter((m) => m.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) exec(["umount", "-l", m], 10_000);
}
