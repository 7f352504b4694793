/**
 * Network links over rtnetlink (vishvananda/netlink's link_linux.go, with typed option objects).
 * Every function takes the socket first; the socket's netns is where the links are looked up.
 * Errors are SysErrors naming the operation: `adding veth eth0: EEXIST (file exists)`.
 */
import { SysError } from "../sys/errno.ts";
import { type Attr, attr, NLM_F_CREATE, NLM_F_ECHO, NLM_F_EXCL } from "./codec.ts";
import {
  AF_UNSPEC,
  IFF_ALLMULTI,
  IFF_PROMISC,
  IFF_UP,
  IFLA_ADDRESS,
  IFLA_EXT_MASK,
  IFLA_IFALIAS,
  IFLA_IFNAME,
  IFLA_MASTER,
  IFLA_MTU,
  IFLA_NET_NS_FD,
  IFLA_TXQLEN,
  ifinfomsg,
  RTEXT_FILTER_SKIP_STATS,
  RTEXT_FILTER_VF,
  RTM_DELLINK,
  RTM_GETLINK,
  RTM_NEWLINK,
  RTM_SETLINK,
} from "./link-consts.ts";
import { type Link, parseLink } from "./link-info.ts";
import { commonAttrs, kernelKind, kindAttrs, type LinkSpec } from "./link-kinds.ts";
import { createTuntap } from "./link-tuntap.ts";
import { NetlinkSocket } from "./socket.ts";

// The types callers need with these functions, so one import does.
export type { BridgePortInfo, Link, LinkInfo, OperState } from "./link-info.ts";
export type { LinkKind, LinkSpec } from "./link-kinds.ts";

const EXT_MASK = attr.u32(IFLA_EXT_MASK, RTEXT_FILTER_VF | RTEXT_FILTER_SKIP_STATS);

/** Every link in the socket's netns. */
export function linkList(sock: NetlinkSocket): Link[] {
  return sock
    .dump(RTM_GETLINK, ifinfomsg(), [EXT_MASK], "listing links")
    .filter((m) => m.type === RTM_NEWLINK)
    .map(parseLink);
}

/** A link by ifindex or by name. */
export type LinkRef = number | string;

/** The link named `name`, or undefined. */
export function linkByName(sock: NetlinkSocket, name: string): Link | undefined {
  // Longer names cannot exist; the kernel would answer EINVAL instead of ENODEV.
  if (name === "" || new TextEncoder().encode(name).byteLength > 15) return undefined;
  const m = sock.get(
    RTM_GETLINK,
    ifinfomsg(),
    [attr.str(IFLA_IFNAME, name), EXT_MASK],
    `getting link ${name}`,
  );
  return m ? parseLink(m) : undefined;
}

/** The link with ifindex `index`, or undefined. */
export function linkByIndex(sock: NetlinkSocket, index: number): Link | undefined {
  const m = sock.get(RTM_GETLINK, ifinfomsg(index), [EXT_MASK], `getting link ${index}`);
  return m ? parseLink(m) : undefined;
}

/** Looks a link up by index or name. */
export function linkGet(sock: NetlinkSocket, ref: LinkRef): Link | undefined {
  return typeof ref === "number" ? linkByIndex(sock, ref) : linkByName(sock, ref);
}

/**
 * Creates a link. Returns it as created when it lives in the socket's netns, undefined when
 * `spec.netnsFd` put it elsewhere. The veth peer is made straight in `peerNetnsFd` when given.
 */
export function linkAdd(sock: NetlinkSocket, spec: LinkSpec): Link | undefined {
  const op = `adding ${spec.kind} ${spec.name}`;
  if (spec.kind === "tuntap") return addTuntap(sock, spec, op);
  const attrs: Attr[] = [...commonAttrs(spec), ...kindAttrs(spec)];
  if (spec.masterIndex !== undefined) attrs.push(attr.u32(IFLA_MASTER, spec.masterIndex));
  const header = spec.up ? ifinfomsg(0, AF_UNSPEC, IFF_UP, IFF_UP) : ifinfomsg();
  // NLM_F_ECHO returns the new link's RTM_NEWLINK (kernel ≥ 6.3) and saves a GET. The echo is sent
  // before the kernel sets the master, so a link with a master is read back instead.
  const replies = sock.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO, header, attrs, op);
  // RTM_NEWLINK ignores IFLA_IFALIAS when creating.
  if (spec.alias !== undefined) setAliasAfterCreate(sock, spec, op);
  if (spec.netnsFd !== undefined) return undefined;
  const echoed = replies
    .filter((m) => m.type === RTM_NEWLINK)
    .map(parseLink)
    .filter((l) => l.name === spec.name);
  const fresh = spec.masterIndex === undefined && spec.alias === undefined ? echoed.at(-1) : undefined;
  return fresh ?? linkByName(sock, spec.name);
}

