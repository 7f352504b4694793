/**
 * What upstream bandwidth (plugins 1.1.1) puts in the host netns, built and checked over netlink:
 *
 *  - ingress (toward the container): `tc qdisc add dev <host veth> root handle 1: tbf …`
 *  - egress (from the container): an ifb `bwp<hash>` (up, the veth's MTU and txqlen), an ingress qdisc
 *    ffff: on the host veth with a u32 match-all filter (prio 1, protocol all, flowid 1:1) whose mirred
 *    actions redirect every packet to the ifb — upstream leaves two, "stolen" then "pass" — and
 *    `tc qdisc add dev <ifb> root handle 1: tbf …`.
 *
 * TBF numbers come from tbfParams (upstream's arithmetic: bytes/s, buffer in psched ticks, latency
 * 25 ms → limit).
 *
 * The ifb's name is upstream's: "bwp" + the first 12 hex digits of sha512(network + containerID). Its
 * IFLA_IFALIAS is ours: "<network>/<containerID>/<ifName>" — none of the three can hold a "/" — so GC
 * can tell whose ifb it is without a state file.
 */
import { sha512hex } from "../../../ip/hash.ts";
import type { UndoList } from "../../../ip/undo.ts";
import {
  filterAddU32MatchAllMirred,
  filterList,
  type Link,
  linkAdd,
  linkByName,
  linkDel,
  MIRRED,
  type NetlinkSocket,
  parseHandle,
  type QdiscInfo,
  qdiscAdd,
  qdiscDel,
  qdiscList,
  TC_H_INGRESS,
  TC_H_ROOT,
  tbfParams,
} from "../../../netlink/index.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import { isErrno } from "../../../sys/errno.ts";
import type { Shape } from "./config.ts";

const MAX_IFB_NAME = 15;
const IFB_PREFIX = "bwp";
const TBF_HANDLE = "1:";
const INGRESS_HANDLE = "ffff:";

/** upstream getIfbDeviceName: utils.MustFormatHashWithPrefix(15, "bwp", network + containerID). */
export function ifbName(network: string, containerID: string): string {
  const hex = sha512hex(network + containerID);
  return `${IFB_PREFIX}${hex}`.slice(0, MAX_IFB_NAME);
}

export interface IfbOwner {
  network: string;
  containerID: string;
  ifName: string;
}

export function ifbAlias(o: IfbOwner): string {
  return `${o.network}/${o.containerID}/${o.ifName}`;
}

/** The owner an alias names, when the alias is ours and matches the ifb's name. */
export function parseIfbAlias(link: Pick<Link, "name" | "alias">): IfbOwner | undefined {
  const parts = link.alias?.split("/");
  if (parts?.length !== 3) return undefined;
  const [network = "", containerID = "", ifName = ""] = parts;
  if (ifbName(network, containerID) !== link.name) return undefined;
  return { network, containerID, ifName };
}

function kernelError(err: unknown, op: string): CniError {
  return CniError.from(err, op);
}

function addTbf(sock: NetlinkSocket, link: Pick<Link, "index" | "name">, shape: Shape): void {
  qdiscAdd(sock, {
    kind: "tbf",
    index: link.index,
    devName: link.name,
    handle: TBF_HANDLE,
    parent: "root",
    ...tbfParams(shape),
  });
}

/** Root tbf on the host veth: shapes what the container receives. */
export function addIngressShaping(sock: NetlinkSocket, host: Link, shape: Shape, undo: UndoList): void {
  try {
    addTbf(sock, host, shape);
  } catch (err) {
    throw kernelError(err, `create ingress qdisc on ${host.name}`);
  }
  undo.push({
    what: `deleting the tbf qdisc of ${host.name}`,
    run: () => qdiscDel(sock, { index: host.index, devName: host.name, parent: "root" }),
  });
}

