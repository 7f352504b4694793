/** Link kinds: the typed specs `linkAdd` takes and their RTM_NEWLINK (IFLA_LINKINFO) encoding. */
import { type Attr, attr, encodeAttrs, isIPv6 } from "./codec.ts";
import * as K from "./link-consts.ts";

// ---- specs ----

/** Attributes every kind accepts at creation. */
export interface LinkCommon {
  name: string;
  mtu?: number;
  mac?: string;
  txqlen?: number;
  /** ifindex of a bridge (or other master) to enslave the new link to. */
  masterIndex?: number;
  /** Create the link straight inside this netns (an fd, e.g. NetNS.fd). */
  netnsFd?: number;
  alias?: string;
  up?: boolean;
}

export interface VethSpec extends LinkCommon {
  kind: "veth";
  peerName: string;
  /** The peer is created directly in this netns (fd); otherwise next to the first end. */
  peerNetnsFd?: number;
  peerMac?: string;
  /** Defaults to `mtu`. */
  peerMtu?: number;
}

export interface BridgeSpec extends LinkCommon {
  kind: "bridge";
  vlanFiltering?: boolean;
  defaultPvid?: number;
}

export type MacvlanMode = "private" | "vepa" | "bridge" | "passthru" | "source";

export interface MacvlanSpec extends LinkCommon {
  kind: "macvlan" | "macvtap";
  /** ifindex of the lower device, in the socket's netns. */
  parentIndex: number;
  /** Kernel default when omitted: vepa. */
  mode?: MacvlanMode;
  /** Length of the broadcast/multicast queue (kernel ≥ 5.11; default 1000); 0 or omitted: the default. */
  bcQueueLen?: number;
}

export type IpvlanMode = "l2" | "l3" | "l3s";
export type IpvlanFlag = "bridge" | "private" | "vepa";

export interface IpvlanSpec extends LinkCommon {
  kind: "ipvlan";
  parentIndex: number;
  /** Kernel default when omitted: l3. */
  mode?: IpvlanMode;
  flags?: IpvlanFlag;
}

export interface VlanSpec extends LinkCommon {
  kind: "vlan";
  parentIndex: number;
  vlanId: number;
  protocol?: "802.1Q" | "802.1ad";
}

export interface VxlanSpec extends LinkCommon {
  kind: "vxlan";
  vni: number;
  /** UDP destination port; the kernel's default is 8472. */
  port?: number;
  group?: string;
  local?: string;
  /** Underlay device (IFLA_VXLAN_LINK). */
  parentIndex?: number;
  learning?: boolean;
  ttl?: number;
}

export interface TuntapSpec extends LinkCommon {
  kind: "tuntap";
  mode: "tun" | "tap";
  owner?: number;
  group?: number;
  multiQueue?: boolean;
  vnetHdr?: boolean;
  /** Prepend packet information (IFF_NO_PI unset); default false. */
  pi?: boolean;
}

export interface VrfSpec extends LinkCommon {
  kind: "vrf";
  table: number;
}

export interface SimpleSpec extends LinkCommon {
  kind: "dummy" | "ifb";
}

/** What `linkAdd` creates. Tun/tap links are always persistent (they outlive the creating fd). */
export type LinkSpec =
  | VethSpec
  | BridgeSpec
  | MacvlanSpec
  | IpvlanSpec
  | VlanSpec
  | VxlanSpec
  | TuntapSpec
  | VrfSpec
  | SimpleSpec;

export type LinkKind = LinkSpec["kind"];

export const MACVLAN_MODES: Record<MacvlanMode, number> = {
  private: 1,
  vepa: 2,
  bridge: 4,
  passthru: 8,
  source: 16,
};
export const IPVLAN_MODES: Record<IpvlanMode, number> = { l2: 0, l3: 1, l3s: 2 };
export const IPVLAN_FLAGS: Record<IpvlanFlag, number> = { bridge: 0, private: 1, vepa: 2 };
export const VLAN_PROTOCOLS = { "802.1Q": 0x8100, "802.1ad": 0x88a8 } as const;

export function nameOf<K extends string>(table: Record<K, number>, value: number, fallback: K): K {
  for (const [k, v] of Object.entries(table) as [K, number][]) if (v === value) return k;
  return fallback;
}

/** The kernel's IFLA_INFO_KIND for a spec kind (tun/tap links are "tun"). */
export function kernelKind(kind: LinkKind): string {
  return kind === "tuntap" ? "tun" : kind;
}

