/**
 * The container side of a plugin call: the netns named by CNI_NETNS, opened once, and a netlink socket
 * bound inside it. Everything in the container is done through that socket; only sysctls enter the netns.
 */
import { NetlinkSocket } from "../netlink/socket.ts";
import { type NetNS, NsNotFoundError, openNetns } from "../ns/index.ts";
import { CniError } from "../spec/errors.ts";
import { delLinkByName } from "./veth.ts";

export interface Container {
  ns: NetNS;
  sock: NetlinkSocket;
}

/**
 * Runs fn with the container netns and a socket inside it, closing both after. A netns that does not
 * exist throws NsNotFoundError ("failed to open netns …", code 999 through skel; DEL treats it as
 * done, like upstream's NSPathNotExistErr); other failures are CniErrors.
 */
export async function withContainer<T>(netnsPath: string, fn: (c: Container) => T | Promise<T>): Promise<T> {
  let ns: NetNS;
  try {
    ns = openNetns(netnsPath);
  } catch (err) {
    if (err instanceof NsNotFoundError) throw err;
    throw CniError.from(err, `failed to open netns ${JSON.stringify(netnsPath)}`);
  }
  try {
    let sock: NetlinkSocket;
    try {
      sock = NetlinkSocket.open({ netnsFd: ns.fd });
    } catch (err) {
      throw CniError.from(err, `opening a netlink socket in netns ${netnsPath}`);
    }
    try {
      return await fn({ ns, sock });
    } finally {
      sock.close();
    }
  } finally {
    ns.close();
  }
}

/** Runs fn with a netlink socket in this process's (the host's) netns, closing it after. */
export async function withHostSocket<T>(fn: (sock: NetlinkSocket) => T | Promise<T>): Promise<T> {
  let sock: NetlinkSocket;
  try {
    sock = NetlinkSocket.open();
  } catch (err) {
    throw CniError.from(err, "opening a netlink socket in the host netns");
  }
  try {
    return await fn(sock);
  } finally {
    sock.close();
  }
}

/**
 * DEL of a plugin's container interface: deletes `ifName` in CNI_NETNS; an empty CNI_NETNS, a netns
 * that is gone and a link that is gone are all done (the runtime may DEL twice, or after the netns).
 */
export async function deleteContainerLink(netnsPath: string, ifName: string, what: string): Promise<void> {
  if (netnsPath === "") return;
  try {
    await withContainer(netnsPath, (c) => {
      try {
        delLinkByName(c.sock, ifName);
      } catch (err) {
        throw CniError.from(err, `deleting ${what} ${ifName}`);
      }
    });
  } catch (err) {
    if (!(err instanceof NsNotFoundError)) throw err;
  }
}