/** ifb + redirect of the host veth's ingress + tbf on the ifb: shapes what the container sends. */
export function addEgressShaping(
  sock: NetlinkSocket,
  host: Link,
  owner: IfbOwner,
  shape: Shape,
  undo: UndoList,
): Link {
  const name = ifbName(owner.network, owner.containerID);
  let ifb: Link | undefined;
  try {
    ifb = linkAdd(sock, {
      kind: "ifb",
      name,
      mtu: host.mtu,
      txqlen: host.txqlen,
      alias: ifbAlias(owner),
      up: true,
    });
  } catch (err) {
    throw kernelError(err, `adding ifb ${name}`);
  }
  if (!ifb) throw new CniError(ErrCode.Internal, `adding ifb ${name}: not found after creating it`);
  undo.push({ what: `deleting ifb ${name}`, run: () => linkDel(sock, name) });
  try {
    qdiscAdd(sock, { kind: "ingress", index: host.index, devName: host.name, handle: INGRESS_HANDLE });
  } catch (err) {
    throw kernelError(err, `create ingress qdisc on ${host.name}`);
  }
  undo.push({
    what: `deleting the ingress qdisc of ${host.name}`,
    run: () => qdiscDel(sock, { index: host.index, devName: host.name, parent: "ingress" }),
  });
  try {
    filterAddU32MatchAllMirred(sock, {
      index: host.index,
      devName: host.name,
      parent: INGRESS_HANDLE,
      redirectToIndex: ifb.index,
      priority: 1,
      protocol: "all",
      classId: "1:1",
      controls: ["stolen", "pass"],
    });
    addTbf(sock, ifb, shape);
  } catch (err) {
    throw kernelError(err, `redirecting ${host.name} through ${name}`);
  }
  return ifb;
}

/** Removes the ifb; a missing one is success (DEL is idempotent). */
export function deleteIfb(sock: NetlinkSocket, name: string): void {
  try {
    linkDel(sock, name);
  } catch (err) {
    if (!isErrno(err, "ENODEV", "ENOENT")) throw kernelError(err, `deleting ifb ${name}`);
  }
}

/** Takes this plugin's qdiscs off the host veth (root tbf 1: and ingress ffff:); absent ones are fine. */
export function removeHostQdiscs(sock: NetlinkSocket, host: Link): void {
  const mine = (q: QdiscInfo) =>
    (q.parent === TC_H_ROOT && q.kind === "tbf" && q.handle === parseHandle(TBF_HANDLE)) ||
    (q.parent === TC_H_INGRESS && q.kind === "ingress");
  for (const q of qdiscList(sock, host.index).filter(mine)) {
    try {
      qdiscDel(sock, {
        index: host.index,
        devName: host.name,
        parent: q.parent === TC_H_ROOT ? "root" : "ingress",
      });
    } catch (err) {
      if (!isErrno(err, "ENOENT", "EINVAL", "ENODEV"))
        throw kernelError(err, `deleting qdisc of ${host.name}`);
    }
  }
}

// ---- CHECK ----

function checkFailed(msg: string): CniError {
  return new CniError(ErrCode.Internal, msg);
}

/** The root tbf of a link must carry exactly the parameters ADD would set. */
export function checkTbf(sock: NetlinkSocket, link: Link, shape: Shape): void {
  const want = tbfParams(shape);
  const root = qdiscList(sock, link.index).find((q) => q.parent === TC_H_ROOT);
  if (root?.kind !== "tbf" || !root.tbf) {
    throw checkFailed(`bandwidth: no tbf qdisc on ${link.name} (found ${root?.kind ?? "none"})`);
  }
  for (const key of ["rate", "buffer", "limit"] as const) {
    if (root.tbf[key] !== want[key]) {
      throw checkFailed(`bandwidth: tbf ${key} of ${link.name} is ${root.tbf[key]}, configured ${want[key]}`);
    }
  }
}

/** The host veth's ingress must be redirected to the ifb by a mirred filter. */
export function checkRedirect(sock: NetlinkSocket, host: Link, ifb: Link): void {
  const ingress = qdiscList(sock, host.index).find((q) => q.kind === "ingress");
  if (!ingress) throw checkFailed(`bandwidth: no ingress qdisc on ${host.name}`);
  const redirects = filterList(sock, host.index, INGRESS_HANDLE).some((f) =>
    f.actions.some((a) => a.mirred?.direction === MIRRED.egressRedirect && a.mirred.ifindex === ifb.index),
  );
  if (!redirects) throw checkFailed(`bandwidth: ${host.name} does not redirect its ingress to ${ifb.name}`);
}

export function ifbByName(sock: NetlinkSocket, name: string): Link {
  const ifb = linkByName(sock, name);
  if (ifb?.kind !== "ifb") throw checkFailed(`bandwidth: ifb ${name} not found`);
  return ifb;
}
