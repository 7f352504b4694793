/**
 * rtnetlink link constants (<linux/rtnetlink.h>, <linux/if_link.h>, <linux/if_bridge.h>,
 * <linux/if_tun.h>, <linux/veth.h>) and the ifinfomsg header, shared by the link modules. Internal:
 * not re-exported from the netlink index.
 */
import { struct } from "./codec.ts";

// ---- message types and ifinfomsg ----

export const RTM_NEWLINK = 16;
export const RTM_DELLINK = 17;
export const RTM_GETLINK = 18;
export const RTM_SETLINK = 19;
export const AF_UNSPEC = 0;
export const AF_BRIDGE = 7;

/** ifinfomsg: family, pad, type, index, flags, change. */
export function ifinfomsg(index = 0, family = AF_UNSPEC, flags = 0, change = 0): Uint8Array {
  return struct(16, (v) => {
    v.setUint8(0, family);
    v.setInt32(4, index, true);
    v.setUint32(8, flags >>> 0, true);
    v.setUint32(12, change >>> 0, true);
  });
}

// ---- IFLA_* (only what we use) ----

export const IFLA_ADDRESS = 1;
export const IFLA_IFNAME = 3;
export const IFLA_MTU = 4;
export const IFLA_LINK = 5;
export const IFLA_MASTER = 10;
export const IFLA_PROTINFO = 12;
export const IFLA_TXQLEN = 13;
export const IFLA_OPERSTATE = 16;
export const IFLA_LINKINFO = 18;
export const IFLA_IFALIAS = 20;
export const IFLA_AF_SPEC = 26;
export const IFLA_NET_NS_FD = 28;
export const IFLA_EXT_MASK = 29;
export const IFLA_LINK_NETNSID = 37;

export const IFLA_INFO_KIND = 1;
export const IFLA_INFO_DATA = 2;
export const IFLA_INFO_SLAVE_KIND = 4;
export const IFLA_INFO_SLAVE_DATA = 5;

export const RTEXT_FILTER_VF = 1;
export const RTEXT_FILTER_BRVLAN = 2;
export const RTEXT_FILTER_SKIP_STATS = 8;

export const IFF_UP = 0x1;
export const IFF_PROMISC = 0x100;
export const IFF_ALLMULTI = 0x200;

// tun/tap (<linux/if_tun.h>)
export const IFF_TUN = 0x1;
export const IFF_TAP = 0x2;
export const IFF_MULTI_QUEUE = 0x100;
export const IFF_NO_PI = 0x1000;
export const IFF_VNET_HDR = 0x4000;

export const VETH_INFO_PEER = 1;

export const IFLA_BR_STP_STATE = 5;
export const IFLA_BR_VLAN_FILTERING = 7;
export const IFLA_BR_MCAST_SNOOPING = 23;
export const IFLA_BR_VLAN_DEFAULT_PVID = 39;

export const IFLA_BRPORT_STATE = 1;
export const IFLA_BRPORT_MODE = 4; // hairpin
export const IFLA_BRPORT_LEARNING = 8;
export const IFLA_BRPORT_UNICAST_FLOOD = 9;
export const IFLA_BRPORT_PROXYARP = 10;
export const IFLA_BRPORT_NEIGH_SUPPRESS = 32;
export const IFLA_BRPORT_ISOLATED = 33;

export const IFLA_MACVLAN_MODE = 1;
export const IFLA_MACVLAN_BC_QUEUE_LEN = 7;
export const IFLA_IPVLAN_MODE = 1;
export const IFLA_IPVLAN_FLAGS = 2;
export const IFLA_VLAN_ID = 1;
export const IFLA_VLAN_PROTOCOL = 5;
export const IFLA_VRF_TABLE = 1;

export const IFLA_VXLAN_ID = 1;
export const IFLA_VXLAN_GROUP = 2;
export const IFLA_VXLAN_LINK = 3;
export const IFLA_VXLAN_LOCAL = 4;
export const IFLA_VXLAN_TTL = 5;
export const IFLA_VXLAN_LEARNING = 7;
export const IFLA_VXLAN_PORT = 15;
export const IFLA_VXLAN_GROUP6 = 16;
export const IFLA_VXLAN_LOCAL6 = 17;

export const IFLA_TUN_OWNER = 1;
export const IFLA_TUN_GROUP = 2;
export const IFLA_TUN_TYPE = 3;
export const IFLA_TUN_PI = 4;
export const IFLA_TUN_VNET_HDR = 5;
export const IFLA_TUN_PERSIST = 6;
export const IFLA_TUN_MULTI_QUEUE = 7;
export const IFLA_TUN_NUM_QUEUES = 8;
