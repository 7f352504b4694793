/**
 * The host side of the bridge plugin: make sure the bridge exists and is up (upstream ensureBridge),
 * put the gateway addresses on it (ensureAddr), and turn forwarding on. Everything runs through the
 * host netns socket; sysctls are written in the plugin's own (host) netns.
 */
import { type AddrInfo, addrAdd, addrDel, addrList } from "../../../netlink/addr.ts";
import { type Link, linkAdd, linkByIndex, linkByName, linkSet } from "../../../netlink/link.ts";
import { bridgeSetOptions } from "../../../netlink/link-bridge.ts";
import type { NetlinkSocket } from "../../../netlink/socket.ts";
import { sysctlGet, sysctlSet } from "../../../netlink/sysctl.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import { formatIP, type IPBytes, parseCIDR, parseIP, toIPv4 } from "../../../spec/ipaddr.ts";
import { isErrno } from "../../../sys/errno.ts";

export interface EnsureBridgeOptions {
  name: string;
  /** 0: kernel default. Only applied when the bridge is created (like upstream). */
  mtu: number;
  promisc: boolean;
  vlanFiltering: boolean;
}

/** Wraps "the kernel lacks bridge VLAN filtering" into an error that says which option needs it. */
export function vlanError(err: unknown, what: string): CniError {
  if (isErrno(err, "EOPNOTSUPP")) {
    return new CniError(
      ErrCode.InvalidNetworkConfig,
      `${what}: the kernel lacks bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING), which vlan and vlanTrunk need`,
    );
  }
  return CniError.from(err, what);
}

function step<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw CniError.from(err, what);
  }
}

/**
 * Returns the bridge `name`, creating it when missing. A concurrent ADD creating it first (EEXIST) is
 * success: the link is read back. An existing link that is not a bridge is an error. The bridge ends up
 * up, promiscuous when asked, VLAN-filtering when a VLAN option needs it, and without IPv6 router
 * advertisements (we own its routes).
 */
export function ensureBridge(sock: NetlinkSocket, o: EnsureBridgeOptions): Link {
  const ctx = `failed to create bridge "${o.name}"`;
  let br = step(ctx, () => linkByName(sock, o.name));
  if (!br) {
    try {
      br = linkAdd(sock, {
        kind: "bridge",
        name: o.name,
        ...(o.mtu ? { mtu: o.mtu } : {}),
        ...(o.vlanFiltering ? { vlanFiltering: true } : {}),
        up: true,
      });
    } catch (err) {
      if (o.vlanFiltering && isErrno(err, "EOPNOTSUPP")) throw vlanError(err, ctx);
      if (!isErrno(err, "EEXIST")) throw CniError.from(err, ctx);
    }
    br ??= step(ctx, () => linkByName(sock, o.name));
    if (!br) throw new CniError(ErrCode.Internal, `${ctx}: bridge vanished right after creation`);
  }
  if (br.kind !== "bridge") {
    throw new CniError(ErrCode.Internal, `${ctx}: "${o.name}" already exists but is not a bridge`);
  }
  const index = br.index;
  // An existing bridge made without VLAN filtering would ignore the port VLANs we are about to set.
  if (o.vlanFiltering && br.info?.kind === "bridge" && !br.info.vlanFiltering) {
    try {
      bridgeSetOptions(sock, index, { vlanFiltering: true });
    } catch (err) {
      throw vlanError(err, `${ctx}: turning on vlan_filtering`);
    }
  }
  if (!br.up || (o.promisc && !br.promisc)) {
    step(`${ctx}: setting it up`, () =>
      linkSet(sock, index, { up: true, ...(o.promisc ? { promisc: true } : {}) }),
    );
  }
  try {
    sysctlSet(`net/ipv6/conf/${o.name}/accept_ra`, 0);
  } catch {
    // IPv6 disabled: no router advertisements to ignore.
  }
  return br;
}

