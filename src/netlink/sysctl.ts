/**
 * Network sysctls under /proc/sys/net (upstream pkg/utils/sysctl). Keys are dotted
 * ("net.ipv4.ip_forward") or slashed ("net/ipv4/conf/eth0.100/forwarding" — the form to use when an
 * interface name contains a dot). Only keys under net are accepted: the key comes from config files.
 *
 * /proc/sys/net shows the netns of the thread that opens the file, and sys/fs calls run on the JS
 * thread, so opening the file inside withNetns reads or writes that namespace's value.
 */
import type { NetNS } from "../ns/index.ts";
import { withNetns } from "../ns/index.ts";
import { SysError } from "../sys/errno.ts";
import { readFile, writeFile } from "../sys/fs.ts";

const EINVAL = 22;
const SEGMENT = /^[^\s/\0]+$/;

/** The /proc/sys path of a key; throws EINVAL for anything not strictly under /proc/sys/net. */
export function sysctlPath(key: string, op = `resolving sysctl ${JSON.stringify(key)}`): string {
  const parts = key.includes("/") ? key.split("/") : key.split(".");
  const bad = (why: string) => new SysError(op, EINVAL, why);
  if (key.startsWith("/")) throw bad("key must be relative to /proc/sys, not an absolute path");
  if (parts[0] !== "net" || parts.length < 2) throw bad("only keys under net are allowed");
  for (const p of parts) {
    if (p === "" || p === "." || p === "..") throw bad("key has an empty, . or .. segment");
    if (!SEGMENT.test(p)) throw bad(`invalid key segment ${JSON.stringify(p)}`);
  }
  return `/proc/sys/${parts.join("/")}`;
}

/** The error of a failed read or write, named by what was being done (`reading sysctl X: ENOENT …`). */
function fsError(op: string, err: unknown): Error {
  return err instanceof SysError ? new SysError(op, err.errno) : new Error(`${op}: ${String(err)}`);
}

/** The value of a sysctl, without the trailing newline. */
export function sysctlGet(key: string): string {
  const op = `reading sysctl ${key}`;
  const path = sysctlPath(key, op);
  try {
    return readFile(path, "utf8").replace(/\n$/, "");
  } catch (err) {
    throw fsError(op, err);
  }
}

/** Writes a sysctl (no read-back: some entries, e.g. route/flush, are write-only). */
export function sysctlSet(key: string, value: string | number): void {
  const op = `setting sysctl ${key} to ${value}`;
  const path = sysctlPath(key, op);
  try {
    writeFile(path, String(value));
  } catch (err) {
    throw fsError(op, err);
  }
}

/** sysctlGet inside a network namespace. */
export function sysctlGetIn(ns: NetNS, key: string): string {
  return withNetns(ns, () => sysctlGet(key));
}

/** sysctlSet inside a network namespace. */
export function sysctlSetIn(ns: NetNS, key: string, value: string | number): void {
  withNetns(ns, () => sysctlSet(key, value));
}
