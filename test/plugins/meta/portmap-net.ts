/**
 * A small network for the portmap tests, every part a throwaway netns:
 *
 *   client (K) eth0 192.168.77.2/24 fd78::2/64 ── hc0 192.168.77.1/24 fd78::1/64 ┐
 *                                                                               host (H), forwarding
 *   c1 (C1) eth0 10.77.0.2/24 fd77::2/64 ── vc1 ┐                                │
 *   c2 (C2) eth0 10.77.0.3/24 fd77::3/64 ── vc2 ┴ br0 10.77.0.1/24 fd77::1/64 ───┘
 *
 * Each container runs portmap-probe.ts's echo servers on port 80 (labels "c1", "c2").
 *   makePortmapNet() → PortmapNet; probe(from, probes) runs portmap-probe.ts inside `from`;
 *   prevResult(c) is the result a bridge plugin would have given for container c.
 */
import { join } from "node:path";
import { makeNetns, type TempNetns } from "../../helpers/netns.ts";
import { BUN, REPO, type RunPluginResult, runPlugin } from "../_run.ts";

const PROBE = join(REPO, "test/plugins/meta/portmap-probe.ts");

export interface Probe {
  proto: "tcp" | "udp";
  host: string;
  port: number;
  srcPort?: number;
}

export type Outcome = { ok: true; reply: string } | { ok: false; error: string };

export interface Container {
  ns: TempNetns;
  label: string;
  v4: string;
  v6: string;
}

export interface PortmapNet {
  host: TempNetns;
  client: TempNetns;
  c1: Container;
  c2: Container;
  probe(from: TempNetns, probes: Probe[]): Promise<Outcome[]>;
  prevResult(c: Container, opts?: { v6?: boolean }): object;
  cleanup(): void;
}

function sh(ns: TempNetns, ...cmds: string[][]): void {
  for (const cmd of cmds) {
    const r = ns.run(cmd);
    if (r.code !== 0) throw new Error(`${ns.name}: ${cmd.join(" ")}: ${r.stderr.trim()}`);
  }
}

