/**
 * `tscni node-net`: the node daemon of the cluster network (issue 21), what flanneld does with its
 * vxlan backend and etcd: lease this node a subnet of the cluster network (lease.ts), write subnet.env
 * for the flannel CNI plugin (subnet-env.ts), make flannel.<VNI> and keep its routes, neighbours and
 * fdb entries equal to the other nodes' live leases (vxlan.ts), renewing the lease as it goes.
 *
 * Dual stack (the network config's "EnableIPv6"), as flanneld: a second device flannel-v6.<VNI> (same
 * VNI and port, local = this node's public IPv6 address) holds <IPv6 subnet network>/128, the lease
 * names both subnets, peers get the same three entries on flannel-v6 towards their PublicIPv6, and
 * subnet.env adds FLANNEL_IPV6_NETWORK/FLANNEL_IPV6_SUBNET.
 *
 * MTU, as flanneld: FLANNEL_MTU is underlay − 50 (main.go writes bn.MTU() = cfg.MTU − encapOverhead,
 * one figure for both families); flannel.<VNI> is underlay − 50 and flannel-v6.<VNI> underlay − 70
 * (VXLAN over IPv6 carries a 40-byte IP header, not 20; flanneld asks for − 50 and the kernel clamps).
 * A pod's IPv6 packet above underlay − 70 so gets a Packet Too Big from its node (PMTU discovery).
 *
 * etcd going away tears nothing down: a failed round is logged and the next one retries; the overlay
 * keeps forwarding with what it last knew. Peers are re-read every `pollMs` (flanneld watches; a poll
 * reconciles the same way and needs no stream through the JSON gateway).
 */
import { EtcdClient, type EtcdTLS } from "../etcd/client.ts";
import { addrList } from "../netlink/addr.ts";
import { linkByName } from "../netlink/link.ts";
import { NetlinkSocket } from "../netlink/socket.ts";
import { type MasqBackend, removeMasq, setupMasq } from "./ipmasq.ts";
import {
  acquireLease,
  DEFAULT_PREFIX,
  type HeldLease,
  listLeases,
  readNetworkConfig,
  renewLease,
} from "./lease.ts";
import { writeSubnetEnv } from "./subnet-env.ts";
import { ensureVtep, type Peer, setVtepSubnet, syncPeers, VXLAN_OVERHEAD } from "./vxlan.ts";

export const DEFAULT_SUBNET_FILE = "/run/flannel/subnet.env";
const IFA_F_DEPRECATED = 0x20;

export interface NodeNetOptions {
  endpoints: string[];
  /** PEM text of the CA, client certificate and key (flanneld's --etcd-cafile/-certfile/-keyfile). */
  tls?: EtcdTLS;
  username?: string;
  password?: string;
  prefix?: string;
  /** The underlay link (default: the one holding publicIP, else eth0). */
  iface?: string;
  /** Default: the first IPv4 address of iface. */
  publicIP?: string;
  /** Default: the first global IPv6 address of iface (only used when the network config has IPv6). */
  publicIPv6?: string;
  subnetFile?: string;
  /** Lease TTL (flanneld: 24 h); renewed at a third of it, or renewMarginSeconds before it ends. */
  ttlSeconds?: number;
  /** flanneld's --subnet-lease-renew-margin (there in minutes). */
  renewMarginSeconds?: number;
  pollMs?: number;
  /** Masquerade traffic leaving the cluster network (ipmasq.ts); removed again on a clean stop. */
  ipMasq?: boolean;
  ipMasqBackend?: MasqBackend;
  ipMasqFullyRandomDisable?: boolean;
  log?: (line: string) => void;
  /** Resolves when the daemon should stop (SIGTERM); the dataplane and lease stay. */
  stop?: Promise<void>;
}

