/**
 * Bridge settings over rtnetlink: bridge options (IFLA_INFO_DATA), bridge-port options (AF_BRIDGE
 * RTM_SETLINK with a nested IFLA_PROTINFO, what `bridge link set` sends) and port VLANs (IFLA_AF_SPEC,
 * what `bridge vlan add/del/show` sends). VLAN calls need a kernel with CONFIG_BRIDGE_VLAN_FILTERING;
 * without it they fail with EOPNOTSUPP.
 */
import { type Attr, attr, parseAttrList, parseAttrs, read, structView } from "./codec.ts";
import {
  AF_BRIDGE,
  IFLA_AF_SPEC,
  IFLA_BR_VLAN_DEFAULT_PVID,
  IFLA_BR_VLAN_FILTERING,
  IFLA_BRPORT_ISOLATED,
  IFLA_BRPORT_LEARNING,
  IFLA_BRPORT_MODE,
  IFLA_BRPORT_NEIGH_SUPPRESS,
  IFLA_BRPORT_PROXYARP,
  IFLA_BRPORT_UNICAST_FLOOD,
  IFLA_EXT_MASK,
  IFLA_INFO_DATA,
  IFLA_INFO_KIND,
  IFLA_LINKINFO,
  IFLA_PROTINFO,
  ifinfomsg,
  RTEXT_FILTER_BRVLAN,
  RTM_DELLINK,
  RTM_GETLINK,
  RTM_NEWLINK,
  RTM_SETLINK,
} from "./link-consts.ts";
import type { NetlinkSocket } from "./socket.ts";

const IFLA_BRIDGE_FLAGS = 0;
const IFLA_BRIDGE_VLAN_INFO = 2;
const BRIDGE_FLAGS_MASTER = 1;
const BRIDGE_FLAGS_SELF = 2;
const BRIDGE_VLAN_INFO_PVID = 2;
const BRIDGE_VLAN_INFO_UNTAGGED = 4;

export interface BridgeOptions {
  vlanFiltering?: boolean;
  /** VLAN given to untagged frames on new ports (kernel default 1; 0 disables). */
  defaultPvid?: number;
}

/** Changes options of the bridge `index`. */
export function bridgeSetOptions(sock: NetlinkSocket, index: number, opts: BridgeOptions): void {
  const data: Attr[] = [];
  if (opts.vlanFiltering !== undefined) data.push(attr.u8(IFLA_BR_VLAN_FILTERING, +opts.vlanFiltering));
  if (opts.defaultPvid !== undefined) data.push(attr.u16(IFLA_BR_VLAN_DEFAULT_PVID, opts.defaultPvid));
  if (!data.length) return;
  const linkinfo = attr.nested(IFLA_LINKINFO, [
    attr.str(IFLA_INFO_KIND, "bridge"),
    attr.nested(IFLA_INFO_DATA, data),
  ]);
  // RTM_NEWLINK without NLM_F_CREATE on an existing link runs the kind's changelink.
  sock.request(RTM_NEWLINK, 0, ifinfomsg(index), [linkinfo], `setting bridge options on link ${index}`);
}

export interface BridgePortOptions {
  /** Send frames back out the port they came in on (reflective relay). */
  hairpin?: boolean;
  /** Isolated ports only talk to non-isolated ones. */
  isolated?: boolean;
  learning?: boolean;
  /** Answer ARP/ND from the bridge's neighbour entries instead of flooding. */
  neighSuppress?: boolean;
  unicastFlood?: boolean;
  proxyArp?: boolean;
}

/** Changes bridge-port options of `index` (a link enslaved to a bridge). */
export function bridgePortSet(sock: NetlinkSocket, index: number, opts: BridgePortOptions): void {
  const data: Attr[] = [];
  const u8 = (type: number, on: boolean | undefined) => {
    if (on !== undefined) data.push(attr.u8(type, +on));
  };
  u8(IFLA_BRPORT_MODE, opts.hairpin);
  u8(IFLA_BRPORT_ISOLATED, opts.isolated);
  u8(IFLA_BRPORT_LEARNING, opts.learning);
  u8(IFLA_BRPORT_NEIGH_SUPPRESS, opts.neighSuppress);
  u8(IFLA_BRPORT_UNICAST_FLOOD, opts.unicastFlood);
  u8(IFLA_BRPORT_PROXYARP, opts.proxyArp);
  if (!data.length) return;
  // Without NLA_F_NESTED the bridge reads IFLA_PROTINFO as the old single-byte port state.
  const protinfo = attr.nested(IFLA_PROTINFO, data, true);
  sock.request(
    RTM_SETLINK,
    0,
    ifinfomsg(index, AF_BRIDGE),
    [protinfo],
    `setting bridge port options on link ${index}`,
  );
}