/** The gateway address for `cidr` when IPAM gave none: the subnet's first address (upstream calcGatewayIP). */
export function defaultGateway(cidr: string): string {
  const c = parseCIDR(cidr);
  if (!c) throw new CniError(ErrCode.Internal, `invalid address ${JSON.stringify(cidr)} from IPAM`);
  const net = masked(toIPv4(c.ip) ?? c.ip, c.prefix);
  for (let i = net.length - 1; i >= 0; i--) {
    net[i] = (net[i]! + 1) & 0xff;
    if (net[i] !== 0) break;
  }
  return formatIP(net);
}

function masked(ip: IPBytes, prefix: number): Uint8Array {
  const out = new Uint8Array(ip);
  for (let i = 0; i < out.length; i++) {
    const bits = Math.min(8, Math.max(0, prefix - i * 8));
    out[i] = out[i]! & ((0xff << (8 - bits)) & 0xff);
  }
  return out;
}

function contains(net: { ip: IPBytes; prefix: number }, ip: IPBytes): boolean {
  if (net.ip.length !== ip.length) return false;
  const a = masked(net.ip, net.prefix);
  const b = masked(ip, net.prefix);
  return a.every((x, i) => x === b[i]);
}

function canonical(cidr: string): string {
  const c = parseCIDR(cidr);
  return c ? `${formatIP(c.ip)}/${c.prefix}` : cidr;
}

/**
 * Puts the gateway `cidr` (gateway address with the container subnet's prefix) on `link` unless it is
 * there (upstream ensureAddr). Another IPv4 address, or an overlapping IPv6 one, is an error — or is
 * replaced with forceAddress. Also pins the link's MAC, which a bridge otherwise takes from its
 * lowest-numbered port and changes as ports come and go.
 */
export function ensureGatewayAddr(
  sock: NetlinkSocket,
  link: Link,
  cidr: string,
  forceAddress: boolean,
): void {
  const want = canonical(cidr);
  const c = parseCIDR(want);
  if (!c) throw new CniError(ErrCode.Internal, `invalid gateway address ${cidr}`);
  const family = c.ip.length === 4 ? 4 : 6;
  const have: AddrInfo[] = step(`could not get list of IP addresses of "${link.name}"`, () =>
    addrList(sock, { index: link.index, version: family }),
  );
  for (const a of have) {
    if (canonical(a.address) === want) return;
    const theirs = { ip: parseIP(a.ip)!, prefix: a.prefixLen };
    if (family === 4 || contains(theirs, c.ip) || contains(c, theirs.ip)) {
      if (!forceAddress) {
        throw new CniError(
          ErrCode.Internal,
          `"${link.name}" already has an IP address different from ${want}`,
        );
      }
      step(`could not remove IP address from "${link.name}"`, () =>
        addrDel(sock, { index: link.index, devName: link.name, address: a.address }),
      );
    }
  }
  try {
    // No DAD on the gateway: containers must reach it as soon as ADD returns, and it is ours.
    addrAdd(sock, { index: link.index, devName: link.name, address: want, flags: { nodad: family === 6 } });
  } catch (err) {
    if (!isErrno(err, "EEXIST")) throw CniError.from(err, `could not add IP address to "${link.name}"`);
  }
  // Read it now: a bridge whose last port left has the all-zero MAC, which cannot be set.
  const mac = step(`could not read the MAC of "${link.name}"`, () => linkByIndex(sock, link.index))?.mac;
  if (mac && mac !== "00:00:00:00:00:00") {
    step(`could not set the MAC of "${link.name}"`, () => linkSet(sock, link.index, { mac }));
  }
}

/** Turns on forwarding for the family (upstream EnableIP4Forward / EnableIP6Forward), writing only when off. */
export function enableForwarding(family: 4 | 6): void {
  const key = family === 4 ? "net/ipv4/ip_forward" : "net/ipv6/conf/all/forwarding";
  try {
    if (sysctlGet(key) === "1") return;
    sysctlSet(key, 1);
  } catch (err) {
    // A host with IPv6 disabled has no ipv6 sysctls: nothing to forward.
    if (family === 6 && isErrno(err, "ENOENT")) return;
    throw CniError.from(err, `failed to enable forwarding for IPv${family}`);
  }
}
