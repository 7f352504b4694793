/**
 * iptables transactions: one `iptables-restore` (or `ip6tables-restore`) run per call, which commits
 * the whole table section atomically, and `iptables-save` to read a table.
 */
import { closeFile, O_CREAT, O_RDWR, openFile } from "../sys/fs.ts";
import { flock, LOCK_UN, realpath } from "../sys/libc.ts";
import { flockExclusive, serialized } from "../sys/lock.ts";
import { findTool, runToolOrThrow } from "./exec.ts";

/**
 * Held across a read-plan-apply: iptables-restore has no compare-and-swap, and two plugins that both
 * read "no FORWARD jump yet" would both insert one (seen with 8 parallel firewall ADDs). Not
 * /run/xtables.lock: iptables-legacy's own tools take that one, and would wait on us.
 */
export const TRANSACT_LOCK = "/run/tscni-iptables.lock";

export type IPFamily = 4 | 6;

export interface IptablesOptions {
  /** Run inside this network namespace instead of the current one. */
  netnsPath?: string;
  /** What the caller is doing, for the error message. */
  what?: string;
}

export interface IptablesRestoreOptions extends IptablesOptions {
  /** Keep the table's other rules (--noflush). Default true: flushing a shared table is never wanted here. */
  noflush?: boolean;
}

function tool(family: IPFamily, kind: "restore" | "save"): string {
  return `${family === 4 ? "iptables" : "ip6tables"}-${kind}`;
}

/**
 * Whether this family's iptables is iptables-nft (its tables are nf_tables tables "ip"/"ip6" <table>,
 * which can be read through netlink), not iptables-legacy. Judged by the executable it resolves to:
 * xtables-nft-multi vs xtables-legacy-multi (Debian's alternatives, Fedora, Alpine alike).
 */
export function iptablesIsNft(family: IPFamily): boolean {
  try {
    const target = realpath(findTool(tool(family, "restore")));
    return target.includes("-nft") && !target.includes("legacy");
  } catch {
    return false;
  }
}

/**
 * Applies `lines` (":CHAIN - [0:0]", "-A CHAIN …", "-D …", "-X CHAIN", without the "*table"/"COMMIT"
 * framing) to `table` in one iptables-restore run. -w waits for the xtables lock instead of failing.
 */
export async function iptablesRestore(
  family: IPFamily,
  table: string,
  lines: readonly string[],
  opts: IptablesRestoreOptions = {},
): Promise<void> {
  const args = ["-w"];
  if (opts.noflush ?? true) args.push("--noflush");
  const input = `*${table}\n${lines.join("\n")}${lines.length > 0 ? "\n" : ""}COMMIT\n`;
  await runToolOrThrow(tool(family, "restore"), args, opts.what ?? `restoring IPv${family} ${table} rules`, {
    stdin: input,
    netnsPath: opts.netnsPath,
  });
}

/** The `iptables-save -t table` text (IPv4 or IPv6). */
export async function iptablesSave(
  family: IPFamily,
  table: string,
  opts: IptablesOptions = {},
): Promise<string> {
  return runToolOrThrow(
    tool(family, "save"),
    ["-t", table],
    opts.what ?? `reading IPv${family} ${table} rules`,
    {
      netnsPath: opts.netnsPath,
    },
  );
}

/** One table of iptables-save output: its chains (builtin and user) and rules, as printed. */
export interface SavedTable {
  /** Chain name → policy ("ACCEPT", … or "-" for a user chain). */
  chains: Map<string, string>;
  /** Every "-A CHAIN …" line of the table, in order. */
  rules: string[];
}

/** Parses the section of `table` in iptables-save output (empty when the table is absent). */
export function parseSave(text: string, table: string): SavedTable {
  const out: SavedTable = { chains: new Map(), rules: [] };
  let inTable = false;
  for (const line of text.split("\n")) {
    if (line.startsWith("*")) inTable = line.slice(1).trim() === table;
    else if (!inTable) continue;
    else if (line.startsWith("COMMIT")) inTable = false;
    else if (line.startsWith("-A ")) out.rules.push(line.trimEnd());
    else if (line.startsWith(":")) {
      const [name, policy] = line.slice(1).split(" ");
      if (name) out.chains.set(name, policy ?? "-");
    }
  }
  return out;
}

