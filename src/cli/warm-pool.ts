/**
 * The warm path's pool (docs/warm-path.md): `tscni warm serve` is a supervisor that binds the socket once
 * and spawns N workers (re-execs of itself) that inherit the listening fd as fd 3 and all block in
 * accept(2) on it; the kernel hands each connection to one waiting worker, so calls from different
 * containers run side by side. Unix sockets have no SO_REUSEPORT balancing, and Bun Workers share one
 * process — a hung call could not be killed without killing every call — hence processes sharing one fd.
 *
 * Each worker reports on its stdout (a pipe to here) "B <conn fd> <caller pid> <cniVersion> <verb>
 * <plugin> <container>" when a call starts and "E" when its reply is written. The watchdog kills a worker
 * (its whole process group: exec'd delegates too) whose call has run longer than the timeout, after taking
 * a copy of the call's connection with pidfd_getfd(2), and answers the launcher itself with CNI error 11
 * (try again later). A worker that exits for any reason is replaced.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { write } from "../sys/fs.ts";
import { close } from "../sys/libc.ts";
import { takeFd } from "../sys/pidfd.ts";
import { encodeReply } from "./warm.ts";

export interface PoolOptions {
  /** The listening socket, bound and listening already. */
  listenFd: number;
  workers: number;
  callTimeoutMs: number;
  /** argv that starts one worker (this executable, `warm serve …`). */
  workerArgv: string[];
  log: (line: string) => void;
}

interface Call {
  since: number;
  conn: number;
  caller: number;
  cniVersion: string;
  what: string;
}

interface Worker {
  proc: ChildProcess;
  started: number;
  call?: Call;
  /** The launcher's connection, taken from a worker the watchdog killed: answered once it is dead. */
  timedOut?: { fd: number; call: Call };
}

/** CNI's "try again later": the runtime may retry; the pool has a fresh worker by then. */
const TRY_AGAIN_LATER = 11;
/** A worker that dies sooner than this after its start is restarted only after this pause. */
const CRASH_PAUSE_MS = 1000;

export function runPool(o: PoolOptions): Promise<never> {
  const workers = new Set<Worker>();
  let stopping = false;

  const start = (): void => {
    const [cmd, ...args] = o.workerArgv;
    const proc = spawn(cmd ?? "", args, {
      env: { ...process.env, TSCNI_WARM_WORKER_FD: "3", TSCNI_WARM_SUPERVISOR: String(process.pid) },
      stdio: ["ignore", "pipe", "inherit", o.listenFd],
      // its own process group, so the watchdog's kill reaches the delegates it exec'd
      detached: true,
    });
    const w: Worker = { proc, started: Date.now() };
    workers.add(w);
    let pending = "";
    proc.stdout?.on("data", (d: Buffer) => {
      pending += d.toString();
      let nl = pending.indexOf("\n");
      while (nl >= 0) {
        status(w, pending.slice(0, nl));
        pending = pending.slice(nl + 1);
        nl = pending.indexOf("\n");
      }
    });
    proc.once("exit", (code, signal) => exited(w, code, signal));
  };

  const status = (w: Worker, line: string): void => {
    const f = line.split(" ");
    if (f[0] === "B" && f.length >= 4) {
      w.call = {
        since: Date.now(),
        conn: Number(f[1]),
        caller: Number(f[2]),
        cniVersion: f[3] ?? "1.0.0",
        what: f.slice(4).join(" "),
      };
    } else if (f[0] === "E") {
      w.call = undefined;
    }
  };

  const exited = (w: Worker, code: number | null, signal: string | null): void => {
    workers.delete(w);
    if (w.timedOut) {
      const { fd, call } = w.timedOut;
      const secs = Math.round(o.callTimeoutMs / 1000);
      const err = {
        cniVersion: call.cniVersion,
        code: TRY_AGAIN_LATER,
        msg: `tscni warm helper: the call timed out (ran longer than ${secs} s); its worker was stopped`,
        details: call.what,
      };
      try {
        write(
          fd,
          encodeReply({ fallback: false, code: 1, stdout: `${JSON.stringify(err, null, 4)}\n`, stderr: "" }),
        );
      } catch {
        // the launcher gave up already
      }
      close(fd);
    }
    if (stopping) return;
    const how = signal ? `signal ${signal}` : `code ${code}`;
    o.log(
      `tscni warm: worker ${w.proc.pid} exited (${how})${w.call ? ` during ${w.call.what}` : ""}; replacing it`,
    );
    if (Date.now() - w.started < CRASH_PAUSE_MS) setTimeout(() => stopping || start(), CRASH_PAUSE_MS);
    else start();
  };

  const watchdog = setInterval(
    () => {
      const now = Date.now();
      for (const w of workers) {
        const call = w.call;
        const pid = w.proc.pid;
        if (!call || w.timedOut || !pid || now - call.since <= o.callTimeoutMs) continue;
        const fd = takeFd(pid, call.conn);
        o.log(
          `tscni warm: ${call.what} (caller ${call.caller}) ran over ${o.callTimeoutMs} ms; killing worker ${pid}`,
        );
        if (fd !== undefined) w.timedOut = { fd, call };
        try {
          process.kill(-pid, "SIGKILL");
        } catch {
          // exited meanwhile
        }
      }
    },
    Math.min(1000, Math.max(50, o.callTimeoutMs / 4)),
  );

  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    clearInterval(watchdog);
    // workers block in accept(2) with no JS handler running: SIGTERM's default action ends them
    for (const w of workers) if (w.proc.pid) killGroup(w.proc.pid, "SIGTERM");
    const done = () => process.exit(0);
    if (workers.size === 0) done();
    const left = new Set(workers);
    for (const w of left)
      w.proc.once("exit", () => {
        left.delete(w);
        if (left.size === 0) done();
      });
    setTimeout(() => {
      for (const w of left) if (w.proc.pid) killGroup(w.proc.pid, "SIGKILL");
    }, 5000).unref();
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);

  for (let i = 0; i < o.workers; i++) start();
  return new Promise<never>(() => {});
}

function killGroup(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pid, sig);
  } catch {
    // gone already
  }
}
