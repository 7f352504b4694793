/**
 * Per-container IP masquerade (upstream pkg/ip ipmasq): traffic from a container's address to anything
 * outside that address's subnet, except multicast, leaves with the host's address. Bridge and ptp call
 * setupIPMasq on ADD, teardownIPMasq on DEL, checkIPMasq on CHECK and gcIPMasq on GC.
 *
 * Two backends, one transaction per call and address family:
 * - "iptables" (ipmasq-iptables.ts): exactly the chains and rules of upstream's iptables backend, so an
 *   attachment added by the Go plugins can be deleted by us and the other way round.
 * - "nftables" (ipmasq-nft.ts): one table with a fixed ruleset and per-container map elements.
 */
import { hasTool } from "../firewall/exec.ts";
import type { NftTarget } from "../firewall/nft.ts";
import type { NetlinkSocket } from "../netlink/socket.ts";
import { CniError, ErrCode } from "../spec/errors.ts";
import { formatIP, parseCIDR, toIPv4 } from "../spec/ipaddr.ts";
import type { IPMasqBackend } from "./ipmasq-backend.ts";
import {
  checkIPMasqIptables,
  gcIPMasqIptables,
  setupIPMasqIptables,
  teardownIPMasqIptables,
} from "./ipmasq-iptables.ts";
import { checkIPMasqNft, gcIPMasqNft, setupIPMasqNft, teardownIPMasqNft } from "./ipmasq-nft.ts";
import type { GCAttachment, IPMasqOwner, MasqAddr } from "./ipmasq-types.ts";

export { MULTICAST } from "./ipmasq-types.ts";
export type { GCAttachment, IPMasqBackend, IPMasqOwner, MasqAddr };

export interface IPMasqCommon extends IPMasqOwner {
  /** Run the firewall tools inside this netns (tests); normally the plugin's current (host) netns. */
  netnsPath?: string;
  /**
   * An open NETLINK_NETFILTER socket (of that netns) to use and leave open: the nftables backend
   * commits through it, the iptables one looks its chain up with it (iptables-nft). The kernel
   * frees deleted elements after an RCU grace period and a socket's close waits for it (~15 ms): a
   * caller that closes it after other slow kernel work (DEL's veth delete) makes the waits overlap.
   */
  nftSocket?: NetlinkSocket;
}

export interface SetupIPMasqOptions extends IPMasqCommon {
  backend: IPMasqBackend;
  /** The container's addresses with their prefix length, e.g. ["10.22.0.5/16", "fd00::5/64"]. */
  ips: readonly string[];
}

export type CheckIPMasqOptions = SetupIPMasqOptions;

export interface TeardownIPMasqOptions extends IPMasqCommon {
  /** Omitted: tear down in both backends (where the tool is installed), like upstream's DEL. */
  backend?: IPMasqBackend;
  /** The container's addresses when known; on DEL they may be lost — rules are found by owner then. */
  ips?: readonly string[];
}

