/**
 * `tscni warm serve`: the resident helper of the warm path (docs/warm-path.md). Runtimes exec
 * tscni-launcher (native/warm-launcher.c) under a plugin's name; the launcher hands the call over this
 * socket and the helper runs the plugin in-process, inside the caller's network namespace, with the
 * caller's environment and stdin, and returns stdout, stderr and the exit code — the bytes the exec'd
 * plugin would have printed. With no helper the launcher execs tscni itself.
 *
 * A pool (src/cli/warm-pool.ts): the process started as `tscni warm serve` binds the socket and supervises
 * N workers that share it. Each worker serves one call at a time: a call enters the caller's netns on
 * the worker's thread and awaits inside it, so calls must not interleave within one worker. Accept blocks
 * the worker's thread between calls, which is all a worker does.
 *
 * Who may call: the peer's credentials come from the kernel (SO_PEERCRED), not from the request; only
 * uid 0 is served, the socket is 0600 in a 0700 directory. A caller with another root directory (its
 * paths would mean something else here) is told to fall back to exec.
 *
 * Protocol v1, little-endian: request "TSCNIW1\0", u32 name length, name, u32 env length, env
 * ("K=V\0"…), u32 stdin length, stdin, then the launcher shuts its write side. Reply: u8 status
 * (0 ran, 1 fall back to exec), u32 exit code, u32 stdout length, stdout, u32 stderr length, stderr.
 */
import { chmodSync, existsSync, mkdirSync, rmSync, statSync } from "node:fs";
import { availableParallelism } from "node:os";
import { dirname } from "node:path";
import { setInProcessResolver } from "../skel/inprocess.ts";
import { pluginMain } from "../skel/skel.ts";
import { readAll, write } from "../sys/fs.ts";
import {
  AF_UNIX,
  accept,
  bind,
  CLONE_NEWNET,
  close,
  listen,
  O_RDONLY,
  open,
  peerCredentials,
  SOCK_STREAM,
  setns,
  setReceiveTimeout,
  socket,
} from "../sys/libc.ts";
import { THREAD_NETNS_PATH } from "../sys/netns.ts";
import { dieWithParent } from "../sys/pidfd.ts";
import { loadPlugin } from "./registry.ts";
import { isBunRuntime, UsageError } from "./shared.ts";
import { runPool } from "./warm-pool.ts";

const MAGIC = "TSCNIW1\0";
const READ_TIMEOUT_MS = 10_000;

export interface WarmRequest {
  name: string;
  env: Record<string, string>;
  stdin: Uint8Array;
}

