/**
 * The network of the firewall tests, every part a throwaway netns:
 *
 *   peer (P) eth0 192.168.79.2/24 ── hp0 192.168.79.1/24 ┐
 *                                                         host (H), forwarding
 *   c1 (C1) eth0 10.79.0.2/24 ── v1 ┐                     │
 *   c3 (C3) eth0 10.79.0.3/24 ── v3 ┴ br0 10.79.0.1/24 ───┤
 *   c2 (C2) eth0 10.79.1.2/24 ── v2 ── br1 10.79.1.1/24 ──┘
 *
 *   makeFwNet() → FwNet;  ping(from, ip) → whether one echo got its reply within a second;
 *   prevResult(c) is what bridge would hand on for container c (bridge, host veth, eth0; with an
 *   IPv6 address fd79::<n>/64 that the rules name but no test pings).
 */
import { makeNetns, type TempNetns } from "../../helpers/netns.ts";
import { type RunPluginResult, runPlugin } from "../_run.ts";

export interface FwContainer {
  ns: TempNetns;
  ip: string;
  ip6: string;
  bridge: string;
  port: string;
}

export interface FwNet {
  host: TempNetns;
  peer: TempNetns;
  c1: FwContainer;
  c2: FwContainer;
  c3: FwContainer;
  prevResult(c: FwContainer, cniVersion?: string): Record<string, unknown>;
  cleanup(): void;
}

function sh(ns: TempNetns, ...cmds: string[][]): void {
  for (const cmd of cmds) {
    const r = ns.run(cmd);
    if (r.code !== 0) throw new Error(`${ns.name}: ${cmd.join(" ")}: ${r.stderr.trim()}`);
  }
}

export function ping(from: TempNetns, ip: string): boolean {
  return from.run(["ping", "-c1", "-W1", "-q", ip]).code === 0;
}

export function makeFwNet(): FwNet {
  const host = makeNetns("fwh");
  const peer = makeNetns("fwp");
  const mk = (ip: string, ip6: string, bridge: string, port: string): FwContainer => ({
    ns: makeNetns("fwc"),
    ip,
    ip6,
    bridge,
    port,
  });
  const c1 = mk("10.79.0.2", "fd79::2", "br0", "v1");
  const c2 = mk("10.79.1.2", "fd79:1::2", "br1", "v2");
  const c3 = mk("10.79.0.3", "fd79::3", "br0", "v3");
  const net: FwNet = {
    host,
    peer,
    c1,
    c2,
    c3,
    prevResult(c, cniVersion = "1.0.0") {
      return {
        cniVersion,
        interfaces: [{ name: c.bridge }, { name: c.port }, { name: "eth0", sandbox: c.ns.path }],
        ips: [
          { address: `${c.ip}/24`, gateway: c.ip.replace(/\.\d+$/, ".1"), interface: 2 },
          { address: `${c.ip6}/64`, interface: 2 },
        ],
      };
    },
    cleanup() {
      for (const n of [c1.ns, c2.ns, c3.ns, peer, host]) n.cleanup();
    },
  };
  try {
    sh(
      host,
      ["ip", "link", "set", "lo", "up"],
      ["sysctl", "-qw", "net.ipv4.ip_forward=1"],
      ["ip", "link", "add", "hp0", "type", "veth", "peer", "name", "eth0", "netns", peer.name],
      ["ip", "addr", "add", "192.168.79.1/24", "dev", "hp0"],
      ["ip", "link", "set", "hp0", "up"],
    );
    sh(
      peer,
      ["ip", "link", "set", "lo", "up"],
      ["ip", "addr", "add", "192.168.79.2/24", "dev", "eth0"],
      ["ip", "link", "set", "eth0", "up"],
      ["ip", "route", "add", "default", "via", "192.168.79.1"],
    );
    for (const [br, addr] of [
      ["br0", "10.79.0.1/24"],
      ["br1", "10.79.1.1/24"],
    ] as const) {
      sh(
        host,
        ["ip", "link", "add", br, "type", "bridge"],
        ["ip", "addr", "add", addr, "dev", br],
        ["ip", "link", "set", br, "up"],
      );
    }
    for (const c of [c1, c2, c3]) {
      sh(
        host,
        ["ip", "link", "add", c.port, "type", "veth", "peer", "name", "eth0", "netns", c.ns.name],
        ["ip", "link", "set", c.port, "master", c.bridge, "up"],
      );
      sh(
        c.ns,
        ["ip", "link", "set", "lo", "up"],
        ["ip", "addr", "add", `${c.ip}/24`, "dev", "eth0"],
        ["ip", "link", "set", "eth0", "up"],
        ["ip", "route", "add", "default", "via", c.ip.replace(/\.\d+$/, ".1")],
      );
    }
  } catch (err) {
    net.cleanup();
    throw err;
  }
  return net;
}

export interface FwRunOptions {
  id?: string;
  ifName?: string;
  /** Ours by default; an absolute path runs that executable (upstream's /usr/lib/cni/firewall). */
  plugin?: string;
  env?: Record<string, string>;
}

/** Runs the firewall plugin in the net's host netns. */
export function fw(
  net: FwNet,
  verb: string,
  conf: object,
  c: FwContainer | undefined,
  o: FwRunOptions = {},
): Promise<RunPluginResult> {
  return runPlugin({
    plugin: o.plugin ?? "firewall",
    hostNetns: net.host.name,
    env: {
      CNI_COMMAND: verb,
      CNI_CONTAINERID: o.id ?? "ctr1",
      CNI_NETNS: c?.ns.path ?? "",
      CNI_IFNAME: o.ifName ?? "eth0",
      // No system bus: the default backend is iptables, never the machine's firewalld.
      DBUS_SYSTEM_BUS_ADDRESS: "unix:path=/nonexistent/tscni-test-bus",
      ...o.env,
    },
    config: conf,
  });
}

/** The rules of table filter (`iptables-save -t filter`, counters dropped) in the host netns. */
export function filterRules(net: FwNet, family: 4 | 6 = 4): string[] {
  const r = net.host.run([family === 4 ? "iptables-save" : "ip6tables-save", "-t", "filter"]);
  if (r.code !== 0) throw new Error(r.stderr);
  return r.stdout
    .split("\n")
    .filter((l) => l.startsWith("-A ") || l.startsWith(":"))
    .map((l) => l.replace(/ \[\d+:\d+\]$/, ""));
}

// biome-ignore lint/suspicious/noExplicitAny: parsed `nft -j` output
export function nftRuleset(net: FwNet): any[] {
  const r = net.host.run(["nft", "-j", "list", "ruleset"]);
  if (r.code !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout).nftables;
}
