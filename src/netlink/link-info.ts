/**
 * Reading links: the Link the kernel reports (RTM_NEWLINK), its kind-specific data (IFLA_INFO_DATA)
 * and bridge-port data (IFLA_INFO_SLAVE_DATA).
 */
import { bytesToMac, type NlMsg, parseAttrs, read, structView } from "./codec.ts";
import * as K from "./link-consts.ts";
import {
  IPVLAN_FLAGS,
  IPVLAN_MODES,
  type IpvlanFlag,
  type IpvlanMode,
  MACVLAN_MODES,
  type MacvlanMode,
  nameOf,
  VLAN_PROTOCOLS,
} from "./link-kinds.ts";

export type LinkInfo =
  | { kind: "bridge"; vlanFiltering: boolean; defaultPvid: number; stp: boolean; mcastSnooping: boolean }
  | { kind: "macvlan" | "macvtap"; mode: MacvlanMode; bcQueueLen?: number }
  | { kind: "ipvlan"; mode: IpvlanMode; flags: IpvlanFlag }
  | { kind: "vlan"; vlanId: number; protocol: "802.1Q" | "802.1ad" }
  | {
      kind: "vxlan";
      vni: number;
      port: number;
      group?: string;
      local?: string;
      parentIndex?: number;
      learning: boolean;
      ttl: number;
    }
  | {
      kind: "tun";
      mode: "tun" | "tap";
      owner?: number;
      group?: number;
      pi: boolean;
      vnetHdr: boolean;
      persist: boolean;
      multiQueue: boolean;
      numQueues: number;
    }
  | { kind: "vrf"; table: number };

/** Bridge port state and options of a link enslaved to a bridge. */
export interface BridgePortInfo {
  /** STP state: 0 disabled, 1 listening, 2 learning, 3 forwarding, 4 blocking. */
  state: number;
  hairpin: boolean;
  isolated: boolean;
  learning: boolean;
  neighSuppress: boolean;
  unicastFlood: boolean;
  proxyArp: boolean;
}

const flag = (b: Uint8Array | undefined): boolean => b !== undefined && read.u8(b) !== 0;

/** Kind-specific data from IFLA_INFO_DATA, for the kinds we know; undefined otherwise. */
export function parseLinkInfo(kind: string, data: Uint8Array | undefined): LinkInfo | undefined {
  const a = data ? parseAttrs(data) : new Map<number, Uint8Array>();
  const u8 = (t: number) => {
    const v = a.get(t);
    return v ? read.u8(v) : 0;
  };
  const u16 = (t: number) => {
    const v = a.get(t);
    return v ? read.u16(v) : 0;
  };
  const u32 = (t: number) => {
    const v = a.get(t);
    return v ? read.u32(v) : 0;
  };
  switch (kind) {
    case "bridge":
      return {
        kind,
        vlanFiltering: u8(K.IFLA_BR_VLAN_FILTERING) !== 0,
        defaultPvid: u16(K.IFLA_BR_VLAN_DEFAULT_PVID),
        stp: u32(K.IFLA_BR_STP_STATE) !== 0,
        mcastSnooping: u8(K.IFLA_BR_MCAST_SNOOPING) !== 0,
      };
    case "macvlan":
    case "macvtap": {
      // Kernels before 5.11 do not report the broadcast queue length.
      const bcq = a.get(K.IFLA_MACVLAN_BC_QUEUE_LEN);
      return {
        kind,
        mode: nameOf(MACVLAN_MODES, u32(K.IFLA_MACVLAN_MODE), "vepa"),
        ...(bcq && { bcQueueLen: read.u32(bcq) }),
      };
    }
    case "ipvlan":
      return {
        kind,
        mode: nameOf(IPVLAN_MODES, u16(K.IFLA_IPVLAN_MODE), "l2"),
        flags: nameOf(IPVLAN_FLAGS, u16(K.IFLA_IPVLAN_FLAGS), "bridge"),
      };
    case "vlan": {
      const proto = a.get(K.IFLA_VLAN_PROTOCOL);
      return {
        kind,
        vlanId: u16(K.IFLA_VLAN_ID),
        protocol: proto && read.be16(proto) === VLAN_PROTOCOLS["802.1ad"] ? "802.1ad" : "802.1Q",
      };
    }
    case "vxlan": {
      const group = a.get(K.IFLA_VXLAN_GROUP) ?? a.get(K.IFLA_VXLAN_GROUP6);
      const local = a.get(K.IFLA_VXLAN_LOCAL) ?? a.get(K.IFLA_VXLAN_LOCAL6);
      const port = a.get(K.IFLA_VXLAN_PORT);
      const link = a.get(K.IFLA_VXLAN_LINK);
      return {
        kind,
        vni: u32(K.IFLA_VXLAN_ID),
        port: port ? read.be16(port) : 0,
        ...(group && { group: read.ip(group) }),
        ...(local && { local: read.ip(local) }),
        ...(link && read.u32(link) !== 0 && { parentIndex: read.u32(link) }),
        learning: flag(a.get(K.IFLA_VXLAN_LEARNING)),
        ttl: u8(K.IFLA_VXLAN_TTL),
      };
    }
    case "tun": {
      // Owner/group are only reported when set (not -1).
      const owner = a.get(K.IFLA_TUN_OWNER);
      const group = a.get(K.IFLA_TUN_GROUP);
      return {
        kind,
        mode: u8(K.IFLA_TUN_TYPE) === K.IFF_TUN ? "tun" : "tap",
        ...(owner && { owner: read.u32(owner) }),
        ...(group && { group: read.u32(group) }),
        pi: flag(a.get(K.IFLA_TUN_PI)),
        vnetHdr: flag(a.get(K.IFLA_TUN_VNET_HDR)),
        persist: flag(a.get(K.IFLA_TUN_PERSIST)),
        multiQueue: flag(a.get(K.IFLA_TUN_MULTI_QUEUE)),
        numQueues: u32(K.IFLA_TUN_NUM_QUEUES),
      };
    }
    case "vrf":
      return { kind, table: u32(K.IFLA_VRF_TABLE) };
    default:
      return undefined;
  }
}

