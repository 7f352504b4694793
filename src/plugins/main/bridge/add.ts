/**
 * The steps of the bridge plugin's ADD (upstream cmdAdd), each taking what the previous ones made.
 * Every step that changes the system pushes its undo, so a failure leaves nothing half-made (the bridge
 * itself stays: other containers may use it).
 */
import { configureIface } from "../../../ip/iface.ts";
import type { UndoList } from "../../../ip/undo.ts";
import { delLinkByName, setupVeth, type VethPair } from "../../../ip/veth.ts";
import { ipamAdd, ipamDel } from "../../../ipam-common/index.ts";
import { type Link, linkByName, linkSet } from "../../../netlink/link.ts";
import type { NetlinkSocket } from "../../../netlink/socket.ts";
import { sysctlSet } from "../../../netlink/sysctl.ts";
import { type NetNS, withNetns } from "../../../ns/index.ts";
import type { CmdArgs } from "../../../skel/types.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import { canonicalCIDR } from "../../../spec/ipaddr.ts";
import { addressFamily } from "../../../spec/result.ts";
import type { Interface, Result, Route } from "../../../spec/types.ts";
import { defaultGateway, enableForwarding, ensureBridge, ensureGatewayAddr } from "./bridge.ts";
import type { BridgeConf } from "./config.ts";
import { configurePort, ensureVlanGateway } from "./port.ts";

/** The open handles an ADD/DEL/CHECK works through. */
export interface Handles {
  hostSock: NetlinkSocket;
  /** The plugin's own (host) netns, for the VLAN gateway veth. */
  hostNs: NetNS;
  contNs: NetNS;
  contSock: NetlinkSocket;
}

/** The container's index in result.interfaces: [bridge, host veth, container]. */
export const CONTAINER_IFACE_INDEX = 2;

export function setupBridge(h: Handles, conf: BridgeConf): Link {
  return ensureBridge(h.hostSock, {
    name: conf.bridge,
    mtu: conf.mtu,
    promisc: conf.promiscMode,
    vlanFiltering: conf.vlanFiltering,
  });
}

/** IPAM ADD; its reservation is released on rollback. Undefined for a layer-2-only network. */
export async function allocate(args: CmdArgs, conf: BridgeConf, undo: UndoList): Promise<Result | undefined> {
  if (!conf.ipamType) return undefined;
  const r = await ipamAdd(args);
  undo.push({ what: "releasing the IPAM reservation", run: () => ipamDel(args) });
  if (!r.ips?.length) throw new CniError(ErrCode.Internal, "IPAM plugin returned missing IP config");
  return r;
}

/** The veth pair, host end enslaved to the bridge with its port flags and VLANs. */
export function plugVeth(h: Handles, args: CmdArgs, conf: BridgeConf, br: Link, undo: UndoList): VethPair {
  const pair = setupVeth({
    hostSock: h.hostSock,
    contNs: h.contNs,
    contSock: h.contSock,
    contIfName: args.ifName,
    hostMasterIndex: br.index,
    ...(conf.mtu ? { mtu: conf.mtu } : {}),
    ...(conf.mac ? { contMac: conf.mac } : {}),
  });
  undo.push({
    what: `deleting veth ${pair.host.name}`,
    run: () => delLinkByName(h.hostSock, pair.host.name),
  });
  configurePort(h.hostSock, br, pair.host, {
    hairpin: conf.hairpinMode,
    isolated: conf.portIsolation,
    vlan: conf.vlan,
    trunk: conf.vlanTrunk,
    preserveDefaultVlan: conf.preserveDefaultVlan,
  });
  if (conf.disableContainerInterface) {
    try {
      linkSet(h.contSock, pair.cont.index, { up: false });
    } catch (err) {
      throw CniError.from(err, `failed to set ${args.ifName} down`);
    }
  }
  return pair;
}

export async function spoofCheck(
  args: CmdArgs,
  conf: BridgeConf,
  pair: VethPair,
  undo: UndoList,
): Promise<void> {
  if (!conf.macSpoofChk) return;
  const owner = { containerID: args.containerID, ifName: args.ifName };
  // The firewall modules load only when a config uses them: they cost start-up time.
  const { setupSpoofCheck, teardownSpoofCheck } = await import("./macspoofchk.ts");
  await setupSpoofCheck({ ...owner, hostIfName: pair.host.name, mac: pair.cont.mac });
  undo.push({ what: "removing the mac spoof check", run: () => teardownSpoofCheck(owner) });
}

export function baseResult(args: CmdArgs, br: Link, pair: VethPair): Result {
  const interfaces: Interface[] = [
    { name: br.name, mac: br.mac },
    { name: pair.host.name, mac: pair.host.mac },
    { name: pair.cont.name, mac: pair.cont.mac, sandbox: args.netns },
  ];
  return { cniVersion: "1.1.0", interfaces };
}

/** Gateways to put on the bridge, per family: "gateway/prefix" of each container address. */
export interface Gateways {
  4: string[];
  6: string[];
}

/**
 * Takes IPAM's addresses, routes and DNS into the result (upstream calcGateways): every address is the
 * container interface's, a missing gateway becomes the subnet's first address when isGateway, and
 * isDefaultGateway adds a default route per family unless IPAM gave one with a gateway.
 */