export interface BridgeVlanOptions {
  vid: number;
  /** Untagged ingress frames get this VLAN. */
  pvid?: boolean;
  /** Egress frames leave untagged. */
  untagged?: boolean;
  /** Apply to the device itself (the bridge's own VLANs, or a port that offloads). */
  self?: boolean;
  /** Apply on the bridge for this port (the default when neither is given). */
  master?: boolean;
}

function vlanSpec(o: BridgeVlanOptions): Attr {
  const nested: Attr[] = [];
  let where = 0;
  if (o.self) where |= BRIDGE_FLAGS_SELF;
  if (o.master) where |= BRIDGE_FLAGS_MASTER;
  if (where) nested.push(attr.u16(IFLA_BRIDGE_FLAGS, where));
  let flags = 0;
  if (o.pvid) flags |= BRIDGE_VLAN_INFO_PVID;
  if (o.untagged) flags |= BRIDGE_VLAN_INFO_UNTAGGED;
  const info = new Uint8Array(4); // struct bridge_vlan_info { u16 flags; u16 vid; }
  const v = structView(info);
  v.setUint16(0, flags, true);
  v.setUint16(2, o.vid, true);
  nested.push(attr.bytes(IFLA_BRIDGE_VLAN_INFO, info));
  return attr.nested(IFLA_AF_SPEC, nested);
}

/** Adds VLAN `vid` to bridge port (or bridge, with `self`) `index`. */
export function bridgeVlanAdd(sock: NetlinkSocket, index: number, opts: BridgeVlanOptions): void {
  const op = `adding vlan ${opts.vid} to bridge port ${index}`;
  sock.request(RTM_SETLINK, 0, ifinfomsg(index, AF_BRIDGE), [vlanSpec(opts)], op);
}

/** Removes VLAN `vid` from bridge port (or bridge, with `self`) `index`. */
export function bridgeVlanDel(sock: NetlinkSocket, index: number, opts: BridgeVlanOptions): void {
  const op = `deleting vlan ${opts.vid} from bridge port ${index}`;
  sock.request(RTM_DELLINK, 0, ifinfomsg(index, AF_BRIDGE), [vlanSpec(opts)], op);
}

export interface BridgeVlan {
  vid: number;
  pvid: boolean;
  untagged: boolean;
}

/** VLANs of every bridge and bridge port in the socket's netns, by ifindex. */
export function bridgeVlanList(sock: NetlinkSocket): Map<number, BridgeVlan[]> {
  const out = new Map<number, BridgeVlan[]>();
  const msgs = sock.dump(
    RTM_GETLINK,
    ifinfomsg(0, AF_BRIDGE),
    [attr.u32(IFLA_EXT_MASK, RTEXT_FILTER_BRVLAN)],
    "listing bridge vlans",
  );
  for (const m of msgs) {
    if (m.type !== RTM_NEWLINK) continue;
    const index = structView(m.data).getInt32(4, true);
    const spec = parseAttrs(m.data.subarray(16)).get(IFLA_AF_SPEC);
    if (!spec) continue;
    const vlans: BridgeVlan[] = [];
    for (const a of parseAttrList(spec)) {
      if (a.type !== IFLA_BRIDGE_VLAN_INFO || a.value.byteLength < 4) continue;
      const flags = read.u16(a.value);
      vlans.push({
        vid: read.u16(a.value.subarray(2)),
        pvid: (flags & BRIDGE_VLAN_INFO_PVID) !== 0,
        untagged: (flags & BRIDGE_VLAN_INFO_UNTAGGED) !== 0,
      });
    }
    if (vlans.length) out.set(index, vlans);
  }
  return out;
}
