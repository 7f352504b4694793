/**
 * The one place that spawns firewall tools (nft, iptables-restore, iptables-save and their IPv6 twins).
 *
 * A tool runs in the process's current netns, or inside `netnsPath` through `nsenter --net=PATH`: Bun
 * spawns children from a helper thread, so entering a netns on the JS thread first would not reach the
 * child — the namespace has to be entered by the child itself.
 */
import { CniError, ErrCode } from "../spec/errors.ts";

/** Where tools are looked for after PATH: plugins often run with a minimal PATH that lacks sbin. */
const FALLBACK_DIRS = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

const found = new Map<string, string>();

/** Absolute path of an executable named `name` in PATH, /usr/sbin or /sbin (cached per process). */
export function findTool(name: string): string {
  const hit = found.get(name);
  if (hit) return hit;
  // Bun.which, not node:fs: a plugin's start-up pays for every node: module it loads.
  const path = Bun.which(name, {
    PATH: [process.env.PATH ?? "", ...FALLBACK_DIRS].filter(Boolean).join(":"),
  });
  if (path) {
    found.set(name, path);
    return path;
  }
  throw new CniError(ErrCode.Internal, `${name} not found in PATH or ${FALLBACK_DIRS.join(", ")}`);
}

export interface RunOptions {
  /** Run inside this network namespace (a path like /var/run/netns/X) instead of the current one. */
  netnsPath?: string;
  /** Written to the tool's stdin (closed right after). */
  stdin?: string;
}

export interface RunOutput {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** The argv that runs `tool args…`, wrapped in nsenter when a netns is given. */
export function toolArgv(tool: string, args: readonly string[], netnsPath?: string): string[] {
  const argv = [findTool(tool), ...args];
  return netnsPath === undefined ? argv : [findTool("nsenter"), `--net=${netnsPath}`, "--", ...argv];
}

/** Runs a tool to completion and returns its exit code and output; never throws for a non-zero exit. */
export async function runTool(
  tool: string,
  args: readonly string[],
  opts: RunOptions = {},
): Promise<RunOutput> {
  const argv = toolArgv(tool, args, opts.netnsPath);
  let proc: ReturnType<typeof Bun.spawn>;
  try {
    proc = Bun.spawn(argv, {
      stdin: opts.stdin === undefined ? "ignore" : new TextEncoder().encode(opts.stdin),
      stdout: "pipe",
      stderr: "pipe",
      // The C locale keeps the tools' messages in the English the callers match on.
      env: { ...process.env, LC_ALL: "C" },
    });
  } catch (err) {
    throw CniError.from(err, `starting ${argv.join(" ")}`);
  }
  const [stdout, stderr, exitCode] = await Promise.all([
    new Response(proc.stdout as ReadableStream<Uint8Array>).text(),
    new Response(proc.stderr as ReadableStream<Uint8Array>).text(),
    proc.exited,
  ]);
  return { exitCode, stdout, stderr };
}

/** Runs a tool and throws a CniError naming `what` with the tool's stderr when it fails. */
export async function runToolOrThrow(
  tool: string,
  args: readonly string[],
  what: string,
  opts: RunOptions = {},
): Promise<string> {
  const out = await runTool(tool, args, opts);
  if (out.exitCode !== 0) {
    const where = opts.netnsPath === undefined ? "" : ` in netns ${opts.netnsPath}`;
    throw new CniError(
      ErrCode.Internal,
      `${what}${where}: ${tool} exited with status ${out.exitCode}`,
      out.stderr.trim(),
    );
  }
  return out.stdout;
}

/** Whether `name` can be found (for "do both backends where installed", like upstream's teardown). */
export function hasTool(name: string): boolean {
  try {
    findTool(name);
    return true;
  } catch {
    return false;
  }
}
