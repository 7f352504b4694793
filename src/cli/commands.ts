/**
 * The tscni CLI: cnitool's verbs and environment (NETCONFPATH, CNI_PATH, CAP_ARGS, CNI_ARGS,
 * CNI_IFNAME) plus validate, version, ls and install.
 */
import { existsSync, realpathSync } from "node:fs";
import { dirname, join } from "node:path";
import {
  CNIConfig,
  DEFAULT_CACHE_DIR,
  loadConfList,
  NotFoundError,
  type RuntimeConf,
} from "../libcni/index.ts";
import { CniError, ErrCode } from "../spec/errors.ts";
import { formatResult, parseCniArgs } from "../spec/index.ts";
import type { NetConfList } from "../spec/types.ts";
import { builtinNetwork } from "./builtin.ts";
import { cliExec } from "./exec.ts";
import { print } from "./out.ts";
import { installablePlugins } from "./registry.ts";
import {
  cnitoolContainerID,
  ensureBuiltinBin,
  install,
  isBunRuntime,
  resolveNetnsArg,
  UsageError,
} from "./shared.ts";
import { printVersion } from "./version.ts";

export { cnitoolContainerID, install, resolveNetnsArg, UsageError };

const USAGE = `usage: tscni <command> [args]

  add|check|del <net> <netns> [-i ifname]   attach / check / detach a netns (cnitool semantics)
  gc <net>                                  GC of a network (no attachment is valid)
  status <net>                              STATUS of every plugin of a network
  validate <net>                            check the plugins of a network exist and speak its version
  ls                                        cached attachments
  ipam <net|file> [--ip ADDR] [--json]      cluster IPAM (whereabouts on etcd): blocks per node, owners
  pod up|down|status <ns>/<name> <netns> [--id ID] [--uid UID]
                                            kubelet's pod flow: loopback, then the default network
  version                                   tscni's version and the CNI versions it speaks
  install [--warm] <dir>                    link every plugin name to this executable in <dir>
                                            (--warm: to tscni-launcher beside it, for \`tscni warm serve\`)
  node-net --etcd-endpoints URL,… [--etcd-prefix P] [--etcd-cafile F --etcd-certfile F --etcd-keyfile F]
           [--etcd-username U --etcd-password P] [--iface IF] [--public-ip IP] [--subnet-file F]
           [--ip-masq] [--ttl SECONDS] …    the node daemon (flanneld's flags; node-net --help)
  warm serve [--socket PATH] [--log-calls]  the warm path's resident helper (default /run/tscni/warm.sock)
             [--workers N] [--call-timeout S] a pool of N workers (default: CPUs); a call over S s (60) is killed
  demo [--keep]                             a netns on a built-in default network, pinged, torn down
  <plugin>                                  run as that plugin (as if started through its link)

  <netns> is a path or a name under /var/run/netns. Environment: NETCONFPATH (default /etc/cni/net.d),
  CNI_PATH, CAP_ARGS (JSON), CNI_ARGS (K=V;K=V), CNI_IFNAME (default eth0), CNI_CACHE_DIR (default
  ${DEFAULT_CACHE_DIR}).`;

export { TSCNI_VERSION } from "./version.ts";

/** Where `tscni warm serve` listens by default and tscni-launcher connects (native/warm-launcher.c). */
const DEFAULT_WARM_SOCKET = "/run/tscni/warm.sock";

interface Env {
  confDir: string;
  cniPath: string[];
  cacheDir: string;
}

function env(): Env {
  return {
    confDir: process.env.NETCONFPATH || "/etc/cni/net.d",
    cniPath: (process.env.CNI_PATH ?? "").split(":").filter(Boolean),
    cacheDir: process.env.CNI_CACHE_DIR || DEFAULT_CACHE_DIR,
  };
}

/** The network from NETCONFPATH, else a built-in one (run with this executable's plugins). */
async function loadNetwork(e: Env, name: string): Promise<NetConfList> {
  try {
    return await loadConfList(e.confDir, name);
  } catch (err) {
    const builtin = err instanceof NotFoundError ? builtinNetwork(name, e.cacheDir) : undefined;
    if (!builtin) throw err;
    if (e.cniPath.length === 0) e.cniPath = [ensureBuiltinBin()];
    return builtin;
  }
}

function runtimeConf(netnsArg: string, ifName: string | undefined): RuntimeConf {
  const netNS = resolveNetnsArg(netnsArg);
  let capabilityArgs: Record<string, unknown> = {};
  if (process.env.CAP_ARGS) {
    try {
      capabilityArgs = JSON.parse(process.env.CAP_ARGS);
    } catch (err) {
      throw new CniError(ErrCode.DecodingFailure, `parsing CAP_ARGS: ${(err as Error).message}`);
    }
  }
  return {
    containerID: cnitoolContainerID(netNS),
    netNS,
    ifName: ifName ?? (process.env.CNI_IFNAME || "eth0"),
    args: [...parseCniArgs(process.env.CNI_ARGS ?? "")],
    capabilityArgs,
  };
}

/** Splits `-i ifname` / `--ifname=x` out of the positional arguments. */
function takeIfname(args: string[]): { rest: string[]; ifName?: string } {
  const rest: string[] = [];
  let ifName: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "-i" || a === "--ifname") ifName = args[++i];
    else if (a.startsWith("--ifname=")) ifName = a.slice(9);
    else rest.push(a);
  }
  return ifName === undefined ? { rest } : { rest, ifName };
}

function need(args: string[], n: number, what: string): void {
  if (args.length < n) throw new UsageError(`${what}\n\n${USAGE}`);
}