export interface WarmReply {
  fallback: boolean;
  code: number;
  stdout: string;
  stderr: string;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Parses a request; undefined when it is not one (wrong magic, truncated). */
export function parseRequest(b: Uint8Array): WarmRequest | undefined {
  if (b.length < 8 || dec.decode(b.subarray(0, 8)) !== MAGIC) return undefined;
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let o = 8;
  const chunk = (): Uint8Array | undefined => {
    if (o + 4 > b.length) return undefined;
    const n = v.getUint32(o, true);
    o += 4;
    if (o + n > b.length) return undefined;
    const out = b.subarray(o, o + n);
    o += n;
    return out;
  };
  const name = chunk();
  const envBytes = chunk();
  const stdin = chunk();
  if (!name || !envBytes || !stdin) return undefined;
  const env: Record<string, string> = {};
  for (const kv of dec.decode(envBytes).split("\0")) {
    const i = kv.indexOf("=");
    if (i > 0) env[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return { name: dec.decode(name), env, stdin: stdin.slice() };
}

export function encodeReply(r: WarmReply): Uint8Array {
  const out = enc.encode(r.stdout);
  const err = enc.encode(r.stderr);
  const b = new Uint8Array(13 + out.length + err.length);
  const v = new DataView(b.buffer);
  v.setUint8(0, r.fallback ? 1 : 0);
  v.setUint32(1, r.code, true);
  v.setUint32(5, out.length, true);
  b.set(out, 9);
  v.setUint32(9 + out.length, err.length, true);
  b.set(err, 13 + out.length);
  return b;
}

const FALLBACK: WarmReply = { fallback: true, code: 0, stdout: "", stderr: "" };

/**
 * Whether the caller's paths mean what they mean here: the same root directory (a caller in a container
 * or chroot has another). Mount namespaces may differ — `ip netns exec` makes one per call, only to
 * remount /sys — so those are not compared.
 */
function sameRoot(pid: number): boolean {
  try {
    const theirs = statSync(`/proc/${pid}/root`);
    const ours = statSync("/");
    return theirs.dev === ours.dev && theirs.ino === ours.ino;
  } catch {
    return false;
  }
}

/** Runs one call in the caller's netns; a plugin name we do not have falls back to exec. */
async function runCall(req: WarmRequest, pid: number): Promise<WarmReply> {
  const plugin = await loadPlugin(req.name);
  if (!plugin) return FALLBACK;
  let stdout = "";
  let stderr = "";
  const original = open(THREAD_NETNS_PATH, O_RDONLY);
  let target: number;
  try {
    target = open(`/proc/${pid}/ns/net`, O_RDONLY);
  } catch {
    close(original);
    return FALLBACK; // the caller went away
  }
  try {
    setns(target, CLONE_NEWNET);
    const code = await pluginMain(plugin, {
      env: req.env,
      stdin: req.stdin,
      stdout: (t) => {
        stdout += t;
      },
      stderr: (t) => {
        stderr += t;
      },
    });
    return { fallback: false, code, stdout, stderr };
  } finally {
    try {
      setns(original, CLONE_NEWNET);
    } catch (err) {
      // stranded in a caller's netns: the next call would run in the wrong place
      process.stderr.write(`tscni warm: cannot return to the helper's netns: ${err}\n`);
      process.exit(70);
    }
    close(target);
    close(original);
  }
}

function sockaddrUn(path: string): Uint8Array {
  const b = new Uint8Array(110);
  new DataView(b.buffer).setUint16(0, AF_UNIX, true);
  const p = enc.encode(path);
  if (p.length > 107) throw new Error(`socket path too long: ${path}`);
  b.set(p, 2);
  return b;
}

export interface ServeOptions {
  socket: string;
  /** The launcher the CNI_PATH links point at: delegated IPAM through it runs in-process. */
  launcher: string;
  log?: (line: string) => void;
  /** One log line per call (verb, plugin, container, exit code, time). */
  logCalls?: boolean;
  /** Worker processes sharing the socket (default: the number of CPUs). */
  workers?: number;
  /** A call running longer than this has its worker killed and gets CNI error 11 (default 60 s). */
  callTimeoutMs?: number;
}

export const DEFAULT_CALL_TIMEOUT_MS = 60_000;

/** `--workers N`, `--call-timeout SECONDS`, `--socket PATH`, `--log-calls` after `warm serve`. */
export function parseServeArgs(args: string[], defaults: { socket: string; launcher: string }): ServeOptions {
  const value = (flag: string): string | undefined => {
    const at = args.indexOf(flag);
    return at >= 0 ? args[at + 1] : undefined;
  };
  const positive = (flag: string): number | undefined => {
    const v = value(flag);
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!(n > 0)) throw new UsageError(`tscni warm serve: ${flag} needs a positive number, not "${v}"`);
    return n;
  };
  const timeout = positive("--call-timeout");
  return {
    socket: value("--socket") ?? defaults.socket,
    launcher: defaults.launcher,
    logCalls: args.includes("--log-calls"),
    workers: positive("--workers"),
    callTimeoutMs: timeout === undefined ? undefined : timeout * 1000,
  };
}

/** The listening socket: systemd's (socket activation, tscni-warm.socket) or one bound here. */
function listenSocket(path: string): { fd: number; from: string } {
  if (process.env.LISTEN_FDS === "1" && process.env.LISTEN_PID === String(process.pid)) {
    delete process.env.LISTEN_FDS;
    delete process.env.LISTEN_PID;
    return { fd: 3, from: "systemd's socket" };
  }
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  rmSync(path, { force: true });
  const fd = socket(AF_UNIX, SOCK_STREAM, 0);
  bind(fd, sockaddrUn(path));
  chmodSync(path, 0o600);
  listen(fd, 1024);
  return { fd, from: path };
}

/** Serves calls until the process is killed: the pool's supervisor, or (re-exec'd by it) one worker. */
export async function serveWarm(o: ServeOptions): Promise<never> {
  // write(2) at once: between calls the thread blocks in accept and process.stderr would never flush
  const log = o.log ?? ((l: string) => write(2, `${l}\n`));
  const workerFd = process.env.TSCNI_WARM_WORKER_FD;
  if (workerFd) {
    if (!dieWithParent(Number(process.env.TSCNI_WARM_SUPERVISOR))) process.exit(0);
    delete process.env.TSCNI_WARM_WORKER_FD;
    delete process.env.TSCNI_WARM_SUPERVISOR;
    return serveCalls(Number(workerFd), o, log);
  }
  const { fd, from } = listenSocket(o.socket);
  const workers = Math.max(1, Math.floor(o.workers ?? availableParallelism()));
  const callTimeoutMs = o.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
  log(`tscni warm: serving on ${from} (${workers} workers, call timeout ${callTimeoutMs / 1000} s)`);
  const self = isBunRuntime(process.execPath) ? process.argv.slice(1) : process.argv.slice(2);
  return runPool({ listenFd: fd, workers, callTimeoutMs, workerArgv: [process.execPath, ...self], log });
}

/** What the supervisor is told (stdout is a pipe to it): a call's start, for its watchdog, and its end. */
function tellPool(line: string): void {
  write(1, `${line}\n`);
}

function cniVersionOf(stdin: Uint8Array): string {
  try {
    const v = JSON.parse(dec.decode(stdin)).cniVersion;
    return typeof v === "string" && /^[\w.]+$/.test(v) ? v : "1.0.0";
  } catch {
    return "1.0.0";
  }
}

/** One worker: accepts on the shared socket and serves one call at a time. */
async function serveCalls(fd: number, o: ServeOptions, log: (line: string) => void): Promise<never> {
  setInProcessResolver(loadPlugin, o.launcher);
  // A plugin exec'd from a call (a delegate outside this executable's links) inherits this: its
  // launcher must exec, never queue behind the call that is waiting for it.
  process.env.TSCNI_WARM_SOCK = "";
  for (;;) {
    const conn = accept(fd);
    let told = false;
    try {
      const peer = peerCredentials(conn);
      // read the whole call first, whatever the answer: closing on unread data would reset the launcher
      setReceiveTimeout(conn, READ_TIMEOUT_MS);
      const req = parseRequest(readAll(conn));
      let reply: WarmReply;
      if (peer.uid !== 0) {
        log(`tscni warm: refused pid ${peer.pid} uid ${peer.uid} (only root is served)`);
        reply = FALLBACK;
      } else if (!req || !sameRoot(peer.pid)) {
        if (o.logCalls)
          log(`tscni warm: pid ${peer.pid}: ${req ? "another root directory" : "not a call"}; exec`);
        reply = FALLBACK;
      } else if (!existsSync(`/proc/${peer.pid}`)) {
        // it gave up (TSCNI_WARM_TIMEOUT) while queued: its runtime has its answer and may be running
        // DEL already, so the call must not run late
        log(`tscni warm: caller ${peer.pid} gone before its ${req.env.CNI_COMMAND ?? ""} ran; skipped`);
        continue;
      } else {
        const e = req.env;
        const what = `${e.CNI_COMMAND ?? "-"} ${req.name} ${e.CNI_CONTAINERID ?? "-"}`.replace(
          /[\n\r]/g,
          " ",
        );
        tellPool(`B ${conn} ${peer.pid} ${cniVersionOf(req.stdin)} ${what}`);
        told = true;
        const t0 = performance.now();
        reply = await runCall(req, peer.pid);
        if (o.logCalls) {
          log(
            `tscni warm: ${e.CNI_COMMAND ?? "-"} ${req.name} ${e.CNI_CONTAINERID ?? "-"} ${e.CNI_IFNAME ?? "-"} → ` +
              `${reply.fallback ? "exec" : reply.code} (${(performance.now() - t0).toFixed(1)} ms)`,
          );
        }
      }
      write(conn, encodeReply(reply));
    } catch (err) {
      log(`tscni warm: ${err instanceof Error ? err.message : err}`);
    } finally {
      // before close: once closed, the fd number may name the next call's connection
      if (told) tellPool("E");
      close(conn);
    }
  }
}