/** Top-level attributes shared by a link and (for veth) its peer. */
export function commonAttrs(c: {
  name: string;
  mtu?: number;
  mac?: string;
  txqlen?: number;
  netnsFd?: number;
}): Attr[] {
  const out: Attr[] = [attr.str(K.IFLA_IFNAME, c.name)];
  if (c.mtu !== undefined) out.push(attr.u32(K.IFLA_MTU, c.mtu));
  if (c.mac !== undefined) out.push(attr.mac(K.IFLA_ADDRESS, c.mac));
  if (c.txqlen !== undefined) out.push(attr.u32(K.IFLA_TXQLEN, c.txqlen));
  if (c.netnsFd !== undefined) out.push(attr.u32(K.IFLA_NET_NS_FD, c.netnsFd));
  return out;
}

/** The RTM_NEWLINK attributes a spec adds besides the common ones: IFLA_LINK and IFLA_LINKINFO. */
export function kindAttrs(spec: Exclude<LinkSpec, TuntapSpec>): Attr[] {
  const out: Attr[] = [];
  const data: Attr[] = [];
  switch (spec.kind) {
    case "veth": {
      const peer = commonAttrs({
        name: spec.peerName,
        mtu: spec.peerMtu ?? spec.mtu,
        mac: spec.peerMac,
        txqlen: spec.txqlen,
        netnsFd: spec.peerNetnsFd,
      });
      // VETH_INFO_PEER carries a whole ifinfomsg + attributes, like a nested RTM_NEWLINK body.
      const header = K.ifinfomsg();
      const attrs = encodeAttrs(peer);
      const body = new Uint8Array(header.byteLength + attrs.byteLength);
      body.set(header);
      body.set(attrs, header.byteLength);
      data.push(attr.bytes(K.VETH_INFO_PEER, body));
      break;
    }
    case "bridge":
      // Off is the default; not sending it keeps plain bridges working on kernels without
      // CONFIG_BRIDGE_VLAN_FILTERING, which reject the attribute even when it says 0.
      if (spec.vlanFiltering) data.push(attr.u8(K.IFLA_BR_VLAN_FILTERING, 1));
      if (spec.defaultPvid !== undefined) data.push(attr.u16(K.IFLA_BR_VLAN_DEFAULT_PVID, spec.defaultPvid));
      break;
    case "macvlan":
    case "macvtap":
      out.push(attr.u32(K.IFLA_LINK, spec.parentIndex));
      if (spec.mode) data.push(attr.u32(K.IFLA_MACVLAN_MODE, MACVLAN_MODES[spec.mode]));
      if (spec.bcQueueLen) data.push(attr.u32(K.IFLA_MACVLAN_BC_QUEUE_LEN, spec.bcQueueLen));
      break;
    case "ipvlan":
      out.push(attr.u32(K.IFLA_LINK, spec.parentIndex));
      if (spec.mode) data.push(attr.u16(K.IFLA_IPVLAN_MODE, IPVLAN_MODES[spec.mode]));
      if (spec.flags) data.push(attr.u16(K.IFLA_IPVLAN_FLAGS, IPVLAN_FLAGS[spec.flags]));
      break;
    case "vlan":
      out.push(attr.u32(K.IFLA_LINK, spec.parentIndex));
      data.push(attr.u16(K.IFLA_VLAN_ID, spec.vlanId));
      if (spec.protocol) data.push(attr.be16(K.IFLA_VLAN_PROTOCOL, VLAN_PROTOCOLS[spec.protocol]));
      break;
    case "vxlan":
      data.push(attr.u32(K.IFLA_VXLAN_ID, spec.vni));
      if (spec.group)
        data.push(attr.ip(isIPv6(spec.group) ? K.IFLA_VXLAN_GROUP6 : K.IFLA_VXLAN_GROUP, spec.group));
      if (spec.local)
        data.push(attr.ip(isIPv6(spec.local) ? K.IFLA_VXLAN_LOCAL6 : K.IFLA_VXLAN_LOCAL, spec.local));
      if (spec.parentIndex !== undefined) data.push(attr.u32(K.IFLA_VXLAN_LINK, spec.parentIndex));
      if (spec.port !== undefined) data.push(attr.be16(K.IFLA_VXLAN_PORT, spec.port));
      if (spec.learning !== undefined) data.push(attr.u8(K.IFLA_VXLAN_LEARNING, +spec.learning));
      if (spec.ttl !== undefined) data.push(attr.u8(K.IFLA_VXLAN_TTL, spec.ttl));
      break;
    case "vrf":
      data.push(attr.u32(K.IFLA_VRF_TABLE, spec.table));
      break;
    case "dummy":
    case "ifb":
      break;
  }
  const info: Attr[] = [attr.str(K.IFLA_INFO_KIND, spec.kind)];
  if (data.length) info.push(attr.nested(K.IFLA_INFO_DATA, data));
  out.push(attr.nested(K.IFLA_LINKINFO, info));
  return out;
}
