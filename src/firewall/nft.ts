/**
 * nftables transactions: every nftApply is ONE `nft -f -` run, which the kernel commits atomically
 * (all commands of the script or none), and nftJSON reads state through `nft -j`. Both start a
 * process (~6 ms with its start-up): the per-call paths of the backends read and change elements
 * through netlink instead (src/netlink/nftables.ts, a socket from openNftSocketAt), and keep nft for
 * building their tables and chains, once per host.
 */
import { openNftSocket } from "../netlink/nftables.ts";
import type { NetlinkSocket } from "../netlink/socket.ts";
import { CniError, ErrCode } from "../spec/errors.ts";
import { close, O_RDONLY, open } from "../sys/libc.ts";
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
  const fd = open(netnsPath, O_RDONLY);
  try {
    return openNftSocket(fd);
  } finally {
    close(fd);
  }
}