function startServer(c: Container): Bun.Subprocess<"ignore", "pipe", "pipe"> {
  const proc = Bun.spawn(["ip", "netns", "exec", c.ns.name, BUN, PROBE, "serve", c.label], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  return proc;
}

async function waitReady(proc: Bun.Subprocess<"ignore", "pipe", "pipe">): Promise<void> {
  const reader = proc.stdout.getReader();
  let text = "";
  const deadline = Date.now() + 10_000;
  while (!text.includes("ready")) {
    if (Date.now() > deadline) throw new Error("echo server did not start");
    const { value, done } = await reader.read();
    if (done) throw new Error(`echo server exited: ${await new Response(proc.stderr).text()}`);
    text += new TextDecoder().decode(value);
  }
  reader.releaseLock();
}

export async function makePortmapNet(): Promise<PortmapNet> {
  const host = makeNetns("pmh");
  const client = makeNetns("pmk");
  const c1: Container = { ns: makeNetns("pmc"), label: "c1", v4: "10.77.0.2", v6: "fd77::2" };
  const c2: Container = { ns: makeNetns("pmc"), label: "c2", v4: "10.77.0.3", v6: "fd77::3" };
  const servers: Bun.Subprocess<"ignore", "pipe", "pipe">[] = [];
  const net: PortmapNet = {
    host,
    client,
    c1,
    c2,
    async probe(from, probes) {
      const p = Bun.spawn(["ip", "netns", "exec", from.name, BUN, PROBE, "probe", JSON.stringify(probes)], {
        stdout: "pipe",
        stderr: "pipe",
      });
      const [out, err, code] = await Promise.all([
        new Response(p.stdout).text(),
        new Response(p.stderr).text(),
        p.exited,
      ]);
      if (code !== 0) throw new Error(`probe in ${from.name} failed (${code}): ${err}`);
      return JSON.parse(out) as Outcome[];
    },
    prevResult(c, opts = {}) {
      const ips: object[] = [{ address: `${c.v4}/24`, gateway: "10.77.0.1", interface: 2 }];
      if (opts.v6 ?? true) ips.push({ address: `${c.v6}/64`, gateway: "fd77::1", interface: 2 });
      return {
        cniVersion: "1.0.0",
        interfaces: [
          { name: "br0" },
          { name: c === c1 ? "vc1" : "vc2" },
          { name: "eth0", sandbox: c.ns.path },
        ],
        ips,
      };
    },
    cleanup() {
      for (const s of servers) s.kill();
      for (const n of [c1.ns, c2.ns, client, host]) n.cleanup();
    },
  };
  try {
    for (const n of [host, client, c1.ns, c2.ns]) {
      // No DAD, so IPv6 works at once (link-local addresses too: set before the links exist).
      sh(n, ["sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.accept_dad=0"]);
    }
    sh(
      host,
      ["ip", "link", "set", "lo", "up"],
      [
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=1",
        "net.ipv6.conf.default.forwarding=1",
        "net.ipv6.conf.all.forwarding=1",
      ],
      ["ip", "link", "add", "br0", "type", "bridge"],
      ["ip", "addr", "add", "10.77.0.1/24", "dev", "br0"],
      ["ip", "addr", "add", "fd77::1/64", "dev", "br0", "nodad"],
      ["ip", "link", "set", "br0", "up"],
      ["ip", "link", "add", "hc0", "type", "veth", "peer", "name", "eth0", "netns", client.name],
      ["ip", "addr", "add", "192.168.77.1/24", "dev", "hc0"],
      ["ip", "addr", "add", "fd78::1/64", "dev", "hc0", "nodad"],
      ["ip", "link", "set", "hc0", "up"],
    );
    sh(
      client,
      ["ip", "link", "set", "lo", "up"],
      ["ip", "addr", "add", "192.168.77.2/24", "dev", "eth0"],
      ["ip", "addr", "add", "fd78::2/64", "dev", "eth0", "nodad"],
      ["ip", "link", "set", "eth0", "up"],
      ["ip", "route", "add", "default", "via", "192.168.77.1"],
      ["ip", "-6", "route", "add", "default", "via", "fd78::1"],
    );
    for (const [c, port] of [
      [c1, "vc1"],
      [c2, "vc2"],
    ] as const) {
      sh(
        host,
        ["ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", c.ns.name],
        ["ip", "link", "set", port, "master", "br0", "up"],
        // What the bridge plugin's hairpinMode does. Needed where br_netfilter is loaded: a DNATed
        // hairpin packet is then bridged back out of the port it came in on.
        ["bridge", "link", "set", "dev", port, "hairpin", "on"],
      );
      sh(
        c.ns,
        ["ip", "link", "set", "lo", "up"],
        ["ip", "addr", "add", `${c.v4}/24`, "dev", "eth0"],
        ["ip", "addr", "add", `${c.v6}/64`, "dev", "eth0", "nodad"],
        ["ip", "link", "set", "eth0", "up"],
        ["ip", "route", "add", "default", "via", "10.77.0.1"],
        ["ip", "-6", "route", "add", "default", "via", "fd77::1"],
      );
      servers.push(startServer(c));
    }
    await Promise.all(servers.map(waitReady));
  } catch (err) {
    net.cleanup();
    throw err;
  }
  return net;
}

export interface PmOptions {
  id?: string;
  ifName?: string;
  /** Our plugin by default; an absolute path runs that executable (upstream's /usr/lib/cni/portmap). */
  plugin?: string;
}

/** Runs portmap (ours or upstream's) in the net's host netns with `conf` on stdin. */
export function pm(net: PortmapNet, verb: string, conf: object, o: PmOptions = {}): Promise<RunPluginResult> {
  return runPlugin({
    plugin: o.plugin ?? "portmap",
    hostNetns: net.host.name,
    env: {
      CNI_COMMAND: verb,
      CNI_CONTAINERID: o.id ?? "ctr1",
      CNI_NETNS: net.c1.ns.path,
      CNI_IFNAME: o.ifName ?? "eth0",
    },
    config: conf,
  });
}

export interface ConfOptions {
  backend?: "nftables" | "iptables";
  container?: Container;
  v6?: boolean;
  mappings?: object[];
  extra?: Record<string, unknown>;
  name?: string;
}

/** A portmap config for `container` (c1 by default) as a runtime would send it. */
export function pmConf(net: PortmapNet, o: ConfOptions = {}): object {
  return {
    cniVersion: "1.0.0",
    name: o.name ?? "pmnet",
    type: "portmap",
    ...(o.backend ? { backend: o.backend } : {}),
    ...o.extra,
    runtimeConfig: {
      portMappings: o.mappings ?? [
        { hostPort: 8080, containerPort: 80, protocol: "tcp" },
        { hostPort: 8080, containerPort: 80, protocol: "udp" },
      ],
    },
    prevResult: net.prevResult(o.container ?? net.c1, { v6: o.v6 ?? true }),
  };
}

/** The host's nft table of our nftables backend as `nft -j` objects (undefined when absent). */
// biome-ignore lint/suspicious/noExplicitAny: nft -j output
export function nftTable(net: PortmapNet): any[] | undefined {
  const r = net.host.run(["nft", "-j", "list", "table", "inet", "tscni_hostport"]);
  if (r.code !== 0) return undefined;
  return JSON.parse(r.stdout).nftables;
}

/** iptables-save -t nat of the host (family 4 or 6). */
export function natRules(net: PortmapNet, family: 4 | 6): string {
  const r = net.host.run([family === 4 ? "iptables-save" : "ip6tables-save", "-t", "nat"]);
  if (r.code !== 0) throw new Error(r.stderr);
  return r.stdout
    .split("\n")
    .filter((l) => !l.startsWith("#"))
    .join("\n");
}

/** Removes both backends' state from the host (between tests). */
export function resetFirewall(net: PortmapNet): void {
  net.host.run(["nft", "delete", "table", "inet", "tscni_hostport"]);
  for (const t of ["iptables", "ip6tables"]) net.host.run([t, "-t", "nat", "-F"]);
  for (const t of ["iptables", "ip6tables"]) net.host.run([t, "-t", "nat", "-X"]);
  net.host.run(["conntrack", "-F"]);
}

const tcp = (host: string, port = 8080): Probe => ({ proto: "tcp", host, port });
const udp = (host: string, port = 8080, srcPort?: number): Probe =>
  srcPort === undefined ? { proto: "udp", host, port } : { proto: "udp", host, port, srcPort };

/**
 * Every way to reach c1's port 80 through host port 8080 (tcp and udp), all at once: from the
 * outside client to the host's addresses on its link, from the host to 127.0.0.1, from c1 itself
 * (hairpin) and from c2 to host addresses. The outside UDP probe uses a fixed source port, so a
 * probe after DEL repeats the same flow.
 */
export async function probeAll(net: PortmapNet): Promise<Record<string, Outcome[]>> {
  const [outside, localhost, hairpin, neighbour] = await Promise.all([
    net.probe(net.client, [
      tcp("192.168.77.1"),
      udp("192.168.77.1", 8080, 41000),
      tcp("fd78::1"),
      udp("fd78::1"),
    ]),
    net.probe(net.host, [tcp("127.0.0.1"), udp("127.0.0.1")]),
    net.probe(net.c1.ns, [
      tcp("10.77.0.1"),
      udp("10.77.0.1"),
      tcp("192.168.77.1"),
      tcp("fd77::1"),
      udp("fd78::1"),
    ]),
    net.probe(net.c2.ns, [tcp("10.77.0.1"), udp("fd77::1")]),
  ]);
  return { outside: outside!, localhost: localhost!, hairpin: hairpin!, neighbour: neighbour! };
}

const ok = (reply: string): Outcome => ({ ok: true, reply });

/**
 * probeAll's answers when the mapping works: outside clients are not SNATed (c1 sees them); localhost
 * and hairpin traffic is masqueraded to the bridge address.
 */
export const ALL_FORWARDED: Record<string, Outcome[]> = {
  outside: [
    ok("c1 192.168.77.2 ping"),
    ok("c1 192.168.77.2 ping"),
    ok("c1 fd78::2 ping"),
    ok("c1 fd78::2 ping"),
  ],
  localhost: [ok("c1 10.77.0.1 ping"), ok("c1 10.77.0.1 ping")],
  hairpin: [
    ok("c1 10.77.0.1 ping"),
    ok("c1 10.77.0.1 ping"),
    ok("c1 10.77.0.1 ping"),
    ok("c1 fd77::1 ping"),
    ok("c1 fd77::1 ping"),
  ],
  neighbour: [ok("c1 10.77.0.1 ping"), ok("c1 fd77::1 ping")],
};

/** Whether each probe of probeAll got an answer, for the "nothing answers" assertion. */
export function answered(r: Record<string, Outcome[]>): boolean[] {
  return Object.values(r).flatMap((list) => list.map((o) => o.ok));
}
