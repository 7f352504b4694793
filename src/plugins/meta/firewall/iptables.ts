/**
 * The iptables backend, rule for rule what upstream's firewall plugin makes (plugins/meta/firewall
 * iptables.go, ingresspolicy.go), so an attachment added by the Go plugin can be deleted by ours and
 * the other way round. In table filter, per address family:
 *
 *   FORWARD:      -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD          (first)
 *   CNI-FORWARD:  -m comment --comment "CNI firewall plugin admin overrides" -j CNI-ADMIN  (first)
 *                 -d <ip>/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT    per address
 *                 -s <ip>/32 -j ACCEPT
 *   CNI-ADMIN:    the operators' rules (never touched)
 *
 * ingressPolicy same-bridge / isolated (upstream's bridge isolation, same chains):
 *
 *   FORWARD:                -j CNI-ISOLATION-STAGE-1                       (before CNI-FORWARD)
 *   CNI-ISOLATION-STAGE-1:  -i <br> ! -o <br> -j CNI-ISOLATION-STAGE-2        per bridge
 *                           -i <br> -o <br> -j DROP                          per bridge, isolated only
 *                           -j RETURN
 *   CNI-ISOLATION-STAGE-2:  -o <br> -j DROP                                   per bridge
 *                           -j RETURN
 *
 * Each call reads the table with iptables-save and writes every change of a family with one
 * iptables-restore --noflush. The per-address rules name no owner (upstream's DEL deletes them by
 * address): records.ts says whose they are, for GC and for a DEL that must not take another
 * attachment's rules.
 */
import {
  hasRule,
  type IPFamily,
  iptablesRestore,
  iptablesTransact,
  jumpsTo,
  type RuleArgs,
  readTable,
  ruleLine,
  rulesOf,
  type SavedTable,
} from "../../../firewall/iptables.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import type { FwAddr, IngressPolicy } from "./config.ts";

const TABLE = "filter";
export const PRIV_CHAIN = "CNI-FORWARD";
export const STAGE1 = "CNI-ISOLATION-STAGE-1";
export const STAGE2 = "CNI-ISOLATION-STAGE-2";
const ATTEMPTS = 5;

const privJump: RuleArgs = ["-m", "comment", "--comment", "CNI firewall plugin rules", "-j", PRIV_CHAIN];
const adminJump = (admin: string): RuleArgs => [
  "-m",
  "comment",
  "--comment",
  "CNI firewall plugin admin overrides",
  "-j",
  admin,
];

function hostBits(family: IPFamily): number {
  return family === 4 ? 32 : 128;
}

/** Upstream's getPrivChainRules. */
export function addrRules(a: FwAddr): RuleArgs[] {
  const ip = `${a.ip}/${hostBits(a.family)}`;
  return [
    ["-d", ip, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
    ["-s", ip, "-j", "ACCEPT"],
  ];
}

const policyComment = (p: string) => [
  "-m",
  "comment",
  "--comment",
  `CNI firewall plugin rules (ingressPolicy: ${p})`,
];
const DEFAULT_POLICY = "same-bridge|isolated";

/** The isolation rules of upstream v1.9 (chain, arguments); comments as upstream prints them. */
function isolationRules(bridge: string, policy: IngressPolicy) {
  return {
    forward: [...policyComment(DEFAULT_POLICY), "-j", STAGE1],
    stage1Bridge: ["-i", bridge, "!", "-o", bridge, ...policyComment("same-bridge"), "-j", STAGE2],
    stage1Drop:
      policy === "isolated"
        ? ["-i", bridge, "-o", bridge, ...policyComment("isolated"), "-j", "DROP"]
        : undefined,
    stage1Return: [...policyComment(DEFAULT_POLICY), "-j", "RETURN"],
    stage2Bridge: ["-o", bridge, ...policyComment(DEFAULT_POLICY), "-j", "DROP"],
    stage2Return: [...policyComment(DEFAULT_POLICY), "-j", "RETURN"],
  };
}

/** A rule without its comment match: upstream 1.1.1 and 1.9 word the isolation comments differently. */
function withoutComment(args: RuleArgs): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "-m" && args[i + 1] === "comment" && args[i + 2] === "--comment") {
      i += 3;
      continue;
    }
    out.push(args[i]!);
  }
  return out;
}

function hasRuleAnyComment(saved: SavedTable, chain: string, args: RuleArgs): boolean {
  const want = withoutComment(args).join("\0");
  return rulesOf(saved, chain).some((r) => withoutComment(r.args).join("\0") === want);
}

export function familiesOf(addrs: readonly FwAddr[]): IPFamily[] {
  return ([4, 6] as const).filter((f) => addrs.some((a) => a.family === f));
}

/** "-N chain" unless it exists ("-N" fails if someone made it meanwhile: the transaction retries). */
function ensureChain(saved: SavedTable, chain: string, lines: string[]): void {
  if (!saved.chains.has(chain)) lines.push(`-N ${chain}`);
}

