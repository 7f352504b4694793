/**
 * Sub-interfaces of a master link given to a container (upstream's createVlan/createIpvlan/
 * createMacvlan): made from the master's netns (the host's, or the container's with linkInContainer)
 * under a temporary name straight into the container netns (IFLA_NET_NS_FD: it never exists in the host
 * netns under a name that could clash), then renamed to CNI_IFNAME there. The undo step deletes it.
 */
import { type Link, linkAdd, linkByIndex, linkByName, linkDel, linkSetName } from "../netlink/link.ts";
import type { LinkSpec } from "../netlink/link-kinds.ts";
import { routeList } from "../netlink/route.ts";
import type { NetlinkSocket } from "../netlink/socket.ts";
import { CniError, ErrCode, withContext } from "../spec/errors.ts";
import type { Interface } from "../spec/types.ts";
import { mustLink } from "./attach.ts";
import type { Container } from "./container.ts";
import type { UndoList } from "./undo.ts";
import { randomVethName } from "./veth.ts";

function fail(msg: string): CniError {
  return new CniError(ErrCode.Internal, msg);
}

const step = withContext;

/** Where the master lives: the host netns, or the container's with linkInContainer. */
export function masterSocket(hostSock: NetlinkSocket, c: Container, linkInContainer: boolean): NetlinkSocket {
  return linkInContainer ? c.sock : hostSock;
}

function where(linkInContainer: boolean): string {
  return linkInContainer ? "container netns" : "host netns";
}

/** The master link by name, in the netns of `sock`; a missing one is upstream's "failed to lookup master". */
export function findMaster(sock: NetlinkSocket, master: string, linkInContainer: boolean): Link {
  return mustLink(
    sock,
    master,
    `failed to lookup master ${JSON.stringify(master)} in the ${where(linkInContainer)}`,
  );
}

/** The interface of the first default route (IPv4 first, like upstream's route dump order): the master
 * when the config names none. */
export function defaultRouteLink(sock: NetlinkSocket, linkInContainer: boolean): Link {
  const w = where(linkInContainer);
  let found: Link | undefined;
  try {
    const def = routeList(sock).find((r) => (r.dst === "0.0.0.0/0" || r.dst === "::/0") && r.index);
    if (def?.index) found = linkByIndex(sock, def.index);
  } catch (err) {
    throw CniError.from(err, `looking for the default route interface in the ${w}`);
  }
  if (!found) throw fail(`no default route interface found in the ${w} (set "master")`);
  return found;
}

/** An MTU of 0..master's MTU (upstream's check; 0 is the kernel's default). */
export function checkMtu(mtu: number, master: Link): void {
  if (mtu < 0 || mtu > master.mtu) {
    throw new CniError(
      ErrCode.InvalidNetworkConfig,
      `invalid MTU ${mtu}, must be [0, master MTU(${master.mtu})]`,
    );
  }
}

export interface SubLinkOptions {
  /** The socket of the master's netns (masterSocket). */
  sock: NetlinkSocket;
  container: Container;
  /** CNI_NETNS, recorded as the interface's sandbox. */
  netnsPath: string;
  ifName: string;
  /** What is made, for messages: "vlan", "ipvlan". */
  what: string;
  /** The link to make, given its temporary name; parentIndex is the master's. */
  spec: (name: string) => LinkSpec;
  undo: UndoList;
}

/** Makes the sub-interface in the container under `ifName`; returns it as the result's interface. */
export function createSubLink(o: SubLinkOptions): Interface {
  const tmp = randomVethName();
  const spec = { ...o.spec(tmp), netnsFd: o.container.ns.fd };
  step(`failed to create ${o.what}`, () => linkAdd(o.sock, spec));
  const made = step(`failed to create ${o.what}`, () => linkByName(o.container.sock, tmp));
  if (!made) throw fail(`failed to create ${o.what}: ${tmp} not found in the container`);
  o.undo.push({ what: `deleting ${o.what} ${tmp}`, run: () => linkDel(o.container.sock, made.index) });
  step(`failed to rename ${o.what} to ${JSON.stringify(o.ifName)}`, () =>
    linkSetName(o.container.sock, made.index, o.ifName),
  );
  const link = mustLink(
    o.container.sock,
    o.ifName,
    `failed to refetch ${o.what} ${JSON.stringify(o.ifName)}`,
  );
  return { name: o.ifName, mac: link.mac, sandbox: o.netnsPath };
}