/** Splits an iptables-save rule line into arguments, undoing its "…" quoting with \" and \\ escapes. */
export function splitRule(line: string): string[] {
  const args: string[] = [];
  let cur = "";
  let inArg = false;
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quoted) {
      if (c === "\\" && i + 1 < line.length) cur += line[++i];
      else if (c === '"') quoted = false;
      else cur += c;
    } else if (c === '"') {
      quoted = true;
      inArg = true;
    } else if (c === " " || c === "\t") {
      if (inArg) args.push(cur);
      cur = "";
      inArg = false;
    } else {
      cur += c;
      inArg = true;
    }
  }
  if (inArg) args.push(cur);
  return args;
}

/** One rule's arguments after "-A CHAIN", e.g. ["-s", "10.0.0.2/32", "-j", "ACCEPT"]. */
export type RuleArgs = readonly string[];

/** Quotes an argument for iptables-restore the way iptables-save does. */
export function quoteArg(a: string): string {
  return /^[^\s"'\\]+$/.test(a) ? a : `"${a.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/** A restore line: op ("-A", "-D", "-I CHAIN 1" style ops take the chain after), chain, arguments. */
export function ruleLine(op: string, chain: string, args: RuleArgs, position?: number): string {
  return [op, chain, ...(position === undefined ? [] : [String(position)]), ...args.map(quoteArg)].join(" ");
}

/** The rules of `chain` in a saved table, as argument lists after "-A CHAIN", with their raw lines. */
export function rulesOf(saved: SavedTable, chain: string): { args: string[]; line: string }[] {
  const out: { args: string[]; line: string }[] = [];
  for (const line of saved.rules) {
    const args = splitRule(line);
    if (args[1] === chain) out.push({ args: args.slice(2), line });
  }
  return out;
}

export function sameArgs(a: RuleArgs, b: RuleArgs): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Whether `chain` has exactly this rule. */
export function hasRule(saved: SavedTable, chain: string, args: RuleArgs): boolean {
  return rulesOf(saved, chain).some((r) => sameArgs(r.args, args));
}

/** Whether a rule's target (its last "-j X" / "-g X") is `chain`. */
export function jumpsTo(args: RuleArgs, chain: string): boolean {
  return (
    args.length >= 2 &&
    (args[args.length - 2] === "-j" || args[args.length - 2] === "-g") &&
    args.at(-1) === chain
  );
}

export interface IptablesTransactOptions extends IptablesOptions {
  /** Read-plan-apply rounds before a failing restore is an error (default 3). */
  attempts?: number;
}

/**
 * Reads `table` with iptables-save, lets `plan` compute the restore lines, applies them with one
 * iptables-restore --noflush; rereads and replans when the restore fails (another writer changed the
 * table between our read and write — e.g. a "-N" of a chain that now exists, a "-D" of a rule gone).
 */
export async function iptablesTransact(
  family: IPFamily,
  table: string,
  plan: (saved: SavedTable) => string[],
  opts: IptablesTransactOptions = {},
): Promise<void> {
  const attempts = opts.attempts ?? 3;
  await withTransactLock(async () => {
    for (let attempt = 1; ; attempt++) {
      const lines = plan(await readTable(family, table, opts));
      if (lines.length === 0) return;
      try {
        await iptablesRestore(family, table, lines, opts);
        return;
      } catch (err) {
        if (attempt >= attempts) throw err;
      }
    }
  });
}

/** Runs `fn` holding TRANSACT_LOCK (sys/lock.ts: queued in this process, polled across processes). */
function withTransactLock<T>(fn: () => Promise<T>): Promise<T> {
  return serialized(TRANSACT_LOCK, async () => {
    const fd = openFile(TRANSACT_LOCK, O_RDWR | O_CREAT, 0o600);
    try {
      await flockExclusive(fd);
      try {
        return await fn();
      } finally {
        flock(fd, LOCK_UN);
      }
    } finally {
      closeFile(fd);
    }
  });
}

/** iptables-save of one table, parsed. */
export async function readTable(
  family: IPFamily,
  table: string,
  opts: IptablesOptions = {},
): Promise<SavedTable> {
  return parseSave(await iptablesSave(family, table, opts), table);
}
