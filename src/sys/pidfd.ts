/**
 * Process-handle system calls of the warm pool (src/cli/warm-pool.ts), beside libc.ts in src/sys where
 * every bun:ffi binding lives: pidfd_open(2) + pidfd_getfd(2), with which the watchdog takes
 * a copy of a hung worker's connection before killing it, so it can still answer the launcher (Linux ≥
 * 5.6, glibc ≥ 2.36); prctl(PR_SET_PDEATHSIG), so a worker does not outlive its supervisor.
 */
import { dlopen, FFIType } from "bun:ffi";

const { i32, u32, u64 } = FFIType;

const lib = dlopen("libc.so.6", {
  pidfd_open: { args: [i32, u32], returns: i32 },
  pidfd_getfd: { args: [i32, i32, u32], returns: i32 },
  close: { args: [i32], returns: i32 },
  prctl: { args: [i32, u64, u64, u64, u64], returns: i32 },
  getppid: { args: [], returns: i32 },
});

const PR_SET_PDEATHSIG = 1;
const SIGKILL = 9;

/**
 * SIGKILL when the supervisor goes, however it goes (a SIGKILL gives it no chance to stop its workers,
 * and they are in their own process groups). False when it is gone already.
 */
export function dieWithParent(supervisor: number): boolean {
  lib.symbols.prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  return lib.symbols.getppid() === supervisor;
}

/** A duplicate, in this process, of fd `fd` of process `pid`; undefined when the kernel refuses. */
export function takeFd(pid: number, fd: number): number | undefined {
  const pidfd = lib.symbols.pidfd_open(pid, 0);
  if (pidfd < 0) return undefined;
  try {
    const dup = lib.symbols.pidfd_getfd(pidfd, fd, 0);
    return dup < 0 ? undefined : dup;
  } finally {
    lib.symbols.close(pidfd);
  }
}