/** Upstream's setupIsolationChains as restore lines. */
function isolationLines(saved: SavedTable, bridge: string, policy: IngressPolicy): string[] {
  const r = isolationRules(bridge, policy);
  const lines: string[] = [];
  ensureChain(saved, STAGE1, lines);
  ensureChain(saved, STAGE2, lines);
  const insert = (chain: string, args: RuleArgs) => {
    if (!hasRuleAnyComment(saved, chain, args)) lines.push(ruleLine("-I", chain, args, 1));
  };
  const append = (chain: string, args: RuleArgs) => {
    if (!hasRuleAnyComment(saved, chain, args)) lines.push(ruleLine("-A", chain, args));
  };
  if (!rulesOf(saved, "FORWARD").some((x) => jumpsTo(x.args, STAGE1)))
    lines.push(ruleLine("-I", "FORWARD", r.forward, 1));
  insert(STAGE1, r.stage1Bridge);
  if (r.stage1Drop) insert(STAGE1, r.stage1Drop);
  append(STAGE1, r.stage1Return);
  insert(STAGE2, r.stage2Bridge);
  append(STAGE2, r.stage2Return);
  return lines;
}

export interface IptablesAddOptions {
  adminChain: string;
  addrs: readonly FwAddr[];
  /** Set for ingressPolicy same-bridge / isolated. */
  isolation?: { bridge: string; policy: IngressPolicy };
}

/** ADD: chains, jumps, the addresses' rules and the isolation, one restore per family. */
export async function iptablesAdd(o: IptablesAddOptions): Promise<void> {
  for (const family of familiesOf(o.addrs)) {
    const addrs = o.addrs.filter((a) => a.family === family);
    await iptablesTransact(
      family,
      TABLE,
      (saved) => {
        const lines: string[] = [];
        ensureChain(saved, PRIV_CHAIN, lines);
        ensureChain(saved, o.adminChain, lines);
        if (!hasRule(saved, "FORWARD", privJump)) lines.push(ruleLine("-I", "FORWARD", privJump, 1));
        if (!hasRule(saved, PRIV_CHAIN, adminJump(o.adminChain))) {
          lines.push(ruleLine("-I", PRIV_CHAIN, adminJump(o.adminChain), 1));
        }
        for (const rule of addrs.flatMap(addrRules)) {
          if (!hasRule(saved, PRIV_CHAIN, rule)) lines.push(ruleLine("-A", PRIV_CHAIN, rule));
        }
        if (o.isolation) lines.push(...isolationLines(saved, o.isolation.bridge, o.isolation.policy));
        return lines;
      },
      { what: `adding IPv${family} firewall rules`, attempts: ATTEMPTS },
    );
  }
}

/**
 * DEL: the rules of these addresses; chains, jumps and isolation stay (upstream's DEL keeps them).
 * Optimistic first: one restore that deletes every rule (the usual DEL, where they exist); if that
 * fails (some are gone: a second DEL, an upstream DEL before), read the table and delete what is there.
 */
export async function iptablesDel(addrs: readonly FwAddr[]): Promise<void> {
  for (const family of familiesOf(addrs)) {
    const rules = addrs.filter((a) => a.family === family).flatMap(addrRules);
    const what = `deleting IPv${family} firewall rules`;
    try {
      await iptablesRestore(
        family,
        TABLE,
        rules.map((r) => ruleLine("-D", PRIV_CHAIN, r)),
        { what },
      );
      continue;
    } catch {
      // Not all of them there: plan from the table.
    }
    await iptablesTransact(
      family,
      TABLE,
      (saved) => rules.filter((r) => hasRule(saved, PRIV_CHAIN, r)).map((r) => ruleLine("-D", PRIV_CHAIN, r)),
      { what, attempts: ATTEMPTS },
    );
  }
}

/** CHECK: upstream's checkRules (chains, both jumps, every address rule), plus the isolation rules. */
export async function iptablesCheck(o: IptablesAddOptions): Promise<void> {
  for (const family of familiesOf(o.addrs)) {
    const saved = await readTable(family, TABLE);
    const fail = (msg: string) =>
      new CniError(ErrCode.Internal, `checking IPv${family} firewall rules: ${msg}`);
    for (const chain of [PRIV_CHAIN, o.adminChain]) {
      if (!saved.chains.has(chain)) throw fail(`chain ${chain} not found in table filter`);
    }
    const want: [string, RuleArgs][] = [
      ["FORWARD", privJump],
      [PRIV_CHAIN, adminJump(o.adminChain)],
      ...o.addrs
        .filter((a) => a.family === family)
        .flatMap(addrRules)
        .map((r): [string, RuleArgs] => [PRIV_CHAIN, r]),
    ];
    for (const [chain, rule] of want) {
      if (!hasRule(saved, chain, rule)) throw fail(`expected ${chain} rule "${rule.join(" ")}" not found`);
    }
    if (o.isolation) {
      const r = isolationRules(o.isolation.bridge, o.isolation.policy);
      const iso: [string, RuleArgs | undefined][] = [
        [STAGE1, r.stage1Bridge],
        [STAGE1, r.stage1Drop],
        [STAGE2, r.stage2Bridge],
      ];
      if (!rulesOf(saved, "FORWARD").some((x) => jumpsTo(x.args, STAGE1)))
        throw fail(`no FORWARD jump to ${STAGE1}`);
      for (const [chain, rule] of iso) {
        if (rule && !hasRuleAnyComment(saved, chain, rule)) {
          throw fail(`expected ${chain} rule "${withoutComment(rule).join(" ")}" not found`);
        }
      }
    }
  }
}

/** The isolation chains alone (ingressPolicy with the firewalld backend: upstream uses iptables then). */
export async function iptablesIsolate(
  families: readonly IPFamily[],
  bridge: string,
  policy: IngressPolicy,
): Promise<void> {
  for (const family of families) {
    await iptablesTransact(family, TABLE, (saved) => isolationLines(saved, bridge, policy), {
      what: `adding IPv${family} isolation rules for bridge ${bridge}`,
      attempts: ATTEMPTS,
    });
  }
}
