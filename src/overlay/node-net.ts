/**
 * `tscni node-net`: the node daemon of the cluster network (issue 21), what flanneld does with its
 * vxlan backend and etcd: lease this node a subnet of the cluster network (lease.ts), write subnet.env
 * for the flannel CNI plugin (subnet-env.ts), make flannel.<VNI> and keep its routes, neighbours and
 * fdb entries equal to the other nodes' live leases (vxlan.ts), renewing the lease as it goes.
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
import { ensureVtep, type Peer, setVtepSubnet, syncPeers } from "./vxlan.ts";

export const DEFAULT_SUBNET_FILE = "/run/flannel/subnet.env";
const VXLAN_OVERHEAD = 50;

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
    const dev = ensureVtep(sock, { vni: cfg.backend.vni, port: cfg.backend.port, publicIP, underlay });
    let held: HeldLease = await acquireLease(etcd, cfg, {
      publicIP,
      vtepMAC: dev.mac,
      ttlSeconds: ttl,
      prefix,
    });
    const take = async (h: HeldLease) => {
      setVtepSubnet(sock, dev, h.lease.subnet);
      if (o.ipMasq) {
        await setupMasq({
          backend: o.ipMasqBackend,
          v4: { network: cfg.network, subnet: h.lease.subnet },
          fullyRandomDisable: o.ipMasqFullyRandomDisable,
        });
        masqUp = true;
      }
      writeSubnetEnv(o.subnetFile ?? DEFAULT_SUBNET_FILE, {
        network: cfg.network,
        subnet: h.lease.subnet,
        mtu: underlay.mtu - VXLAN_OVERHEAD,
        ipMasq: o.ipMasq ?? false,
      });
      log(`node-net: ${publicIP} holds ${h.lease.subnet} of ${cfg.network} (${dev.name} ${dev.mac})`);
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
            held = await acquireLease(etcd, cfg, { publicIP, vtepMAC: dev.mac, ttlSeconds: ttl, prefix });
            await take(held);
          }
          lastRenew = Date.now();
        }
        const peers: Peer[] = (await listLeases(etcd, prefix))
          .filter((l) => l.publicIP !== publicIP && l.backendType === "vxlan" && l.vtepMAC)
          .map((l) => ({ subnet: l.subnet, publicIP: l.publicIP, vtepMAC: l.vtepMAC ?? "" }));
        const r = syncPeers(sock, dev, peers);
        if (r.removed) log(`node-net: ${r.removed} peer route(s) removed; ${peers.length} peer(s)`);
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
