/**
 * Veth pairs for plugins (upstream pkg/ip SetupVeth/DelLinkByName). Unlike upstream, which enters the
 * container netns and pushes the host end out, the pair is made in one RTM_NEWLINK from the host socket
 * with the container end created straight inside the container netns (IFLA_NET_NS_FD on the peer):
 * no setns, and the container end never exists in the host netns, so it never clashes with host names.
 */
import { type Link, linkAdd, linkByName, linkDel, linkSet, linkSetUp } from "../netlink/link.ts";
import type { NetlinkSocket } from "../netlink/socket.ts";
import { sysctlSet, sysctlSetIn } from "../netlink/sysctl.ts";
import type { NetNS } from "../ns/index.ts";
import { CniError, ErrCode } from "../spec/errors.ts";
import { isErrno, SysError } from "../sys/errno.ts";

/** "veth" + 8 hex chars, like upstream (NetworkManager ignores devices named veth*). */
export function randomVethName(): string {
  return `veth${Buffer.from(crypto.getRandomValues(new Uint8Array(4))).toString("hex")}`;
}

export interface VethEnd {
  name: string;
  index: number;
  mac: string;
}

export interface VethPair {
  host: VethEnd;
  cont: VethEnd;
}

export interface SetupVethOptions {
  /** Socket in the host netns (where the host end goes). */
  hostSock: NetlinkSocket;
  /** The container netns (its fd puts the container end there at creation). */
  contNs: NetNS;
  /** Socket inside the container netns. */
  contSock: NetlinkSocket;
  contIfName: string;
  /** Fixed host end name; a random veth name (retried on clashes) when left out. */
  hostIfName?: string;
  mtu?: number;
  contMac?: string;
  /** Enslave the host end to this master (bridge) before bringing it up. */
  hostMasterIndex?: number;
  /** The host netns, for the host end's sysctls; default the current thread's (the plugin's). */
  hostNs?: NetNS;
}

/** Upstream tries 10 random names before giving up. */
const NAME_ATTEMPTS = 10;

/**
 * Creates the pair, sets mtu on both ends and `contMac` on the container end, enslaves the host end to
 * `hostMasterIndex` when given, and brings both ends up. Nothing is left behind when a step fails.
 */
export function setupVeth(o: SetupVethOptions): VethPair {
  for (let attempt = 0; attempt < NAME_ATTEMPTS; attempt++) {
    const hostName = o.hostIfName ?? randomVethName();
    const op = `adding veth ${o.contIfName} → ${hostName}`;
    let host: Link | undefined;
    try {
      host = linkAdd(o.hostSock, {
        kind: "veth",
        name: hostName,
        mtu: o.mtu,
        masterIndex: o.hostMasterIndex,
        peerName: o.contIfName,
        peerNetnsFd: o.contNs.fd,
        peerMac: o.contMac,
        // Both ends without a queue (txqlen 0), as upstream's veths: a veth hands packets straight to
        // its peer, and bandwidth's ifb copies this value.
        txqlen: 0,
      });
    } catch (err) {
      if (isErrno(err, "EEXIST")) {
        // The kernel says EEXIST for either end: retry only when the random host name is the one taken.
        if (o.hostIfName === undefined && linkByName(o.hostSock, hostName)) continue;
        const which = linkByName(o.contSock, o.contIfName)
          ? `container veth name provided (${o.contIfName}) already exists`
          : `host veth name ${hostName} already exists`;
        throw new CniError(ErrCode.Internal, `${op}: ${kernelText(err)}: ${which}`);
      }
      throw new CniError(ErrCode.Internal, `${op}: ${kernelText(err)}`);
    }
    try {
      return finishVeth(o, hostName, host);
    } catch (err) {
      // Deleting one end deletes both.
      delLinkByName(o.hostSock, hostName);
      throw err;
    }
  }
  throw new CniError(ErrCode.Internal, `adding veth ${o.contIfName}: failed to find a unique veth name`);
}

function finishVeth(o: SetupVethOptions, hostName: string, created: Link | undefined): VethPair {
  const step = <T>(what: string, fn: () => T): T => {
    try {
      return fn();
    } catch (err) {
      throw CniError.from(err, what);
    }
  };
  // We own the routes of the host end: router advertisements must not add any (as upstream).
  const key = `net/ipv6/conf/${hostName}/accept_ra`;
  try {
    if (o.hostNs) sysctlSetIn(o.hostNs, key, 0);
    else sysctlSet(key, 0);
  } catch {
    // IPv6 disabled on the host: nothing to turn off.
  }
  step(`setting veth ${hostName} up`, () => linkSetUp(o.hostSock, hostName));
  step(`setting veth ${o.contIfName} up`, () => linkSet(o.contSock, o.contIfName, { up: true }));
  // The creation's echo already names the host end (index and MAC do not change with "up").
  const host = created ?? step(`looking up veth ${hostName}`, () => linkByName(o.hostSock, hostName));
  const cont = step(`looking up veth ${o.contIfName}`, () => linkByName(o.contSock, o.contIfName));
  if (!host || !cont) {
    throw new CniError(ErrCode.Internal, `veth ${o.contIfName} → ${hostName} vanished after creation`);
  }
  return {
    host: { name: host.name, index: host.index, mac: host.mac },
    cont: { name: cont.name, index: cont.index, mac: cont.mac },
  };
}

/** The kernel's part of an error ("EEXIST (file exists)"), without linkAdd's own operation prefix. */
function kernelText(err: unknown): string {
  if (err instanceof SysError) return err.message.slice(err.op.length + 2);
  return err instanceof Error ? err.message : String(err);
}

/** Deletes the link `name`; false when it does not exist (for idempotent DEL). */
export function delLinkByName(sock: NetlinkSocket, name: string): boolean {
  const op = `deleting link ${name}`;
  try {
    if (!linkByName(sock, name)) return false;
    linkDel(sock, name);
    return true;
  } catch (err) {
    if (isErrno(err, "ENODEV")) return false;
    throw CniError.from(err, op);
  }
}

/**
 * The host-side ifindex of the container's veth `contIfName`: the container end's IFLA_LINK names its
 * peer's index in the peer's netns. Undefined when the link is missing or not a veth.
 */
export function hostVethPeerIndex(contSock: NetlinkSocket, contIfName: string): number | undefined {
  let link: Link | undefined;
  try {
    link = linkByName(contSock, contIfName);
  } catch (err) {
    throw CniError.from(err, `looking up veth ${contIfName}`);
  }
  if (link?.kind !== "veth") return undefined;
  return link.parentIndex;
}