/** Bridge-port options from IFLA_INFO_SLAVE_DATA (or a nested IFLA_PROTINFO: same attributes). */
export function parseBridgePort(data: Uint8Array): BridgePortInfo {
  const a = parseAttrs(data);
  const state = a.get(K.IFLA_BRPORT_STATE);
  return {
    state: state ? read.u8(state) : 0,
    hairpin: flag(a.get(K.IFLA_BRPORT_MODE)),
    isolated: flag(a.get(K.IFLA_BRPORT_ISOLATED)),
    learning: flag(a.get(K.IFLA_BRPORT_LEARNING)),
    neighSuppress: flag(a.get(K.IFLA_BRPORT_NEIGH_SUPPRESS)),
    unicastFlood: flag(a.get(K.IFLA_BRPORT_UNICAST_FLOOD)),
    proxyArp: flag(a.get(K.IFLA_BRPORT_PROXYARP)),
  };
}

export type OperState = "unknown" | "notpresent" | "down" | "lowerlayerdown" | "testing" | "dormant" | "up";
const OPER_STATES: OperState[] = [
  "unknown",
  "notpresent",
  "down",
  "lowerlayerdown",
  "testing",
  "dormant",
  "up",
];

export interface Link {
  index: number;
  name: string;
  /** IFLA_INFO_KIND as the kernel reports it ("veth", "bridge", "tun"…); undefined for physical/lo. */
  kind?: string;
  mtu: number;
  /** Hardware address, "" when the link has none (tun). */
  mac: string;
  /** ifi_flags (IFF_*). */
  flags: number;
  up: boolean;
  promisc: boolean;
  allmulti: boolean;
  operstate: OperState;
  txqlen: number;
  alias?: string;
  masterIndex?: number;
  /** IFLA_LINK: veth peer, macvlan/vlan lower device… (in netns `netnsId` when that is set). */
  parentIndex?: number;
  /** IFLA_LINK_NETNSID: the peer/parent lives in another netns with this id. */
  netnsId?: number;
  /** Kind-specific data for the kinds we know (bridge, macvlan, macvtap, ipvlan, vlan, vxlan, tun, vrf). */
  info?: LinkInfo;
  /** Set when the link is a bridge port. */
  bridgePort?: BridgePortInfo;
}

/** Parses one RTM_NEWLINK message (a dump entry, a GET reply or an echo). */
export function parseLink(m: NlMsg): Link {
  const v = structView(m.data);
  const index = v.getInt32(4, true);
  const flags = v.getUint32(8, true);
  const a = parseAttrs(m.data.subarray(16));
  const u32 = (t: number) => {
    const b = a.get(t);
    return b ? read.u32(b) : undefined;
  };
  const link: Link = {
    index,
    name: read.str(a.get(K.IFLA_IFNAME) ?? new Uint8Array()),
    mtu: u32(K.IFLA_MTU) ?? 0,
    mac: bytesToMac(a.get(K.IFLA_ADDRESS) ?? new Uint8Array()),
    flags,
    up: (flags & K.IFF_UP) !== 0,
    promisc: (flags & K.IFF_PROMISC) !== 0,
    allmulti: (flags & K.IFF_ALLMULTI) !== 0,
    operstate: OPER_STATES[read.u8(a.get(K.IFLA_OPERSTATE) ?? new Uint8Array(1))] ?? "unknown",
    txqlen: u32(K.IFLA_TXQLEN) ?? 0,
  };
  const alias = a.get(K.IFLA_IFALIAS);
  if (alias) link.alias = read.str(alias);
  const master = u32(K.IFLA_MASTER);
  if (master) link.masterIndex = master;
  const parent = u32(K.IFLA_LINK);
  const netnsId = a.get(K.IFLA_LINK_NETNSID);
  if (netnsId) link.netnsId = read.s32(netnsId);
  // Physical links and lo report themselves as their own IFLA_LINK.
  if (parent && (parent !== index || link.netnsId !== undefined)) link.parentIndex = parent;
  const linkinfo = a.get(K.IFLA_LINKINFO);
  if (linkinfo) {
    const li = parseAttrs(linkinfo);
    const kind = li.get(K.IFLA_INFO_KIND);
    if (kind) {
      link.kind = read.str(kind);
      const info = parseLinkInfo(link.kind, li.get(K.IFLA_INFO_DATA));
      if (info) link.info = info;
    }
    const slaveKind = li.get(K.IFLA_INFO_SLAVE_KIND);
    const slaveData = li.get(K.IFLA_INFO_SLAVE_DATA);
    if (slaveKind && read.str(slaveKind) === "bridge" && slaveData)
      link.bridgePort = parseBridgePort(slaveData);
  }
  return link;
}