function setAliasAfterCreate(sock: NetlinkSocket, spec: LinkSpec & { alias?: string }, op: string): void {
  const alias = spec.alias ?? "";
  const target = spec.netnsFd === undefined ? sock : NetlinkSocket.open({ netnsFd: spec.netnsFd });
  try {
    linkSet(target, spec.name, { alias }, op);
  } catch (err) {
    try {
      linkDel(target, spec.name);
    } catch {
      // already gone
    }
    throw err;
  } finally {
    if (target !== sock) target.close();
  }
}

function addTuntap(sock: NetlinkSocket, spec: LinkSpec & { kind: "tuntap" }, op: string): Link | undefined {
  // TUNSETIFF on an existing tun/tap attaches to it instead of failing: refuse like RTM_NEWLINK would.
  if (linkByName(sock, spec.name)) throw new SysError(op, 17 /* EEXIST */);
  createTuntap(sock, spec, op);
  try {
    linkSet(
      sock,
      spec.name,
      {
        mtu: spec.mtu,
        mac: spec.mac,
        txqlen: spec.txqlen,
        alias: spec.alias,
        masterIndex: spec.masterIndex,
        up: spec.up,
        netnsFd: spec.netnsFd,
      },
      op,
    );
  } catch (err) {
    try {
      linkDel(sock, spec.name);
    } catch {
      // moved before the failing change: the kernel applies IFLA_NET_NS_FD first
    }
    throw err;
  }
  return spec.netnsFd === undefined ? linkByName(sock, spec.name) : undefined;
}

/** Deletes a link (ENODEV when it does not exist). */
export function linkDel(sock: NetlinkSocket, ref: LinkRef): void {
  sock.request(RTM_DELLINK, 0, refHeader(ref), refAttrs(ref), `deleting link ${ref}`);
}

/** Changes to apply to an existing link in one request. */
export interface LinkChanges {
  mtu?: number;
  mac?: string;
  name?: string;
  txqlen?: number;
  alias?: string;
  /** 0 removes the link from its master. */
  masterIndex?: number;
  up?: boolean;
  promisc?: boolean;
  allmulti?: boolean;
  /** Moves the link; the kernel does this before the other changes, which then apply in the new netns. */
  netnsFd?: number;
}

/** Applies several changes in one RTM_SETLINK. Renaming needs an index `ref`. */
export function linkSet(
  sock: NetlinkSocket,
  ref: LinkRef,
  c: LinkChanges,
  op = `changing link ${ref}`,
): void {
  if (c.name !== undefined && typeof ref === "string") {
    throw new SysError(op, 22 /* EINVAL */, "renaming needs the link's index, not its name");
  }
  let flags = 0;
  let change = 0;
  const bit = (on: boolean | undefined, mask: number) => {
    if (on === undefined) return;
    change |= mask;
    if (on) flags |= mask;
  };
  bit(c.up, IFF_UP);
  bit(c.promisc, IFF_PROMISC);
  bit(c.allmulti, IFF_ALLMULTI);
  const attrs = refAttrs(ref);
  if (c.netnsFd !== undefined) attrs.push(attr.u32(IFLA_NET_NS_FD, c.netnsFd));
  if (c.name !== undefined) attrs.push(attr.str(IFLA_IFNAME, c.name));
  if (c.mtu !== undefined) attrs.push(attr.u32(IFLA_MTU, c.mtu));
  if (c.mac !== undefined) attrs.push(attr.mac(IFLA_ADDRESS, c.mac));
  if (c.txqlen !== undefined) attrs.push(attr.u32(IFLA_TXQLEN, c.txqlen));
  if (c.alias !== undefined) attrs.push(aliasAttr(c.alias));
  if (c.masterIndex !== undefined) attrs.push(attr.u32(IFLA_MASTER, c.masterIndex));
  const header = ifinfomsg(typeof ref === "number" ? ref : 0, AF_UNSPEC, flags, change);
  sock.request(RTM_SETLINK, 0, header, attrs, op);
}

export function linkSetUp(sock: NetlinkSocket, ref: LinkRef): void {
  linkSet(sock, ref, { up: true }, `setting link ${ref} up`);
}

export function linkSetDown(sock: NetlinkSocket, ref: LinkRef): void {
  linkSet(sock, ref, { up: false }, `setting link ${ref} down`);
}

export function linkSetMtu(sock: NetlinkSocket, ref: LinkRef, mtu: number): void {
  linkSet(sock, ref, { mtu }, `setting mtu ${mtu} on link ${ref}`);
}

