/**
 * ptp's kernel work (upstream plugins/main/ptp setupContainerVeth / setupHostVeth). The container end gets
 * the IPAM addresses, but the on-link prefix route is replaced by a host route to the gateway and a route
 * to the prefix via that gateway: everything leaves through the host veth, which holds the gateway as a
 * /32 (/128), and the host reaches each container address through a /32 (/128) route on the host veth.
 */

import type { Container } from "../../../ip/container.ts";
import { configureIface, parseNet } from "../../../ip/iface.ts";
import type { UndoList } from "../../../ip/undo.ts";
import { delLinkByName, setupVeth, type VethPair } from "../../../ip/veth.ts";
import { addrAdd } from "../../../netlink/addr.ts";
import { routeAdd, routeDel } from "../../../netlink/route.ts";
import type { NetlinkSocket } from "../../../netlink/socket.ts";
import { sysctlGet, sysctlSet } from "../../../netlink/sysctl.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import type { Result } from "../../../spec/types.ts";
import { isErrno } from "../../../sys/errno.ts";

/** Runs a kernel call; its SysError (which names the operation) becomes a CniError. */
function kernel<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw CniError.from(err);
  }
}

/** One container address with what ptp derives from it. */
export interface PtpAddr {
  family: 4 | 6;
  /** "10.1.1.5" */
  ip: string;
  /** "10.1.1.0/24" */
  network: string;
  gateway: string;
  /** 32 or 128 */
  hostBits: number;
}

/** The result's addresses; ptp routes everything via the gateway, so each needs one. */
export function ptpAddrs(result: Result): PtpAddr[] {
  return (result.ips ?? []).map((ipc) => {
    const n = parseNet(ipc.address);
    if (!n) throw new CniError(ErrCode.Internal, `ptp: invalid IPAM address ${JSON.stringify(ipc.address)}`);
    if (!ipc.gateway) {
      throw new CniError(
        ErrCode.Internal,
        `ptp: IPAM address ${ipc.address} has no gateway to route through`,
      );
    }
    return {
      family: n.family,
      ip: n.ip,
      network: n.network,
      gateway: ipc.gateway,
      hostBits: n.family === 4 ? 32 : 128,
    };
  });
}

/** Turns on forwarding in the host netns for the families in use (upstream ip.EnableForward). */
export function enableForward(addrs: readonly PtpAddr[]): void {
  const keys = new Set(
    addrs.map((a) => (a.family === 4 ? "net.ipv4.ip_forward" : "net.ipv6.conf.all.forwarding")),
  );
  for (const key of keys) {
    try {
      if (sysctlGet(key) === "1") continue;
      sysctlSet(key, 1);
    } catch (err) {
      throw CniError.from(err, "Could not enable IP forwarding");
    }
  }
}

export interface ContainerSetup {
  hostSock: NetlinkSocket;
  container: Container;
  ifName: string;
  mtu: number;
  result: Result;
  addrs: readonly PtpAddr[];
  undo: UndoList;
}

/**
 * Makes the veth pair, fills in result.interfaces ([host veth, container iface]) and points every IP at
 * the container iface, configures it, then swaps each on-link prefix route for the gateway routes.
 */
export async function setupContainerVeth(o: ContainerSetup): Promise<VethPair> {
  const { container, ifName, result } = o;
  const veth = setupVeth({
    hostSock: o.hostSock,
    contNs: container.ns,
    contSock: container.sock,
    contIfName: ifName,
    mtu: o.mtu || undefined,
  });
  o.undo.push({
    what: `deleting veth ${veth.host.name}`,
    run: () => delLinkByName(o.hostSock, veth.host.name),
  });
  result.interfaces = [
    { name: veth.host.name, mac: veth.host.mac },
    { name: veth.cont.name, mac: veth.cont.mac, sandbox: container.ns.path },
  ];
  for (const ipc of result.ips ?? []) ipc.interface = 1;

  await configureIface(container.sock, container.ns, ifName, result);

  const sock = container.sock;
  const index = veth.cont.index;
  for (const a of o.addrs) {
    try {
      routeDel(sock, { dst: a.network, index, devName: ifName });
    } catch (err) {
      // A full-length prefix (/32, /128) has no on-link route to remove.
      if (!isErrno(err, "ESRCH")) throw CniError.from(err);
    }
    kernel(() =>
      routeAdd(sock, { dst: `${a.gateway}/${a.hostBits}`, index, devName: ifName, scope: "link", src: a.ip }),
    );
    kernel(() => routeAdd(sock, { dst: a.network, gw: a.gateway, index, devName: ifName, src: a.ip }));
  }
  return veth;
}

/** The gateway addresses on the host veth and a host route to each container address through it. */
export function setupHostVeth(hostSock: NetlinkSocket, veth: VethPair, addrs: readonly PtpAddr[]): void {
  const { index, name } = veth.host;
  for (const a of addrs) {
    kernel(() =>
      addrAdd(hostSock, {
        index,
        devName: name,
        address: `${a.gateway}/${a.hostBits}`,
        // Every ptp host veth holds the same gateway address on its own point-to-point link: no
        // duplicate detection, so IPv6 works at once instead of after DAD's second.
        flags: a.family === 6 ? { nodad: true } : undefined,
      }),
    );
    try {
      routeAdd(hostSock, { dst: `${a.ip}/${a.hostBits}`, index, devName: name, scope: "host" });
    } catch (err) {
      if (!isErrno(err, "EEXIST")) throw CniError.from(err, "failed to add route on host");
    }
  }
}
