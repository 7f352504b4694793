/**
 * A bed for plugins that give the container a sub-interface of a host link (vlan, ipvlan): a throwaway
 * host netns whose `up0` is one end of a veth, the other end (`down0`) in a "wire" netns that plays the
 * rest of the L2 network, and a container netns. The plugin runs as a process in the host netns.
 */
import { makeNetns, type TempNetns, tempDir } from "../../helpers/netns.ts";
import { runIn } from "./link-helpers.ts";

// The `ip -j` views and the store view are link-helpers'; a Bed is a LinkNet with a wire and a container.
export { addrs, links, ping, reservations } from "./link-helpers.ts";

export interface Bed {
  host: TempNetns;
  wire: TempNetns;
  cont: TempNetns;
  dataDir: string;
}

export function sh(n: TempNetns, ...cmd: string[]): void {
  const r = n.run(["ip", ...cmd]);
  if (r.code !== 0) throw new Error(`ip ${cmd.join(" ")} in ${n.name}: ${r.stderr}`);
}

export function bed(prefix: string): Bed {
  const host = makeNetns(`${prefix}h`);
  const wire = makeNetns(`${prefix}w`);
  const cont = makeNetns(`${prefix}c`);
  sh(host, "link", "add", "up0", "type", "veth", "peer", "name", "down0", "netns", wire.name);
  sh(host, "link", "set", "up0", "up");
  sh(wire, "link", "set", "down0", "up");
  return { host, wire, cont, dataDir: tempDir(`tscni-${prefix}-`).path };
}

export function ipam(b: Bed, subnet: string, extra: Record<string, unknown> = {}) {
  return { type: "host-local", dataDir: b.dataDir, ranges: [[{ subnet }]], ...extra };
}

export function run(
  b: Bed,
  plugin: string,
  command: string,
  config: object,
  o: { netns?: string; ifName?: string; id?: string } = {},
) {
  return runIn(b, plugin, command, o.netns ?? b.cont.path, config, { id: o.id, ifName: o.ifName ?? "net1" });
}

export interface IpLinkDetail {
  ifname: string;
  mtu: number;
  address: string;
  flags: string[];
  link_netnsid?: number;
  linkinfo?: { info_kind: string; info_data?: Record<string, unknown> };
}

export function ipLink(n: TempNetns, name: string): IpLinkDetail | undefined {
  return (n.ip("-d", "link", "show") as IpLinkDetail[]).find((l) => l.ifname === name);
}
