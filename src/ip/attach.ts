/**
 * What the plugins that give a container one interface share (macvlan, tap, host-device; ipvlan,
 * vlan and dummy follow the same shape): the MAC with upstream's precedence, the IPAM step with its
 * undo, the prevResult interface for CHECK, and the checks of addresses and routes.
 */
import { ipamAdd, ipamDel } from "../ipam-common/index.ts";
import { type Link, linkByName, linkSetUp } from "../netlink/link.ts";
import type { NetlinkSocket } from "../netlink/socket.ts";
import { sysctlSetIn } from "../netlink/sysctl.ts";
import type { CmdArgs } from "../skel/types.ts";
import { CniError, ErrCode } from "../spec/errors.ts";
import type { Interface, Result } from "../spec/types.ts";
import type { Container } from "./container.ts";
import { checkIfaceIPs, checkRoutes, configureIface } from "./iface.ts";
import { normalizeMac } from "./mac.ts";
import type { UndoList } from "./undo.ts";

function fail(msg: string): CniError {
  return new CniError(ErrCode.Internal, msg);
}

/** Looks `name` up through `sock`; a missing link is a CniError saying `what`. */
export function mustLink(sock: NetlinkSocket, name: string, what: string): Link {
  let link: Link | undefined;
  try {
    link = linkByName(sock, name);
  } catch (err) {
    throw CniError.from(err, what);
  }
  if (!link) throw fail(`${what}: no such link ${JSON.stringify(name)}`);
  return link;
}

export interface IpamStepOptions {
  args: CmdArgs;
  container: Container;
  ifName: string;
  /** The interface the addresses go on, as result.interfaces[0]. */
  iface: Interface;
  /** sysctls set best-effort in the container before the addresses ("net/ipv4/conf/eth0/arp_notify"). */
  sysctls?: string[];
  undo: UndoList;
}

/**
 * IPAM ADD and its rollback, then the addresses and routes on the one container interface (upstream
 * ipam.ExecAdd + ConfigureIface). The result holds IPAM's IPs (interface 0) and routes, not its DNS.
 */
export async function ipamOnIface(o: IpamStepOptions): Promise<Result> {
  const ipam = await ipamAdd(o.args);
  o.undo.push({ what: "releasing the IPAM reservation", run: () => ipamDel(o.args) });
  if (!ipam.ips?.length) throw fail("IPAM plugin returned missing IP config");
  const result: Result = {
    cniVersion: "1.1.0",
    interfaces: [o.iface],
    ips: ipam.ips.map((ipc) => ({ ...ipc, interface: 0 })),
  };
  if (ipam.routes?.length) result.routes = ipam.routes;
  setSysctlsBestEffort(o.container, o.sysctls ?? []);
  await configureIface(o.container.sock, o.container.ns, o.ifName, result);
  return result;
}

/** The sysctls that make the kernel announce a new interface's addresses on a shared L2 (upstream's
 * macvlan and ipvlan set them): gratuitous ARP and unsolicited neighbour advertisements. */
export function announceSysctls(ifName: string): string[] {
  return [`net/ipv4/conf/${ifName}/arp_notify`, `net/ipv6/conf/${ifName}/ndisc_notify`];
}

/** Sets each sysctl to 1 in the container, best effort as upstream (IPv6 may be off there). */
export function setSysctlsBestEffort(c: Container, keys: readonly string[]): void {
  for (const key of keys) {
    try {
      sysctlSetIn(c.ns, key, 1);
    } catch {
      // a key the container's kernel state lacks is not an error
    }
  }
}

/** An interface left without addresses (a layer-2 attachment) is still brought up. */
export function setUp(sock: NetlinkSocket, ifName: string): void {
  const link = mustLink(sock, ifName, `failed to find interface name ${JSON.stringify(ifName)}`);
  try {
    linkSetUp(sock, link.index);
  } catch (err) {
    throw CniError.from(err, `failed to set ${JSON.stringify(ifName)} UP`);
  }
}

/** The prevResult a CHECK needs (code 7 when missing, like upstream's error text). */
export function requirePrevResult(prev: Result | undefined): Result {
  if (!prev) throw new CniError(ErrCode.InvalidNetworkConfig, "Required prevResult missing");
  return prev;
}

/** The prevResult interface named CNI_IFNAME in CNI_NETNS. */
export function containerIfaceOf(result: Result, args: CmdArgs): Interface {
  const iface = (result.interfaces ?? []).find((i) => i.name === args.ifName && i.sandbox === args.netns);
  if (!iface) {
    const other = (result.interfaces ?? []).find((i) => i.name === args.ifName);
    throw fail(`Sandbox in prevResult ${other?.sandbox ?? ""} doesn't match configured netns: ${args.netns}`);
  }
  return iface;
}

/** The container link of `rec` exists, with the recorded MAC; returns it. */
export function checkRecordedLink(sock: NetlinkSocket, rec: Interface): Link {
  let link: Link | undefined;
  try {
    link = linkByName(sock, rec.name);
  } catch (err) {
    throw CniError.from(err, `checking ${rec.name}`);
  }
  if (!link) throw fail(`Container Interface name in prevResult: ${rec.name} not found`);
  if (rec.mac && normalizeMac(rec.mac) !== link.mac) {
    throw fail(`Interface ${rec.name} Mac ${rec.mac} doesn't match container Mac: ${link.mac}`);
  }
  return link;
}

/** The prevResult's addresses are on ifName and its routes are in place (upstream ValidateExpected*). */
export function checkAddressesAndRoutes(sock: NetlinkSocket, ifName: string, result: Result): void {
  checkIfaceIPs(sock, ifName, result.ips ?? []);
  checkRoutes(sock, result.routes ?? []);
}
