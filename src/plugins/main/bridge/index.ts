/**
 * bridge: containers on one Linux bridge in the host netns, each through a veth pair whose host end is
 * a bridge port; optionally the bridge is their gateway and their traffic is masqueraded
 * (upstream plugins/main/bridge, with the options of plugins ≥ 1.2). GC, which upstream lacks, removes
 * the masquerade of attachments the runtime no longer lists and forwards to IPAM.
 */

import { withUndo } from "../../../ip/undo.ts";
import { ipamCheck, ipamDel, ipamGC, ipamStatus } from "../../../ipam-common/index.ts";
import { addrList } from "../../../netlink/addr.ts";
import { linkByName, linkDel } from "../../../netlink/link.ts";
import { NetlinkSocket } from "../../../netlink/socket.ts";
import { currentNetns, type NetNS, NsNotFoundError, openNetns } from "../../../ns/index.ts";
import type { CmdArgs, Plugin } from "../../../skel/types.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import { parseJSONObject } from "../../../spec/json.ts";
import { parsePrevResult } from "../../../spec/result.ts";
import { CNI_VERSIONS, type NetConf, type Result } from "../../../spec/types.ts";
import { isErrno } from "../../../sys/errno.ts";
import {
  allocate,
  applyIpam,
  baseResult,
  configureContainer,
  finish,
  type Handles,
  ipMasq,
  plugVeth,
  setupBridge,
  setupGateways,
  spoofCheck,
} from "./add.ts";
import { checkAttachment } from "./check.ts";
import { type BridgeConf, loadBridgeConf } from "./config.ts";

function load(args: CmdArgs): BridgeConf {
  return loadBridgeConf(args.stdinData, args.args, { forDel: args.command === "DEL" });
}

function openContainerNs(path: string): NetNS {
  try {
    return openNetns(path);
  } catch (err) {
    throw CniError.from(err, `failed to open netns "${path}"`);
  }
}

/** Opens the container netns and a socket in each netns, runs fn, closes them all. */
async function withHandles<T>(contNs: NetNS, fn: (h: Handles) => Promise<T>): Promise<T> {
  const opened: { close(): void }[] = [contNs];
  try {
    const hostNs = currentNetns();
    opened.push(hostNs);
    const hostSock = NetlinkSocket.open();
    opened.push(hostSock);
    const contSock = NetlinkSocket.open({ netnsFd: contNs.fd });
    opened.push(contSock);
    return await fn({ hostNs, hostSock, contNs, contSock });
  } finally {
    for (const o of opened.reverse()) o.close();
  }
}

async function cmdAdd(args: CmdArgs): Promise<Result> {
  const conf = load(args);
  return withHandles(openContainerNs(args.netns), (h) =>
    withUndo(async (undo) => {
      const br = setupBridge(h, conf);
      // The veth before IPAM (upstream's order): a repeated ADD fails on the existing interface before
      // it could reach IPAM, whose rollback would release the first ADD's addresses too.
      const pair = plugVeth(h, args, conf, br, undo);
      await spoofCheck(args, conf, pair, undo);
      const ipam = await allocate(args, conf, undo);
      const result = baseResult(args, br, pair);
      if (ipam) {
        const gateways = applyIpam(result, ipam, conf);
        await configureContainer(h, args, conf, result);
        setupGateways(h, conf, br, gateways, result);
        await ipMasq(args, conf, result, undo);
      }
      await finish(h, conf, pair, result);
      return result;
    }),
  );
}

/** The container interface found for DEL: its addresses, and how to delete it (with its veth peer). */
interface ContainerIface {
  ips: string[];
  remove(): void;
  /** Closes the handles without deleting (idempotent; remove() does it too). */
  release(): void;
}

/**
 * Finds the container interface and its addresses; undefined when the netns or the interface is
 * already gone. The caller must call remove() (which also releases the handles).
 */
