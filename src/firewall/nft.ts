/**
 * nftables transactions: every nftApply is ONE `nft -f -` run, which the kernel commits atomically
 * (all commands of the script or none), and nftJSON reads state through `nft -j`. Both start a
 * process (~6 ms with its start-up): the per-call paths of the backends read and change elements
 * through netlink instead (src/netlink/nftables.ts, a socket from openNftSocketAt), and keep nft for
 * building their tables and chains, once per host.
 */
import { NFPROTO_INET, type NftElemChange, nftCommitElems, openNftSocket } from "../netlink/nftables.ts";
import type { NetlinkSocket } from "../netlink/socket.ts";
import { openNetns } from "../ns/index.ts";
import { CniError, ErrCode } from "../spec/errors.ts";
import { SysError } from "../sys/errno.ts";
import { runTool, runToolOrThrow } from "./exec.ts";

export interface NftOptions {
  /** Run inside this network namespace instead of the current one. */
  netnsPath?: string;
  /** What the caller is doing, for the error message (e.g. "adding masquerade for ctr1"). */
  what?: string;
}

/** Applies an nft script (commands separated by newlines) as one atomic transaction. */
export async function nftApply(script: string, opts: NftOptions = {}): Promise<void> {
  await runToolOrThrow("nft", ["-f", "-"], opts.what ?? "applying nft transaction", {
    stdin: script,
    netnsPath: opts.netnsPath,
  });
}

/** The objects of `nft -j` output: [{metainfo}, {table: …}, {set: …}, {map: …}, {chain: …}, {rule: …}, …]. */
export type NftObject = Record<string, unknown>;

export interface NftJSONOptions extends NftOptions {
  /** Return undefined instead of failing when the listed object does not exist. */
  missingOk?: boolean;
}

/**
 * Runs `nft -j <args>` (e.g. ["list", "table", "inet", "t"]) and returns its `nftables` array.
 * With missingOk, a missing table/chain/set gives undefined.
 */
export async function nftJSON(
  args: readonly string[],
  opts: NftJSONOptions = {},
): Promise<NftObject[] | undefined> {
  const what = opts.what ?? `reading nft ${args.join(" ")}`;
  const out = await runTool("nft", ["-j", ...args], { netnsPath: opts.netnsPath });
  if (out.exitCode !== 0) {
    if (opts.missingOk && /No such file or directory/.test(out.stderr)) return undefined;
    const where = opts.netnsPath === undefined ? "" : ` in netns ${opts.netnsPath}`;
    throw new CniError(
      ErrCode.Internal,
      `${what}${where}: nft exited with status ${out.exitCode}`,
      out.stderr.trim(),
    );
  }
  if (out.stdout.trim() === "") return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(out.stdout);
  } catch (err) {
    throw CniError.from(err, `${what}: parsing nft JSON output`);
  }
  const list = (parsed as { nftables?: unknown }).nftables;
  if (!Array.isArray(list)) {
    throw new CniError(ErrCode.Internal, `${what}: nft JSON output has no "nftables" array`);
  }
  return list as NftObject[];
}

/** Quotes a string for an nft script (comments); rejects what nft cannot carry in a quoted string. */
export function nftQuote(s: string): string {
  if (/["\\\n\r\0]/.test(s)) {
    throw new CniError(
      ErrCode.Internal,
      `cannot quote ${JSON.stringify(s)} for nft: contains quote or control char`,
    );
  }
  return `"${s}"`;
}

/** A NETLINK_NETFILTER socket in the current netns, or in the one at `netnsPath`. */
export function openNftSocketAt(netnsPath?: string): NetlinkSocket {
  if (netnsPath === undefined) return openNftSocket();
  const ns = openNetns(netnsPath);
  try {
    return openNftSocket(ns.fd);
  } finally {
    ns.close();
  }
}

/** Where a backend reads and commits: a caller's open socket (left open), else the netns to open one in. */
export interface NftTarget {
  netnsPath?: string;
  socket?: NetlinkSocket;
}

/** Runs fn with the target's socket, or with one opened (and closed) for this call. */
export async function withNftSocket<T>(
  target: NftTarget,
  fn: (sock: NetlinkSocket) => T | Promise<T>,
): Promise<T> {
  if (target.socket) return fn(target.socket);
  const sock = openNftSocketAt(target.netnsPath);
  try {
    return await fn(sock);
  } finally {
    sock.close();
  }
}

/**
 * Whether a batch or script failed because someone changed the table meanwhile: an element taken or
 * changed (EEXIST: the compare-and-delete guard), or gone, or a table/set missing (ENOENT).
 */
export function isNftConflict(err: unknown): boolean {
  if (err instanceof SysError) return err.code === "EEXIST" || err.code === "ENOENT";
  return err instanceof CniError && /File exists|No such file or directory/.test(err.details);
}

/** One step of nftTransact: element changes for a netlink batch, or a whole `nft -f` script. */
export type NftPlan = { script: readonly string[] } | { changes: readonly NftElemChange[] };

export interface NftTransactOptions<S> {
  target: NftTarget;
  /** The inet table the element changes go to. */
  table: string;
  what: string;
  /** How many read-plan-apply rounds before a conflict is an error. */
  attempts: number;
  read: (sock: NetlinkSocket) => S;
  plan: (state: S) => NftPlan;
}

/**
 * Reads, plans, applies in one transaction; on a conflict rereads and replans (the compare-and-delete
 * guards make a concurrent change abort our transaction instead of being overwritten). Element-only
 * plans go through netlink; a plan that (re)builds tables and chains is one `nft -f` script.
 */
export async function nftTransact<S>(o: NftTransactOptions<S>): Promise<void> {
  await withNftSocket(o.target, async (sock) => {
    for (let attempt = 1; ; attempt++) {
      const p = o.plan(o.read(sock));
      try {
        if ("script" in p) {
          if (p.script.length > 0) {
            await nftApply(`${p.script.join("\n")}\n`, { netnsPath: o.target.netnsPath, what: o.what });
          }
        } else {
          nftCommitElems(sock, NFPROTO_INET, o.table, p.changes, o.what);
        }
        return;
      } catch (err) {
        if (!isNftConflict(err) || attempt >= o.attempts) {
          throw err instanceof CniError ? err : CniError.from(err, o.what);
        }
      }
    }
  });
}