export async function runNodeNet(o: NodeNetOptions): Promise<void> {
  const log = o.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const prefix = o.prefix ?? DEFAULT_PREFIX;
  const ttl = o.ttlSeconds ?? 24 * 3600;
  const pollMs = o.pollMs ?? 5000;
  const renewEveryMs =
    o.renewMarginSeconds !== undefined && o.renewMarginSeconds < ttl
      ? (ttl - o.renewMarginSeconds) * 1000
      : (ttl * 1000) / 3;
  const etcd = new EtcdClient({
    endpoints: o.endpoints,
    ...(o.tls && { tls: o.tls }),
    ...(o.username !== undefined && { username: o.username, password: o.password ?? "" }),
  });
  let masqUp = false;
  const sock = NetlinkSocket.open();
  let stopped = false;
  o.stop?.then(() => {
    stopped = true;
  });
  try {
    const underlay = linkByName(sock, o.iface ?? "eth0");
    if (!underlay) throw new Error(`node-net: no underlay link ${o.iface ?? "eth0"}`);
    const publicIP = o.publicIP ?? addrList(sock, { index: underlay.index, version: 4 })[0]?.ip;
    if (!publicIP) throw new Error(`node-net: ${underlay.name} has no IPv4 address to use as the public IP`);

    const cfg = await readNetworkConfig(etcd, prefix);
    if (cfg.backend.type !== "vxlan")
      throw new Error(`node-net: backend ${cfg.backend.type} is not supported (vxlan only)`);
    // flanneld's GetInterfaceIP6Addrs: a global, non-deprecated address (link-local ones can't be a
    // VXLAN source a peer routes to)
    const publicIPv6 = cfg.ipv6
      ? (o.publicIPv6 ??
        addrList(sock, { index: underlay.index, version: 6 }).find(
          (a) => a.scope === 0 && !(a.flags & IFA_F_DEPRECATED),
        )?.ip)
      : undefined;
    if (cfg.ipv6 && !publicIPv6)
      throw new Error(
        `node-net: the network config has EnableIPv6 but ${underlay.name} has no global IPv6 address (--public-ipv6)`,
      );
    const vtep = { vni: cfg.backend.vni, port: cfg.backend.port, underlay };
    const dev = ensureVtep(sock, { ...vtep, publicIP });
    const dev6 = publicIPv6 ? ensureVtep(sock, { ...vtep, publicIP: publicIPv6 }) : undefined;
    const acquire = () =>
      acquireLease(etcd, cfg, {
        publicIP,
        vtepMAC: dev.mac,
        ...(dev6 && { publicIPv6, vtepMACv6: dev6.mac }),
        ttlSeconds: ttl,
        prefix,
      });
    let held: HeldLease = await acquire();
    const take = async (h: HeldLease) => {
      setVtepSubnet(sock, dev, h.lease.subnet);
      const v6 =
        cfg.ipv6 && h.lease.ipv6Subnet
          ? { network: cfg.ipv6.network, subnet: h.lease.ipv6Subnet }
          : undefined;
      if (dev6) {
        if (!v6) throw new Error(`node-net: lease ${h.key} has no IPv6 subnet though the config has IPv6`);
        setVtepSubnet(sock, dev6, v6.subnet);
      }
      if (o.ipMasq) {
        await setupMasq({
          backend: o.ipMasqBackend,
          v4: { network: cfg.network, subnet: h.lease.subnet },
          ...(v6 && { v6 }),
          fullyRandomDisable: o.ipMasqFullyRandomDisable,
        });
        masqUp = true;
      }
      writeSubnetEnv(o.subnetFile ?? DEFAULT_SUBNET_FILE, {
        network: cfg.network,
        subnet: h.lease.subnet,
        ...(v6 && { ipv6Network: v6.network, ipv6Subnet: v6.subnet }),
        mtu: underlay.mtu - VXLAN_OVERHEAD[4],
        ipMasq: o.ipMasq ?? false,
      });
      log(`node-net: ${publicIP} holds ${h.lease.subnet} of ${cfg.network} (${dev.name} ${dev.mac})`);
      if (dev6 && v6)
        log(`node-net: ${publicIPv6} holds ${v6.subnet} of ${v6.network} (${dev6.name} ${dev6.mac})`);
    };
    await take(held);

    let lastRenew = Date.now();
    while (!stopped) {
      try {
        if (Date.now() - lastRenew >= renewEveryMs) {
          const renewed = await renewLease(etcd, held, ttl);
          if (renewed) held = renewed;
          else {
            log(`node-net: lease of ${held.lease.subnet} lost; taking one again`);
            held = await acquire();
            await take(held);
          }
          lastRenew = Date.now();
        }
        const others = (await listLeases(etcd, prefix)).filter(
          (l) => l.publicIP !== publicIP && l.backendType === "vxlan",
        );
        const peers: Peer[] = others.flatMap((l) =>
          l.vtepMAC ? [{ subnet: l.subnet, publicIP: l.publicIP, vtepMAC: l.vtepMAC }] : [],
        );
        const r = syncPeers(sock, dev, peers);
        if (r.removed) log(`node-net: ${r.removed} peer route(s) removed; ${peers.length} peer(s)`);
        if (dev6) {
          // a peer without an IPv6 half (flanneld without IPv6 on that node) is left out of flannel-v6
          const peers6: Peer[] = others.flatMap((l) =>
            l.ipv6Subnet && l.publicIPv6 && l.vtepMACv6
              ? [{ subnet: l.ipv6Subnet, publicIP: l.publicIPv6, vtepMAC: l.vtepMACv6 }]
              : [],
          );
          const r6 = syncPeers(sock, dev6, peers6, 6);
          if (r6.removed) log(`node-net: ${r6.removed} IPv6 peer route(s) removed; ${peers6.length} peer(s)`);
        }
      } catch (err) {
        // etcd unreachable, no quorum…: keep the overlay as it is and try again
        log(`node-net: ${err instanceof Error ? err.message : err}; keeping the overlay, retrying`);
      }
      await Promise.race([Bun.sleep(pollMs), o.stop]);
    }
    if (masqUp) {
      await removeMasq({ backend: o.ipMasqBackend });
      log("node-net: ip masquerade rules removed");
    }
  } finally {
    sock.close();
  }
}
