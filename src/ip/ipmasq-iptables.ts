/**
 * The iptables ipmasq backend, rule for rule what upstream's (plugins pkg/ip ipmasq_linux.go) makes, so
 * attachments move freely between the Go plugins and ours:
 *
 *   nat POSTROUTING:  -s <ip>/32 -m comment --comment "name: \"<net>\" id: \"<id>\"" -j CNI-<hash>
 *   nat CNI-<hash>:   -d <subnet> -m comment --comment "…" -j ACCEPT          (one per subnet)
 *                     ! -d 224.0.0.0/4 -m comment --comment "…" -j MASQUERADE   (ff00::/8 for IPv6)
 *
 * CNI-<hash> is upstream's utils.FormatChainName: "CNI-" + sha512(network + containerID) in hex, cut
 * to 28 characters. Each call reads the nat table with iptables-save and writes all changes of one
 * address family with one iptables-restore --noflush. Where we deliberately differ: with two addresses
 * of one family, upstream appends the second ACCEPT after the MASQUERADE (so it never matches); we put
 * every ACCEPT first. Like upstream, the ifname plays no part here.
 */
import {
  type IPFamily,
  iptablesIsNft,
  iptablesTransact,
  readTable,
  type SavedTable,
  splitRule,
} from "../firewall/iptables.ts";
import { type NftTarget, withNftSocket } from "../firewall/nft.ts";
import { iptablesChainName } from "../firewall/owner.ts";
import { NFPROTO_IPV4, NFPROTO_IPV6, nftChainExists } from "../netlink/nftables.ts";
import { CniError, ErrCode } from "../spec/errors.ts";
import { type GCAttachment, type IPMasqOwner, type MasqAddr, MULTICAST } from "./ipmasq-types.ts";

const TABLE = "nat";
const ATTEMPTS = 3;

/** Upstream's utils.FormatChainName(network, containerID). */
export function ipmasqChainName(network: string, containerID: string): string {
  return iptablesChainName(network, containerID);
}

/** Upstream's utils.FormatComment(network, containerID) (Go %q of names limited to [A-Za-z0-9_.-]). */
export function ipmasqComment(network: string, containerID: string): string {
  return `name: "${network}" id: "${containerID}"`;
}

