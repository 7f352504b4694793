/**
 * Building and running the Go interop driver (main.go: upstream's libcni from Debian's
 * golang-github-appc-cni-dev, built offline in GOPATH mode).
 *
 *   buildInterop(outDir) → {bin} | {skip: reason}   installs golang-go once if `go` is missing
 *   runInterop(bin, hostNs, opts) → GoOutput          ADD/CHECK/DEL through Go libcni, in the host netns
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { REPO } from "../helpers/build.ts";
import { runWithDeadline } from "../helpers/proc.ts";

export const GOPATH = "/usr/share/gocode";
const LIBCNI = join(GOPATH, "src/github.com/containernetworking/cni/libcni");

export interface GoOptions {
  conflist: string;
  cniPath: string[];
  cacheDir: string;
  netns: string;
  containerID: string;
  ifName: string;
  cniArgs: [string, string][];
  capabilityArgs: Record<string, unknown>;
}

export type GoOutcome = { ok: true; result?: unknown } | { ok: false; code: number; msg: string };

export interface GoOutput {
  add: GoOutcome;
  check: GoOutcome;
  del: GoOutcome;
}

function which(cmd: string): string | undefined {
  const p = Bun.spawnSync(["sh", "-c", `command -v ${cmd}`], { stdout: "pipe" });
  const out = p.stdout.toString().trim();
  return p.exitCode === 0 && out ? out : undefined;
}

/** The Go toolchain, installing golang-go once (quietly) when it is missing and we are root. */
function goBinary(): string | undefined {
  const go = which("go");
  if (go || process.getuid?.() !== 0) return go;
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  Bun.spawnSync(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "golang-go"], { env });
  return which("go");
}

export function buildInterop(outDir: string): { bin: string } | { skip: string } {
  if (!existsSync(LIBCNI))
    return { skip: `no Go libcni sources in ${LIBCNI} (apt: golang-github-appc-cni-dev)` };
  const go = goBinary();
  if (!go) return { skip: "no Go toolchain (apt-get install golang-go failed)" };
  const bin = join(outDir, "interop");
  const p = Bun.spawnSync([go, "build", "-o", bin, "./test/interop/"], {
    cwd: REPO,
    env: { ...process.env, GO111MODULE: "off", GOPATH, GOCACHE: join(outDir, "gocache"), GOFLAGS: "" },
    stdout: "pipe",
    stderr: "pipe",
  });
  if (p.exitCode !== 0) throw new Error(`building the Go interop driver failed: ${p.stderr.toString()}`);
  return { bin };
}

export async function runInterop(bin: string, hostNs: string, o: GoOptions): Promise<GoOutput> {
  const {
    code,
    stdout: out,
    stderr: err,
  } = await runWithDeadline(["ip", "netns", "exec", hostNs, bin, JSON.stringify(o)]);
  if (code !== 0) throw new Error(`interop driver failed (${code}): ${err.trim()}`);
  return JSON.parse(out.trim()) as GoOutput;
}