export interface GCIPMasqOptions {
  nftSocket?: NetlinkSocket;
  /** Omitted: collect in both backends (where the tool is installed). */
  backend?: IPMasqBackend;
  network: string;
  /** Attachments still alive; every masquerade of `network` owned by another one is removed. */
  validAttachments: readonly GCAttachment[];
  netnsPath?: string;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/**
 * Rejects identities that could not be written safely into a rule comment or nft script (the CNI spec
 * already limits network names and container ids to these characters).
 */
export function validateOwner(o: { network: string; containerID?: string; ifName?: string }): void {
  if (!NAME_RE.test(o.network)) {
    throw new CniError(
      ErrCode.InvalidNetworkConfig,
      `ipmasq: invalid network name ${JSON.stringify(o.network)}`,
    );
  }
  if (o.containerID !== undefined && !NAME_RE.test(o.containerID)) {
    throw new CniError(
      ErrCode.InvalidEnvironmentVariables,
      `ipmasq: invalid container id ${JSON.stringify(o.containerID)}`,
    );
  }
  if (o.ifName !== undefined && !/^[^\s/:"\\]{1,15}$/.test(o.ifName)) {
    throw new CniError(
      ErrCode.InvalidEnvironmentVariables,
      `ipmasq: invalid interface name ${JSON.stringify(o.ifName)}`,
    );
  }
}

/** Parses "10.22.0.5/16" into its family, address and subnet; IPv4-mapped IPv6 counts as IPv4. */
export function parseMasqAddr(cidr: string): MasqAddr {
  const c = parseCIDR(cidr);
  if (!c) throw new CniError(ErrCode.Internal, `ipmasq: invalid container address ${JSON.stringify(cidr)}`);
  const ip = toIPv4(c.ip) ?? c.ip;
  const net = new Uint8Array(ip);
  for (let i = 0; i < net.length; i++) {
    const bits = Math.min(8, Math.max(0, c.prefix - i * 8));
    net[i] = net[i]! & ((0xff << (8 - bits)) & 0xff);
  }
  return { family: ip.length === 4 ? 4 : 6, ip: formatIP(ip), subnet: `${formatIP(net)}/${c.prefix}` };
}

function parseAddrs(ips: readonly string[]): MasqAddr[] {
  const seen = new Set<string>();
  const out: MasqAddr[] = [];
  for (const cidr of ips) {
    const a = parseMasqAddr(cidr);
    const key = `${a.ip}/${a.subnet}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(a);
  }
  return out;
}

function backendsOf(backend: IPMasqBackend | undefined): IPMasqBackend[] {
  if (backend === "nftables" || backend === "iptables") return [backend];
  if (backend !== undefined) {
    throw new CniError(ErrCode.InvalidNetworkConfig, `ipmasq: unknown backend ${JSON.stringify(backend)}`);
  }
  // Both where installed: the attachment may have been made under another configuration or version.
  const out: IPMasqBackend[] = [];
  if (hasTool("iptables-restore")) out.push("iptables");
  if (hasTool("nft")) out.push("nftables");
  return out;
}

function requireBackend(backend: IPMasqBackend | undefined): IPMasqBackend {
  if (backend === undefined) throw new CniError(ErrCode.InvalidNetworkConfig, "ipmasq: no backend given");
  return backendsOf(backend)[0]!;
}

function owner(o: IPMasqOwner): IPMasqOwner {
  return { network: o.network, containerID: o.containerID, ifName: o.ifName };
}

function nftTarget(o: { netnsPath?: string; nftSocket?: NetlinkSocket }): NftTarget {
  return { netnsPath: o.netnsPath, socket: o.nftSocket };
}

/** Installs the masquerade for one attachment (replacing what the same attachment had before). */
export async function setupIPMasq(opts: SetupIPMasqOptions): Promise<void> {
  validateOwner(opts);
  const addrs = parseAddrs(opts.ips);
  const backend = requireBackend(opts.backend);
  const ctx = `setting up ip masquerade for ${opts.containerID} on network ${opts.network}`;
  try {
    if (backend === "nftables") await setupIPMasqNft(owner(opts), addrs, nftTarget(opts));
    else await setupIPMasqIptables(owner(opts), addrs, opts.netnsPath);
  } catch (err) {
    throw CniError.from(err, ctx);
  }
}

/** Removes the masquerade of one attachment; missing tables, chains or rules count as removed. */
export async function teardownIPMasq(opts: TeardownIPMasqOptions): Promise<void> {
  validateOwner(opts);
  const addrs = opts.ips === undefined ? undefined : parseAddrs(opts.ips);
  const ctx = `tearing down ip masquerade for ${opts.containerID} on network ${opts.network}`;
  const errors: CniError[] = [];
  for (const backend of backendsOf(opts.backend)) {
    try {
      if (backend === "nftables") await teardownIPMasqNft(owner(opts), nftTarget(opts));
      else await teardownIPMasqIptables(owner(opts), addrs, nftTarget(opts));
    } catch (err) {
      errors.push(CniError.from(err, ctx));
    }
  }
  if (errors.length === 1) throw errors[0];
  if (errors.length > 1) {
    throw new CniError(errors[0]!.code, ctx, errors.map((e) => e.message).join("\n"));
  }
}

/** Throws unless every rule/element setupIPMasq would make for these addresses is in place. */
export async function checkIPMasq(opts: CheckIPMasqOptions): Promise<void> {
  validateOwner(opts);
  const addrs = parseAddrs(opts.ips);
  const backend = requireBackend(opts.backend);
  const ctx = `checking ip masquerade for ${opts.containerID} on network ${opts.network}`;
  try {
    if (backend === "nftables") await checkIPMasqNft(owner(opts), addrs, nftTarget(opts));
    else await checkIPMasqIptables(owner(opts), addrs, opts.netnsPath);
  } catch (err) {
    throw CniError.from(err, ctx);
  }
}

/** Removes the masquerade of every attachment of `network` that is not in validAttachments. */
export async function gcIPMasq(opts: GCIPMasqOptions): Promise<void> {
  validateOwner({ network: opts.network });
  const ctx = `collecting stale ip masquerade of network ${opts.network}`;
  for (const backend of backendsOf(opts.backend)) {
    try {
      if (backend === "nftables") await gcIPMasqNft(opts.network, opts.validAttachments, nftTarget(opts));
      else await gcIPMasqIptables(opts.network, opts.validAttachments, opts.netnsPath);
    } catch (err) {
      throw CniError.from(err, ctx);
    }
  }
}