export function linkSetMac(sock: NetlinkSocket, ref: LinkRef, mac: string): void {
  linkSet(sock, ref, { mac }, `setting mac ${mac} on link ${ref}`);
}

export function linkSetName(sock: NetlinkSocket, index: number, name: string): void {
  linkSet(sock, index, { name }, `renaming link ${index} to ${name}`);
}

export function linkSetTxqlen(sock: NetlinkSocket, ref: LinkRef, txqlen: number): void {
  linkSet(sock, ref, { txqlen }, `setting txqlen ${txqlen} on link ${ref}`);
}

export function linkSetPromisc(sock: NetlinkSocket, ref: LinkRef, on: boolean): void {
  linkSet(sock, ref, { promisc: on }, `setting promisc ${on ? "on" : "off"} on link ${ref}`);
}

export function linkSetAllmulti(sock: NetlinkSocket, ref: LinkRef, on: boolean): void {
  linkSet(sock, ref, { allmulti: on }, `setting allmulticast ${on ? "on" : "off"} on link ${ref}`);
}

/** Sets the alias (ifalias); "" removes it. */
export function linkSetAlias(sock: NetlinkSocket, ref: LinkRef, alias: string): void {
  linkSet(sock, ref, { alias }, `setting alias of link ${ref}`);
}

export function linkSetMaster(sock: NetlinkSocket, ref: LinkRef, masterIndex: number): void {
  linkSet(sock, ref, { masterIndex }, `setting master of link ${ref} to ${masterIndex}`);
}

export function linkSetNoMaster(sock: NetlinkSocket, ref: LinkRef): void {
  linkSet(sock, ref, { masterIndex: 0 }, `removing link ${ref} from its master`);
}

/** Moves a link into the netns `netnsFd` (its index may change there; look it up by name). */
export function linkSetNetns(sock: NetlinkSocket, ref: LinkRef, netnsFd: number): void {
  linkSet(sock, ref, { netnsFd }, `moving link ${ref} to another netns`);
}

/**
 * Whether the kernel can make links of `kind`, found by creating a throwaway one in the socket's netns
 * (kinds that need a lower device get a throwaway veth). Unknown kinds fail with EOPNOTSUPP.
 */
export function linkKindSupported(
  sock: NetlinkSocket,
  kind: LinkSpec["kind"],
): { supported: boolean; reason?: string } {
  const tag = Math.random().toString(36).slice(2, 8);
  const name = `tscnik${tag}`;
  const made: string[] = [];
  try {
    let parentIndex = 0;
    if (kind === "macvlan" || kind === "macvtap" || kind === "ipvlan" || kind === "vlan") {
      const parent = linkAdd(sock, { kind: "veth", name: `tscnip${tag}`, peerName: `tscniq${tag}` });
      made.push(`tscnip${tag}`);
      parentIndex = parent?.index ?? 0;
    }
    const spec = probeSpec(kind, name, parentIndex);
    linkAdd(sock, spec);
    made.push(name);
    return { supported: true };
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    const k = kernelKind(kind);
    if (err instanceof SysError && err.code === "EOPNOTSUPP") {
      return { supported: false, reason: `kernel lacks link kind ${k} (${msg})` };
    }
    return { supported: false, reason: `cannot create ${k} links: ${msg}` };
  } finally {
    for (const n of made.reverse()) {
      try {
        linkDel(sock, n);
      } catch {
        // a macvlan/vlan goes away with its lower device
      }
    }
  }
}

function probeSpec(kind: LinkSpec["kind"], name: string, parentIndex: number): LinkSpec {
  switch (kind) {
    case "veth":
      return { kind, name, peerName: `${name}p` };
    case "macvlan":
    case "macvtap":
    case "ipvlan":
      return { kind, name, parentIndex };
    case "vlan":
      return { kind, name, parentIndex, vlanId: 42 };
    case "vxlan":
      return { kind, name, vni: 42, port: 4789 };
    case "tuntap":
      return { kind, name, mode: "tap" };
    case "vrf":
      return { kind, name, table: 4242 };
    default:
      return { kind, name };
  }
}

function refHeader(ref: LinkRef): Uint8Array {
  return ifinfomsg(typeof ref === "number" ? ref : 0);
}

function refAttrs(ref: LinkRef): Attr[] {
  return typeof ref === "number" ? [] : [attr.str(IFLA_IFNAME, ref)];
}

function aliasAttr(alias: string): Attr {
  // A zero-length IFLA_IFALIAS removes the alias; a NUL-only one would leave an empty alias behind.
  return alias === "" ? attr.bytes(IFLA_IFALIAS, new Uint8Array()) : attr.str(IFLA_IFALIAS, alias);
}
