/**
 * dhcp IPAM: the short-lived plugin half. Every verb is one request to the `dhcp daemon` over its
 * Unix socket (ipam.daemonSocketPath, default /run/cni/dhcp.sock); the daemon runs the DHCP client.
 * Run as `dhcp daemon …` the same executable is the daemon (upstream's main.go does the same).
 */
import type { CmdArgs, Plugin } from "../../../skel/types.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import { CNI_VERSIONS, type Result } from "../../../spec/types.ts";
import { loadDhcpConf } from "./config.ts";
import { type Answer, encodeRequest, type Method } from "./rpc.ts";

/** Longer than the daemon's default acquisition deadline (-resendtimeout 208 s). */
const CALL_TIMEOUT_MS = 240_000;

function absolute(p: string): string {
  if (p === "" || p.startsWith("/")) return p;
  return `${process.cwd()}/${p}`;
}

/**
 * One exchange with the daemon: write the request, read until the daemon closes. Asynchronous, so a
 * runtime that runs this plugin in-process keeps its event loop while the daemon talks DHCP.
 */
function exchange(path: string, request: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const chunks: Uint8Array[] = [];
    let settled = false;
    const done = (err?: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) reject(err);
      else resolve(Buffer.concat(chunks));
    };
    const timer = setTimeout(() => {
      sock?.end();
      done(Object.assign(new Error(`no answer within ${timeoutMs / 1000} s`), { code: "ETIMEDOUT" }));
    }, timeoutMs);
    let sock: { end(): void } | undefined;
    let pending = request;
    const flush = (s: { write(b: Uint8Array): number }) => {
      while (pending.length > 0) {
        const n = s.write(pending);
        if (n <= 0) return;
        pending = pending.subarray(n);
      }
    };
    Bun.connect({
      unix: path,
      socket: {
        open: (s) => flush(s),
        drain: (s) => flush(s),
        data: (_s, d) => {
          chunks.push(new Uint8Array(d));
        },
        // The daemon ends its side after the answer: that is the whole answer.
        end: (s) => {
          s.end();
          done();
        },
        close: () => done(),
        error: (_s, e) => done(e),
        connectError: (_s, e) => done(e),
      },
    }).then(
      (s) => {
        sock = s;
      },
      (e) => done(e),
    );
  });
}

async function call(method: Method, args: CmdArgs): Promise<Result | undefined> {
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
    raw = await exchange(conf.socketPath, req, CALL_TIMEOUT_MS);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === "ENOENT" || code === "ECONNREFUSED") {
      throw new CniError(
        method === "status" ? ErrCode.PluginNotAvailable : ErrCode.TryAgainLater,
        `dhcp: the DHCP daemon is not running (no one listens on ${conf.socketPath}); start it with \`dhcp daemon -socketpath ${conf.socketPath}\` or enable cni-dhcp.socket`,
      );
    }
    throw new CniError(
      method === "status" ? ErrCode.PluginNotAvailable : ErrCode.IOFailure,
      `dhcp: calling the DHCP daemon at ${conf.socketPath}: ${code ?? ""} ${(err as Error).message}`.replace(
        "  ",
        " ",
      ),
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

async function cmdAdd(args: CmdArgs): Promise<Result> {
  const result = await call("add", args);
  if (!result) throw new CniError(ErrCode.Internal, "dhcp: the daemon returned no result");
  return result;
}

export const plugin: Plugin = {
  supportedVersions: CNI_VERSIONS,
  about: "dhcp IPAM: leases from the network's DHCP server, kept by `dhcp daemon`",
  add: cmdAdd,
  del: async (args) => void (await call("del", args)),
  check: async (args) => void (await call("check", args)),
  gc: async (args) => void (await call("gc", args)),
  status: async (args) => void (await call("status", args)),
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
