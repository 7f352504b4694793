/**
 * bandwidth (upstream plugins/meta/bandwidth, plugins 1.1.1): a chained plugin that limits a container's
 * traffic with token bucket filters in the host netns (shaping.ts): what it receives on the host veth,
 * what it sends on an ifb the host veth's ingress is redirected to. prevResult is passed on, with the ifb
 * appended to its interfaces when egress is shaped (as upstream).
 *
 * The host veth is found like upstream getHostInterface: the container interface's veth peer index,
 * looked up in the host netns, must be an interface of prevResult without a sandbox.
 *
 * DEL removes the ifb and this plugin's qdiscs on the host veth (upstream only removes the ifb); every
 * part that is already gone is success. GC (upstream has none) deletes this network's ifbs whose
 * attachment (read from the ifb's alias) is not in cni.dev/valid-attachments.
 */
import { withUndo } from "../../../ip/undo.ts";
import { hostVethPeerIndex } from "../../../ip/veth.ts";
import { type Link, linkByIndex, linkByName, linkList, NetlinkSocket } from "../../../netlink/index.ts";
import { NsNotFoundError, openNetns } from "../../../ns/index.ts";
import type { CmdArgs, Plugin } from "../../../skel/types.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import type { Result } from "../../../spec/types.ts";
import { validateInterfaceName } from "../../../spec/validate.ts";
import { type BandwidthConf, parseBandwidthConf } from "./config.ts";
import {
  addEgressShaping,
  addIngressShaping,
  checkRedirect,
  checkTbf,
  deleteIfb,
  ifbByName,
  ifbName,
  parseIfbAlias,
  removeHostQdiscs,
} from "./shaping.ts";

function load(args: CmdArgs): BandwidthConf {
  return parseBandwidthConf(args.stdinData);
}

function requirePrevResult(conf: BandwidthConf): Result {
  if (!conf.prevResult) {
    throw new CniError(ErrCode.InvalidNetworkConfig, "must be called as chained plugin");
  }
  return conf.prevResult;
}

/** The veth peer index of the container interface, read inside the container netns. */
function containerPeerIndex(netnsPath: string, ifName: string): number {
  let ns: ReturnType<typeof openNetns>;
  try {
    ns = openNetns(netnsPath);
  } catch (err) {
    throw CniError.from(err, `failed to open netns ${JSON.stringify(netnsPath)}`);
  }
  let sock: NetlinkSocket | undefined;
  try {
    sock = NetlinkSocket.open({ netnsFd: ns.fd });
    const peer = hostVethPeerIndex(sock, ifName);
    if (!peer) throw new CniError(ErrCode.Internal, `container interface ${ifName} has no veth peer`);
    return peer;
  } finally {
    sock?.close();
    ns.close();
  }
}

/** upstream getHostInterface: the container's veth peer, which prevResult lists without a sandbox. */
function hostInterface(hostSock: NetlinkSocket, prev: Result, args: CmdArgs): Link {
  const ifaces = prev.interfaces ?? [];
  if (ifaces.length === 0) throw new CniError(ErrCode.InvalidNetworkConfig, "no interfaces provided");
  const peer = containerPeerIndex(args.netns, args.ifName);
  const link = linkByIndex(hostSock, peer);
  // An index from another netns may name an unrelated link here: it must be a veth too.
  if (link?.kind !== "veth") {
    throw new CniError(ErrCode.Internal, `veth peer with index ${peer} is not in host ns`);
  }
  if (!ifaces.some((i) => !i.sandbox && i.name === link.name)) {
    throw new CniError(ErrCode.Internal, "no veth peer of container interface found in host ns");
  }
  return link;
}

function withHostSocket<T>(fn: (sock: NetlinkSocket) => T | Promise<T>): Promise<T> {
  const sock = NetlinkSocket.open();
  return Promise.resolve()
    .then(() => fn(sock))
    .finally(() => sock.close());
}

