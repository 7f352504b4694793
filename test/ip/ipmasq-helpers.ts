/** Shared by the ipmasq tests: throwaway netns and shell oracles (ip, nft, iptables-save). */
import { spawnSync } from "node:child_process";

export function sh(
  argv: readonly string[],
  opts: { input?: string; env?: Record<string, string> } = {},
): string {
  const r = spawnSync(argv[0]!, argv.slice(1), {
    encoding: "utf8",
    input: opts.input,
    env: opts.env ? { ...process.env, ...opts.env } : process.env,
  });
  if (r.status !== 0) throw new Error(`${argv.join(" ")} exited ${r.status}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

export interface TestNetns {
  name: string;
  path: string;
}

export function addNetns(): TestNetns {
  const name = `tscni-t-${Math.random().toString(36).slice(2, 10)}`;
  sh(["ip", "netns", "add", name]);
  return { name, path: `/var/run/netns/${name}` };
}

export function delNetns(ns: TestNetns | undefined): void {
  if (ns) spawnSync("ip", ["netns", "del", ns.name]);
}

/** Runs `fn` with fresh netns (deleted afterwards, also on failure). */
export async function withNetns<T>(count: number, fn: (...ns: TestNetns[]) => Promise<T>): Promise<T> {
  const made: TestNetns[] = [];
  try {
    for (let i = 0; i < count; i++) made.push(addNetns());
    return await fn(...made);
  } finally {
    for (const ns of made) delNetns(ns);
  }
}

/** nat table rule lines ("-A …") of iptables-save / ip6tables-save inside a netns, sorted. */
export function natRules(ns: TestNetns, family: 4 | 6): string[] {
  const tool = family === 4 ? "iptables-save" : "ip6tables-save";
  return sh(["ip", "netns", "exec", ns.name, tool, "-t", "nat"])
    .split("\n")
    .filter(
      (l) =>
        l.startsWith("-A ") || (l.startsWith(":") && !/^:(PREROUTING|INPUT|OUTPUT|POSTROUTING) /.test(l)),
    )
    .sort();
}
