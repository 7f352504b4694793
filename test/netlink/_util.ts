/**
 * Anonymous throwaway network namespaces for the netlink object tests: a `unshare --net sleep` child
 * holds the namespace, so no bind mount under /var/run/netns is made (see the report: named netns
 * creation currently stacks mounts on /run/netns). Same shape as test/helpers/netns.ts's TempNetns
 * where it matters: .ns, .sock, .ip(...) (JSON of `ip -j`), .tc(...) (JSON of `tc -j`), .run(cmd).
 */
import { readlinkSync } from "node:fs";
import { NetlinkSocket } from "../../src/netlink/socket.ts";
import { type NetNS, openNetns } from "../../src/ns/index.ts";

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface TestNetns {
  readonly path: string;
  readonly ns: NetNS;
  readonly sock: NetlinkSocket;
  // biome-ignore lint/suspicious/noExplicitAny: parsed `ip -j` output
  ip(...args: string[]): any;
  // biome-ignore lint/suspicious/noExplicitAny: parsed `tc -j` output
  tc(...args: string[]): any;
  run(cmd: string[]): RunResult;
  cleanup(): void;
}

const live = new Set<TestNetns>();

function exec(cmd: string[]): RunResult {
  const p = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode ?? -1, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

export function makeTestNetns(): TestNetns {
  const child = Bun.spawn(["unshare", "--net", "sleep", "infinity"], { stdout: "ignore", stderr: "inherit" });
  const path = `/proc/${child.pid}/ns/net`;
  const ours = readlinkSync("/proc/thread-self/ns/net");
  let ns: NetNS | undefined;
  let sock: NetlinkSocket | undefined;
  try {
    // unshare switches namespace before exec'ing sleep: wait until it has.
    const deadline = Date.now() + 10_000;
    while (readlinkSync(path) === ours) {
      if (Date.now() > deadline) throw new Error("unshare --net did not create a netns");
      Bun.sleepSync(2);
    }
    ns = openNetns(path);
    sock = NetlinkSocket.open({ netnsFd: ns.fd });
  } catch (err) {
    ns?.close();
    child.kill();
    throw err;
  }
  const nsArg = `--net=${path}`;
  const json = (cmd: string[]) => {
    const r = exec(["nsenter", nsArg, ...cmd]);
    if (r.code !== 0) throw new Error(`${cmd.join(" ")} failed (${r.code}): ${r.stderr.trim()}`);
    return r.stdout.trim() === "" ? undefined : JSON.parse(r.stdout);
  };
  let done = false;
  const t: TestNetns = {
    path,
    ns,
    sock,
    ip: (...args) => json(["ip", "-j", ...args]),
    tc: (...args) => json(["tc", "-j", ...args]),
    run: (cmd) => exec(["nsenter", nsArg, ...cmd]),
    cleanup() {
      if (done) return;
      done = true;
      live.delete(t);
      try {
        sock?.close();
        ns?.close();
      } finally {
        child.kill();
      }
    },
  };
  live.add(t);
  return t;
}

export function cleanupTestNetns(): void {
  for (const t of [...live]) t.cleanup();
}

process.on("exit", cleanupTestNetns);

/** A veth pair v0/v1, both up, in `t`; their ifindexes. */
export function vethPair(t: TestNetns): { v0: number; v1: number } {
  t.ip("link", "add", "v0", "type", "veth", "peer", "name", "v1");
  t.ip("link", "set", "v0", "up");
  t.ip("link", "set", "v1", "up");
  return { v0: ifindex(t, "v0"), v1: ifindex(t, "v1") };
}

export function ifindex(t: TestNetns, dev: string): number {
  return t.ip("link", "show", "dev", dev)[0].ifindex;
}
