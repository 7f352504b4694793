/**
 * dhcp IPAM: the short-lived plugin half. Every verb is one request to the `dhcp daemon` over its
 * Unix socket (ipam.daemonSocketPath, default /run/cni/dhcp.sock); the daemon runs the DHCP client.
 * Run as `dhcp daemon …` the same executable is the daemon (upstream's main.go does the same).
 */
import type { CmdArgs, Plugin } from "../../../skel/types.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import { CNI_VERSIONS, type Result } from "../../../spec/types.ts";
import { SysError } from "../../../sys/errno.ts";
import { unixExchange } from "../../../sys/packet.ts";
import { loadDhcpConf } from "./config.ts";
import { type Answer, encodeRequest, type Method } from "./rpc.ts";

/** Longer than the daemon's default acquisition deadline (-resendtimeout 208 s). */
const CALL_TIMEOUT_MS = 240_000;

function absolute(p: string): string {
  if (p === "" || p.startsWith("/")) return p;
  return `${process.cwd()}/${p}`;
}

function call(method: Method, args: CmdArgs): Result | undefined {
  const conf = loadDhcpConf(args.stdinData);
  const req = encodeRequest({
    method,
    containerID: args.containerID,
    netns: absolute(args.netns),
    ifName: args.ifName,
    args: args.args,
    stdin: new TextDecoder().decode(args.stdinData),
  });
  let raw: Uint8Array;
  try {
    raw = unixExchange(conf.socketPath, req, CALL_TIMEOUT_MS);
  } catch (err) {
    if (err instanceof SysError && (err.code === "ENOENT" || err.code === "ECONNREFUSED")) {
      throw new CniError(
        method === "status" ? ErrCode.PluginNotAvailable : ErrCode.TryAgainLater,
        `dhcp: the DHCP daemon is not running (no one listens on ${conf.socketPath}); start it with \`dhcp daemon -socketpath ${conf.socketPath}\` or enable cni-dhcp.socket`,
      );
    }
    throw new CniError(
      method === "status" ? ErrCode.PluginNotAvailable : ErrCode.IOFailure,
      `dhcp: calling the DHCP daemon at ${conf.socketPath}: ${(err as Error).message}`,
    );
  }
  let answer: Answer;
  try {
    answer = JSON.parse(new TextDecoder().decode(raw)) as Answer;
  } catch {
    throw new CniError(ErrCode.IOFailure, `dhcp: the DHCP daemon at ${conf.socketPath} sent no valid answer`);
  }
  if (!answer.ok) throw new CniError(answer.code, answer.msg, answer.details ?? "");
  return answer.result;
}

function cmdAdd(args: CmdArgs): Result {
  const result = call("add", args);
  if (!result) throw new CniError(ErrCode.Internal, "dhcp: the daemon returned no result");
  return result;
}

export const plugin: Plugin = {
  supportedVersions: CNI_VERSIONS,
  about: "dhcp IPAM: leases from the network's DHCP server, kept by `dhcp daemon`",
  add: cmdAdd,
  del: (args) => void call("del", args),
  check: (args) => void call("check", args),
  gc: (args) => void call("gc", args),
  status: (args) => void call("status", args),
};

/**
 * The registry's loader: the plugin, or — run as `dhcp daemon …` / `tscni dhcp daemon …` — the
 * daemon, which exits the process when it stops.
 */
export async function load(): Promise<Plugin> {
  const argv = process.argv.slice(2);
  const at = argv[0] === "daemon" ? 1 : argv[0] === "dhcp" && argv[1] === "daemon" ? 2 : -1;
  if (at < 0) return plugin;
  const { runDaemon } = await import("./daemon.ts");
  process.exit(await runDaemon(argv.slice(at)));
}