export function applyIpam(result: Result, ipam: Result, conf: BridgeConf): Gateways {
  const gws: Gateways = { 4: [], 6: [] };
  const routes: Route[] = [...(ipam.routes ?? [])];
  const hasDefault = { 4: false, 6: false };
  for (const r of routes) {
    const dst = canonicalCIDR(r.dst);
    if (r.gw && (dst === "0.0.0.0/0" || dst === "::/0")) hasDefault[addressFamily(r.dst)] = true;
  }
  result.ips = (ipam.ips ?? []).map((ipc) => {
    const family = addressFamily(ipc.address);
    const out = { ...ipc, interface: CONTAINER_IFACE_INDEX };
    if (!out.gateway && conf.isGateway) out.gateway = defaultGateway(ipc.address);
    if (conf.isDefaultGateway && !hasDefault[family]) {
      routes.push({ dst: family === 4 ? "0.0.0.0/0" : "::/0", ...(out.gateway ? { gw: out.gateway } : {}) });
      hasDefault[family] = true;
    }
    if (conf.isGateway && out.gateway) gws[family].push(`${out.gateway}/${ipc.address.split("/")[1]}`);
    return out;
  });
  if (routes.length) result.routes = routes;
  if (ipam.dns) result.dns = ipam.dns;
  return gws;
}

/** The container side: ARP notify and the DAD sysctls like upstream, then addresses, link up, routes. */
export async function configureContainer(
  h: Handles,
  args: CmdArgs,
  conf: BridgeConf,
  result: Result,
): Promise<void> {
  withNetns(h.contNs, () => {
    const set = (key: string, v: number) => {
      try {
        sysctlSet(key, v);
      } catch {
        // best effort, as upstream (e.g. IPv6 disabled in the container)
      }
    };
    // Upstream turns DAD off unless enabledad, whether or not the result has IPv6 addresses.
    if (conf.enableDad) {
      set(`net/ipv6/conf/${args.ifName}/enhanced_dad`, 1);
      set(`net/ipv6/conf/${args.ifName}/accept_dad`, 1);
    } else {
      set(`net/ipv6/conf/${args.ifName}/accept_dad`, 0);
    }
    set(`net/ipv4/conf/${args.ifName}/arp_notify`, 1);
  });
  await configureIface(h.contSock, h.contNs, args.ifName, result);
}

/**
 * The gateway addresses on the bridge — or, for a VLAN network, on its "<bridge>.<vlan>" interface,
 * which then joins the result's interfaces — and forwarding on for each family that has one.
 */
export function setupGateways(h: Handles, conf: BridgeConf, br: Link, gws: Gateways, result: Result): void {
  if (!conf.isGateway) return;
  for (const family of [4, 6] as const) {
    if (gws[family].length === 0) continue;
    let target = br;
    if (conf.vlan !== 0) {
      target = ensureVlanGateway({
        hostSock: h.hostSock,
        hostNs: h.hostNs,
        br,
        vlan: conf.vlan,
        preserveDefaultVlan: conf.preserveDefaultVlan,
      });
      if (!result.interfaces?.some((i) => i.name === target.name)) {
        result.interfaces?.push({ name: target.name, mac: target.mac });
      }
    }
    for (const gw of gws[family]) {
      try {
        ensureGatewayAddr(h.hostSock, target, gw, conf.forceAddress);
      } catch (err) {
        throw CniError.from(
          err,
          conf.vlan ? "failed to set vlan interface for bridge with addr" : "failed to set bridge addr",
        );
      }
    }
    enableForwarding(family);
  }
}

export async function ipMasq(args: CmdArgs, conf: BridgeConf, result: Result, undo: UndoList): Promise<void> {
  if (!conf.ipMasq || !result.ips?.length) return;
  const owner = { network: conf.name, containerID: args.containerID, ifName: args.ifName };
  const ips = result.ips.map((ipc) => ipc.address);
  const { setupIPMasq, teardownIPMasq } = await import("../../../ip/ipmasq.ts");
  await setupIPMasq({ ...owner, backend: conf.ipMasqBackend, ips });
  undo.push({
    what: "removing the ip masquerade",
    run: () => teardownIPMasq({ ...owner, backend: conf.ipMasqBackend, ips }),
  });
}

/** Upstream waits this long (ms, cumulative) for the host veth's bridge port to come up. */
const PORT_WAIT_MS = [0, 50, 500, 1000, 1000];

/**
 * Waits for the host veth to be operationally up, then refreshes the MACs in the result: the host end's
 * may change once up, and the bridge's changes when its first port joins or its address is set.
 */
export async function finish(h: Handles, conf: BridgeConf, pair: VethPair, result: Result): Promise<void> {
  let host: Link | undefined;
  // A container interface left down keeps the port down: nothing to wait for.
  const waits = conf.disableContainerInterface ? [0] : PORT_WAIT_MS;
  for (const [i, ms] of waits.entries()) {
    if (ms) await Bun.sleep(ms);
    host = lookup(h.hostSock, pair.host.name);
    if (host.operstate === "up" || conf.disableContainerInterface) break;
    if (i === waits.length - 1) {
      throw new CniError(ErrCode.Internal, `bridge port in error state: ${host.operstate}`);
    }
  }
  const ifaces = result.interfaces ?? [];
  if (ifaces[1] && host) ifaces[1].mac = host.mac;
  if (ifaces[0]) ifaces[0].mac = lookup(h.hostSock, conf.bridge).mac;
  if (conf.dns) result.dns = conf.dns;
}

function lookup(sock: NetlinkSocket, name: string): Link {
  let link: Link | undefined;
  try {
    link = linkByName(sock, name);
  } catch (err) {
    throw CniError.from(err, `failed to lookup "${name}"`);
  }
  if (!link) throw new CniError(ErrCode.Internal, `failed to lookup "${name}": no such link`);
  return link;
}