async function cmdAdd(args: CmdArgs): Promise<Result> {
  const conf = load(args);
  if (!conf.ingress && !conf.egress) {
    return { ...(conf.prevResult ?? {}), cniVersion: conf.cniVersion };
  }
  const prev = requirePrevResult(conf);
  return withHostSocket((sock) =>
    withUndo(async (undo) => {
      const host = hostInterface(sock, prev, args);
      const result: Result = { ...prev, cniVersion: conf.cniVersion };
      if (conf.ingress) addIngressShaping(sock, host, conf.ingress, undo);
      if (conf.egress) {
        const owner = { network: conf.name, containerID: args.containerID, ifName: args.ifName };
        const ifb = addEgressShaping(sock, host, owner, conf.egress, undo);
        result.interfaces = [...(prev.interfaces ?? []), { name: ifb.name, mac: ifb.mac }];
      }
      return result;
    }),
  );
}

function isValidInterfaceName(name: string): boolean {
  try {
    validateInterfaceName(name);
    return true;
  } catch {
    return false;
  }
}

/**
 * The host veth for DEL, or undefined when it (or the container netns) is already gone. DEL only
 * cleans up, so when prevResult's host side has exactly one veth that exists, that is it (the bridge
 * lists bridge + veth, ptp the veth); otherwise, as on ADD, through the container's veth peer, which
 * costs opening the container netns (~1 ms of a DEL).
 */
function hostInterfaceIfAny(sock: NetlinkSocket, conf: BandwidthConf, args: CmdArgs): Link | undefined {
  if (!conf.prevResult || args.netns === "") return undefined;
  const hostVeths = (conf.prevResult.interfaces ?? [])
    .filter((i) => !i.sandbox && isValidInterfaceName(i.name))
    .map((i) => linkByName(sock, i.name))
    .filter((l): l is Link => l?.kind === "veth");
  if (hostVeths.length === 1) return hostVeths[0];
  try {
    return hostInterface(sock, conf.prevResult, args);
  } catch (err) {
    if (err instanceof CniError || err instanceof NsNotFoundError) return undefined;
    throw err;
  }
}

async function cmdDel(args: CmdArgs): Promise<void> {
  const conf = load(args);
  await withHostSocket((sock) => {
    const host = hostInterfaceIfAny(sock, conf, args);
    if (host) removeHostQdiscs(sock, host);
    deleteIfb(sock, ifbName(conf.name, args.containerID));
  });
}

async function cmdCheck(args: CmdArgs): Promise<void> {
  const conf = load(args);
  const prev = requirePrevResult(conf);
  await withHostSocket((sock) => {
    const host = hostInterface(sock, prev, args);
    if (conf.ingress) checkTbf(sock, host, conf.ingress);
    if (conf.egress) {
      const ifb = ifbByName(sock, ifbName(conf.name, args.containerID));
      checkTbf(sock, ifb, conf.egress);
      checkRedirect(sock, host, ifb);
    }
  });
}

/** Deletes this network's ifbs whose attachment the runtime no longer lists. */
async function cmdGC(args: CmdArgs): Promise<void> {
  const conf = load(args);
  const attachments = conf.validAttachments;
  if (!attachments) {
    throw new CniError(ErrCode.InvalidNetworkConfig, "GC: config is missing cni.dev/valid-attachments");
  }
  const valid = new Set(attachments.map((a) => `${a.containerID}/${a.ifname}`));
  await withHostSocket((sock) => {
    for (const link of linkList(sock)) {
      if (link.kind !== "ifb") continue;
      // ifbs without our alias (upstream's) cannot be attributed to an attachment: left alone.
      const owner = parseIfbAlias(link);
      if (owner?.network === conf.name && !valid.has(`${owner.containerID}/${owner.ifName}`)) {
        deleteIfb(sock, link.name);
      }
    }
  });
}

export const plugin: Plugin = {
  // Like upstream, from 0.3.0 on: the host veth is found through prevResult's interfaces.
  supportedVersions: ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"],
  about: "bandwidth: limits a container's ingress and egress rate with tbf qdiscs",
  add: cmdAdd,
  del: cmdDel,
  check: cmdCheck,
  gc: cmdGC,
};