/** Quotes an argument the way iptables-save prints it. */
function quote(s: string): string {
  return `"${s.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

/** The rules setup makes for one family, as iptables-save prints them. */
function desiredRules(
  chain: string,
  comment: string,
  family: IPFamily,
  addrs: readonly MasqAddr[],
): { jumps: string[]; chainRules: string[] } {
  const c = `-m comment --comment ${quote(comment)}`;
  const bits = family === 4 ? 32 : 128;
  const subnets = [...new Set(addrs.map((a) => a.subnet))];
  return {
    jumps: addrs.map((a) => `-A POSTROUTING -s ${a.ip}/${bits} ${c} -j ${chain}`),
    chainRules: [
      ...subnets.map((s) => `-A ${chain} -d ${s} ${c} -j ACCEPT`),
      `-A ${chain} ! -d ${MULTICAST[family]} ${c} -j MASQUERADE`,
    ],
  };
}

/** Comparable form of a rule line: its arguments, unquoted. */
function ruleKey(line: string): string {
  return splitRule(line).join("\0");
}

/** The argument after `flag` in a rule line, e.g. the target of "-j". */
function argAfter(line: string, flag: string): string | undefined {
  const args = splitRule(line);
  const i = args.indexOf(flag);
  return i >= 0 ? args[i + 1] : undefined;
}

/** Rules (in any chain) that jump to `chain`: they must go before the chain can be deleted. */
function jumpsTo(state: SavedTable, chain: string): string[] {
  return state.rules.filter((r) => argAfter(r, "-j") === chain || argAfter(r, "-g") === chain);
}

/** restore lines that delete `chain` with everything pointing at it; empty when nothing is there. */
function removalLines(state: SavedTable, chain: string): string[] {
  const lines = jumpsTo(state, chain).map((r) => `-D ${r.slice(3)}`);
  if (state.chains.has(chain)) lines.push(`-F ${chain}`, `-X ${chain}`);
  return lines;
}

function familiesOf(addrs: readonly MasqAddr[]): IPFamily[] {
  return ([4, 6] as const).filter((f) => addrs.some((a) => a.family === f));
}

function readNat(family: IPFamily, netnsPath: string | undefined): Promise<SavedTable> {
  return readTable(family, TABLE, { netnsPath });
}

/** One read-plan-restore round (see iptablesTransact), retried when the restore fails. */
function transact(
  family: IPFamily,
  netnsPath: string | undefined,
  what: string,
  plan: (state: SavedTable) => string[],
): Promise<void> {
  return iptablesTransact(family, TABLE, plan, { netnsPath, what, attempts: ATTEMPTS });
}

export async function setupIPMasqIptables(
  o: IPMasqOwner,
  addrs: readonly MasqAddr[],
  netnsPath: string | undefined,
): Promise<void> {
  const chain = ipmasqChainName(o.network, o.containerID);
  const comment = ipmasqComment(o.network, o.containerID);
  for (const family of familiesOf(addrs)) {
    const want = desiredRules(
      chain,
      comment,
      family,
      addrs.filter((a) => a.family === family),
    );
    await transact(family, netnsPath, `adding IPv${family} masquerade chain ${chain}`, (state) => {
      const have = jumpsTo(state, chain);
      const haveKeys = new Set(have.map(ruleKey));
      const wantKeys = new Set(want.jumps.map(ruleKey));
      return [
        // Declaring the chain creates it, or empties it when it exists (restore --noflush semantics).
        `:${chain} - [0:0]`,
        ...want.chainRules,
        ...have.filter((r) => !wantKeys.has(ruleKey(r))).map((r) => `-D ${r.slice(3)}`),
        ...want.jumps.filter((r) => !haveKeys.has(ruleKey(r))),
      ];
    });
  }
}

/**
 * Whether `chain` can exist in this family's nat table. With iptables-nft the table is an nf_tables
 * table and netlink answers without starting iptables-save (~5 ms); a jump to a chain cannot outlive
 * the chain, so no chain means nothing to remove. With iptables-legacy: maybe.
 */
async function chainMayExist(family: IPFamily, chain: string, target: NftTarget): Promise<boolean> {
  if (!iptablesIsNft(family)) return true;
  return withNftSocket(target, (sock) =>
    nftChainExists(sock, family === 4 ? NFPROTO_IPV4 : NFPROTO_IPV6, TABLE, chain),
  );
}

/**
 * Removes the chain and every jump to it; `addrs` (when known) only narrows the families looked at.
 * `target` says where the tools run (its netnsPath) and which netfilter socket looks the chain up.
 */
export async function teardownIPMasqIptables(
  o: IPMasqOwner,
  addrs: readonly MasqAddr[] | undefined,
  target: NftTarget,
): Promise<void> {
  const netnsPath = target.netnsPath;
  const chain = ipmasqChainName(o.network, o.containerID);
  const families = addrs && addrs.length > 0 ? familiesOf(addrs) : ([4, 6] as const);
  for (const family of families) {
    if (!(await chainMayExist(family, chain, target))) continue;
    await transact(family, netnsPath, `deleting IPv${family} masquerade chain ${chain}`, (state) =>
      removalLines(state, chain),
    );
  }
}

export async function checkIPMasqIptables(
  o: IPMasqOwner,
  addrs: readonly MasqAddr[],
  netnsPath: string | undefined,
): Promise<void> {
  const chain = ipmasqChainName(o.network, o.containerID);
  const comment = ipmasqComment(o.network, o.containerID);
  for (const family of familiesOf(addrs)) {
    const state = await readNat(family, netnsPath);
    if (!state.chains.has(chain)) {
      throw new CniError(ErrCode.Internal, `IPv${family} nat chain ${chain} is missing`);
    }
    const have = new Set(state.rules.map(ruleKey));
    const want = desiredRules(
      chain,
      comment,
      family,
      addrs.filter((a) => a.family === family),
    );
    for (const rule of [...want.chainRules, ...want.jumps]) {
      if (!have.has(ruleKey(rule)))
        throw new CniError(ErrCode.Internal, `IPv${family} nat rule missing: ${rule}`);
    }
  }
}

const COMMENT_RE = /^name: "([^"]*)" id: "([^"]*)"$/;

/**
 * Upstream's iptables backend has no GC; ours finds the chains of `network` by their rules' comment
 * (which names network and container) and proves them ipmasq chains by recomputing the chain name.
 */
export async function gcIPMasqIptables(
  network: string,
  valid: readonly GCAttachment[],
  netnsPath: string | undefined,
): Promise<void> {
  const alive = new Set(valid.map((a) => a.containerID));
  for (const family of [4, 6] as const) {
    await transact(family, netnsPath, `collecting IPv${family} masquerade chains of ${network}`, (state) => {
      const stale = new Set<string>();
      for (const rule of state.rules) {
        const chain = argAfter(rule, "-A");
        const m = COMMENT_RE.exec(argAfter(rule, "--comment") ?? "");
        if (!chain || !m || m[1] !== network || alive.has(m[2]!)) continue;
        if (ipmasqChainName(network, m[2]!) === chain) stale.add(chain);
      }
      return [...stale].flatMap((chain) => removalLines(state, chain));
    });
  }
}
