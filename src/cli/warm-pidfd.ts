/**
 * pidfd_open(2) + pidfd_getfd(2) for the warm pool's watchdog (src/cli/warm-pool.ts): the supervisor takes
 * a copy of a hung worker's connection before killing it, so it can still answer the launcher. Kept here
 * rather than in src/sys/libc.ts because the warm path is its only user. Linux ≥ 5.6, glibc ≥ 2.36.
 */
import { dlopen, FFIType } from "bun:ffi";

const { i32, u32 } = FFIType;

const lib = dlopen("libc.so.6", {
  pidfd_open: { args: [i32, u32], returns: i32 },
  pidfd_getfd: { args: [i32, i32, u32], returns: i32 },
  close: { args: [i32], returns: i32 },
});

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
