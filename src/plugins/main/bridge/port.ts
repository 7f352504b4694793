/**
 * The host veth as a bridge port (upstream setupVeth's second half): hairpin and isolation flags, the
 * access VLAN (PVID, egress untagged) and tagged trunk VLANs, and dropping the bridge's default VLAN
 * when preserveDefaultVlan is false. Also the VLAN gateway interface ("<bridge>.<vlan>") that carries
 * the gateway addresses when isGateway and vlan are combined (upstream ensureVlanInterface).
 */

import { delLinkByName, setupVeth } from "../../../ip/veth.ts";
import { type Link, linkByName } from "../../../netlink/link.ts";
import { bridgePortSet, bridgeVlanAdd, bridgeVlanDel } from "../../../netlink/link-bridge.ts";
import type { NetlinkSocket } from "../../../netlink/socket.ts";
import type { NetNS } from "../../../ns/index.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import { isErrno } from "../../../sys/errno.ts";
import { vlanError } from "./bridge.ts";

export interface PortOptions {
  hairpin: boolean;
  isolated: boolean;
  /** Access VLAN, 0 for none. */
  vlan: number;
  /** Tagged VIDs. */
  trunk: readonly number[];
  preserveDefaultVlan: boolean;
}

/** Applies port flags and VLANs to the bridge port `port` of bridge `br`. */
export function configurePort(
  sock: NetlinkSocket,
  br: Link,
  port: { index: number; name: string },
  o: PortOptions,
): void {
  if (o.hairpin || o.isolated) {
    try {
      bridgePortSet(sock, port.index, {
        ...(o.hairpin ? { hairpin: true } : {}),
        ...(o.isolated ? { isolated: true } : {}),
      });
    } catch (err) {
      throw CniError.from(err, `failed to set hairpin/isolation on ${port.name}`);
    }
  }
  if (o.vlan === 0 && o.trunk.length === 0) return;
  // A new port of a VLAN-filtering bridge gets the bridge's default PVID (1 unless changed).
  const defaultPvid = br.info?.kind === "bridge" ? br.info.defaultPvid : 1;
  if (!o.preserveDefaultVlan && defaultPvid !== 0 && defaultPvid !== o.vlan) {
    try {
      bridgeVlanDel(sock, port.index, { vid: defaultPvid, master: true });
    } catch (err) {
      if (!isErrno(err, "ENOENT")) {
        throw vlanError(err, `failed to remove default vlan on interface "${port.name}"`);
      }
    }
  }
  try {
    if (o.vlan !== 0)
      bridgeVlanAdd(sock, port.index, { vid: o.vlan, pvid: true, untagged: true, master: true });
    for (const vid of o.trunk) bridgeVlanAdd(sock, port.index, { vid, master: true });
  } catch (err) {
    throw vlanError(err, `failed to setup vlan tag on interface "${port.name}"`);
  }
}

export interface VlanGatewayOptions {
  hostSock: NetlinkSocket;
  /** The host netns: both ends of the gateway veth live there. */
  hostNs: NetNS;
  br: Link;
  vlan: number;
  preserveDefaultVlan: boolean;
}

/**
 * The interface "<bridge>.<vlan>" that holds the gateway addresses of a VLAN network: one end of a
 * veth whose other end is an access port of `vlan` on the bridge. Created once and shared by every
 * container of the VLAN; a concurrent ADD creating it first counts as success.
 */
export function ensureVlanGateway(o: VlanGatewayOptions): Link {
  const name = `${o.br.name}.${o.vlan}`;
  if (new TextEncoder().encode(name).byteLength > 15) {
    throw new CniError(ErrCode.InvalidNetworkConfig, `vlan gateway interface name ${name} is too long`);
  }
  const existing = linkByName(o.hostSock, name);
  if (existing) return existing;
  try {
    const pair = setupVeth({
      hostSock: o.hostSock,
      contNs: o.hostNs,
      contSock: o.hostSock,
      contIfName: name,
      hostMasterIndex: o.br.index,
      ...(o.br.mtu ? { mtu: o.br.mtu } : {}),
    });
    try {
      configurePort(o.hostSock, o.br, pair.host, {
        hairpin: false,
        isolated: false,
        vlan: o.vlan,
        trunk: [],
        preserveDefaultVlan: o.preserveDefaultVlan,
      });
    } catch (err) {
      delLinkByName(o.hostSock, pair.host.name);
      throw err;
    }
  } catch (err) {
    // Another ADD of the same VLAN made it meanwhile.
    const raced = linkByName(o.hostSock, name);
    if (raced) return raced;
    throw CniError.from(err, `failed to create vlan gateway "${name}"`);
  }
  const made = linkByName(o.hostSock, name);
  if (!made) throw new CniError(ErrCode.Internal, `vlan gateway "${name}" vanished after creation`);
  return made;
}