async function attach(verb: "add" | "check" | "del", argv: string[]): Promise<void> {
  const { rest, ifName } = takeIfname(argv);
  need(rest, 2, `tscni ${verb} needs <net> <netns>`);
  const e = env();
  const list = await loadNetwork(e, rest[0]!);
  const cni = new CNIConfig({ path: e.cniPath, cacheDir: e.cacheDir, exec: cliExec() });
  const rt = runtimeConf(rest[1]!, ifName);
  if (verb === "add") {
    const result = await cni.addNetworkList(list, rt);
    await print(`${formatResult(result, list.cniVersion)}\n`);
  } else if (verb === "check") {
    await cni.checkNetworkList(list, rt);
  } else {
    await cni.delNetworkList(list, rt);
  }
}

async function gcOrStatus(verb: "gc" | "status", argv: string[]): Promise<void> {
  need(argv, 1, `tscni ${verb} needs <net>`);
  const e = env();
  const list = await loadNetwork(e, argv[0]!);
  const cni = new CNIConfig({ path: e.cniPath, cacheDir: e.cacheDir, exec: cliExec() });
  if (verb === "gc") await cni.gcNetworkList(list, { validAttachments: [] });
  else await cni.getStatusNetworkList(list);
}

async function validate(argv: string[]): Promise<void> {
  need(argv, 1, "tscni validate needs <net>");
  const e = env();
  const list = await loadNetwork(e, argv[0]!);
  const caps = await new CNIConfig({
    path: e.cniPath,
    cacheDir: e.cacheDir,
    exec: cliExec(),
  }).validateNetworkList(list);
  await print(
    `network "${list.name}" (cniVersion ${list.cniVersion}): ${list.plugins.length} plugin(s) ok` +
      (caps.length ? `; capabilities: ${caps.join(", ")}` : "") +
      "\n",
  );
}

function resultIPs(result: Record<string, unknown> | undefined): string {
  if (!result) return "-";
  const ips = (result.ips as { address?: string }[] | undefined)?.map((i) => i.address) ?? [];
  for (const k of ["ip4", "ip6"]) {
    const ip = (result[k] as { ip?: string } | undefined)?.ip;
    if (ip) ips.push(ip);
  }
  return ips.filter(Boolean).join(",") || "-";
}

async function ls(): Promise<void> {
  const cni = new CNIConfig({ path: [], cacheDir: env().cacheDir });
  const rows = (await cni.getCachedAttachments()).map((a) => [
    a.networkName,
    a.containerID,
    a.ifName,
    resultIPs(a.result),
    a.netns || "-",
  ]);
  await printTable(["NETWORK", "CONTAINER", "IFNAME", "IPS", "NETNS"], rows);
}

export async function printTable(head: string[], rows: string[][]): Promise<void> {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => c.padEnd(widths[i]!))
      .join("  ")
      .trimEnd();
  await print(`${[line(head), ...rows.map(line)].join("\n")}\n`);
}

/** The warm path's launcher: tscni-launcher beside this executable (`npm run build:launcher`). */
function launcherPath(): string {
  const exe = join(dirname(realpathSync(process.execPath)), "tscni-launcher");
  if (!existsSync(exe)) throw new UsageError(`no ${exe}: run \`npm run build:launcher\``);
  return exe;
}

async function installCmd(argv: string[]): Promise<void> {
  const warm = argv[0] === "--warm";
  if (warm) argv = argv.slice(1);
  need(argv, 1, "tscni install needs <dir>");
  if (isBunRuntime(process.execPath)) {
    throw new UsageError(
      "tscni install links the compiled executable: run `npm run build` and use dist/tscni",
    );
  }
  const exe = warm ? launcherPath() : process.execPath;
  const changed = install(argv[0]!, exe);
  await print(
    `${installablePlugins().length} plugins in ${argv[0]} → ${realpathSync(exe)}` +
      (changed.length ? ` (linked: ${changed.join(" ")})` : " (already installed)") +
      "\n",
  );
}

export async function runCli(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case "add":
      case "check":
      case "del":
        await attach(cmd, rest);
        return 0;
      case "gc":
      case "status":
        await gcOrStatus(cmd, rest);
        return 0;
      case "validate":
        await validate(rest);
        return 0;
      case "ls":
        await ls();
        return 0;
      case "ipam": {
        const { ipamCmd } = await import("./ipam.ts");
        await ipamCmd(rest);
        return 0;
      }
      case "pod": {
        const { podCmd } = await import("./pod.ts");
        await podCmd(rest, env());
        return 0;
      }
      case "version":
      case "--version":
        return printVersion();
      case "install":
        await installCmd(rest);
        return 0;
      case "node-net": {
        const { nodeNetCmd } = await import("./node-net.ts");
        await nodeNetCmd(rest);
        return 0;
      }
      case "warm": {
        if (rest[0] !== "serve") throw new UsageError(`tscni warm: unknown subcommand "${rest[0] ?? ""}"`);
        const { parseServeArgs, serveWarm } = await import("./warm.ts");
        return serveWarm(parseServeArgs(rest, { socket: DEFAULT_WARM_SOCKET, launcher: launcherPath() }));
      }
      case "demo": {
        const { runDemo } = await import("./demo.ts");
        return runDemo(rest);
      }
      case undefined:
      case "help":
      case "-h":
      case "--help":
        await print(`${USAGE}\n`);
        return cmd === undefined ? 1 : 0;
      default:
        throw new UsageError(`unknown command "${cmd}"\n\n${USAGE}`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`tscni: ${err.message}\n`);
      return 2;
    }
    const e = CniError.from(err);
    process.stderr.write(`tscni ${cmd}: ${e.message} (code ${e.code})\n`);
    if (process.env.TSCNI_DEBUG === "1" && err instanceof Error) process.stderr.write(`${err.stack}\n`);
    return 1;
  }
}