function findContainerIface(args: CmdArgs): ContainerIface | undefined {
  if (args.netns === "") return undefined;
  let ns: NetNS;
  try {
    ns = openNetns(args.netns);
  } catch (err) {
    if (err instanceof NsNotFoundError) return undefined;
    throw CniError.from(err, `failed to open netns "${args.netns}"`);
  }
  let sock: NetlinkSocket | undefined;
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    sock?.close();
    ns.close();
  };
  const what = `deleting ${args.ifName} in netns "${args.netns}"`;
  try {
    const s = NetlinkSocket.open({ netnsFd: ns.fd });
    sock = s;
    const link = linkByName(s, args.ifName);
    if (!link) {
      release();
      return undefined;
    }
    const ips = addrList(s, { index: link.index })
      .filter((a) => !(a.version === 6 && /^fe[89ab]/i.test(a.ip)))
      .map((a) => a.address);
    const remove = () => {
      try {
        linkDel(s, link.index);
      } catch (err) {
        if (!isErrno(err, "ENODEV")) throw CniError.from(err, what);
      } finally {
        release();
      }
    };
    return { ips, remove, release };
  } catch (err) {
    release();
    throw CniError.from(err, what);
  }
}

/**
 * The interface goes before the addresses are released, so an address is never handed to another
 * container while this one still has it; the masquerade goes first of all. Every step tolerates
 * "already gone".
 *
 * Why the masquerade first, on a socket closed last: removing nft elements makes the kernel free them
 * after an RCU grace period, and closing the socket waits for that (~15 ms); deleting the veth waits
 * for grace periods too. Committing before the veth delete and closing after lets both waits overlap.
 */
async function cmdDel(args: CmdArgs): Promise<void> {
  const conf = load(args);
  const iface = findContainerIface(args);
  let nftSocket: NetlinkSocket | undefined;
  try {
    // The firewall modules load only when a config uses them: they cost start-up time.
    if (conf.ipMasq) {
      const { teardownIPMasq } = await import("../../../ip/ipmasq.ts");
      const { openNftSocket } = await import("../../../netlink/nftables.ts");
      nftSocket = openNftSocket();
      // No backend: an attachment made under another ipMasqBackend is removed too (upstream does both).
      await teardownIPMasq({
        network: conf.name,
        containerID: args.containerID,
        ifName: args.ifName,
        ips: iface?.ips ?? [],
        nftSocket,
      });
    }
    // IPAM first, as upstream: a dhcp lease is released from the container's interface, so it must
    // still exist
    if (conf.ipamType) await ipamDel(args);
    iface?.remove();
    if (conf.macSpoofChk) {
      const { teardownSpoofCheck } = await import("./macspoofchk.ts");
      await teardownSpoofCheck({ containerID: args.containerID, ifName: args.ifName });
    }
  } finally {
    iface?.release();
    nftSocket?.close();
  }
}

function prevResult(args: CmdArgs): Result {
  const raw = parseJSONObject(args.stdinData, "network configuration") as NetConf;
  const prev = parsePrevResult(raw);
  if (!prev) throw new CniError(ErrCode.InvalidNetworkConfig, "Required prevResult missing");
  return prev;
}

async function cmdCheck(args: CmdArgs): Promise<void> {
  const conf = load(args);
  const contNs = openContainerNs(args.netns);
  await withHandles(contNs, async (h) => {
    if (conf.ipamType) await ipamCheck(args);
    await checkAttachment(h, args, conf, prevResult(args));
  });
}

async function cmdGC(args: CmdArgs): Promise<void> {
  const conf = load(args);
  if (conf.ipMasq) {
    if (!conf.validAttachments) {
      throw new CniError(ErrCode.InvalidNetworkConfig, "GC: config is missing cni.dev/valid-attachments");
    }
    const { gcIPMasq } = await import("../../../ip/ipmasq.ts");
    await gcIPMasq({ network: conf.name, validAttachments: conf.validAttachments });
  }
  if (conf.ipamType) await ipamGC(args);
}

async function cmdStatus(args: CmdArgs): Promise<void> {
  const conf = load(args);
  if (conf.ipamType) await ipamStatus(args);
}

export const plugin: Plugin = {
  supportedVersions: CNI_VERSIONS,
  about: "bridge: containers on a Linux bridge through veth pairs",
  add: cmdAdd,
  del: cmdDel,
  check: cmdCheck,
  gc: cmdGC,
  status: cmdStatus,
};
