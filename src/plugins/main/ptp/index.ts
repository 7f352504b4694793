/**
 * ptp: a veth pair per container, routed rather than bridged (upstream plugins/main/ptp). The host end
 * holds the gateway address; the container routes everything through it. See setup.ts for the routes.
 */
import { type Container, withContainer, withHostSocket } from "../../../ip/container.ts";
import { checkIfaceIPs, checkRoutes } from "../../../ip/iface.ts";
import { checkIPMasq, gcIPMasq, setupIPMasq, teardownIPMasq } from "../../../ip/ipmasq.ts";
import { withUndo } from "../../../ip/undo.ts";
import { delLinkByName } from "../../../ip/veth.ts";
import { ipamAdd, ipamCheck, ipamDel, ipamGC, ipamStatus } from "../../../ipam-common/index.ts";
import { addrList } from "../../../netlink/addr.ts";
import { linkByName } from "../../../netlink/link.ts";
import { NsNotFoundError } from "../../../ns/index.ts";
import type { CmdArgs, Plugin } from "../../../skel/types.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import { CNI_VERSIONS, type Interface, type Result } from "../../../spec/types.ts";
import { loadPtpConf, type PtpConf } from "./config.ts";
import { enableForward, ptpAddrs, setupContainerVeth, setupHostVeth } from "./setup.ts";

function fail(msg: string): CniError {
  return new CniError(ErrCode.Internal, msg);
}

function masqOwner(conf: PtpConf, args: CmdArgs) {
  return { network: conf.name, containerID: args.containerID, ifName: args.ifName };
}

async function cmdAdd(args: CmdArgs): Promise<Result> {
  const conf = loadPtpConf(args.stdinData);
  return withHostSocket((hostSock) =>
    withUndo(async (undo) => {
      const result = await ipamAdd(args);
      undo.push({ what: "releasing the IPAM allocation", run: () => ipamDel(args) });
      if (!result.ips?.length) throw fail("IPAM plugin returned missing IP config");
      const addrs = ptpAddrs(result);
      enableForward(addrs);

      const veth = await withContainer(args.netns, (container) =>
        setupContainerVeth({ hostSock, container, ifName: args.ifName, mtu: conf.mtu, result, addrs, undo }),
      );
      setupHostVeth(hostSock, veth, addrs);

      if (conf.ipMasq) {
        const masq = {
          ...masqOwner(conf, args),
          backend: conf.ipMasqBackend,
          ips: result.ips.map((i) => i.address),
        };
        undo.push({ what: "tearing down ip masquerade", run: () => teardownIPMasq(masq) });
        await setupIPMasq(masq);
      }
      if (conf.dns) result.dns = conf.dns;
      result.cniVersion = conf.cniVersion;
      return result;
    }),
  );
}

/** Deletes the container iface (its peer goes with it); returns its addresses, [] when it is gone. */
function deleteContainerIface(c: Container, ifName: string): string[] {
  try {
    const link = linkByName(c.sock, ifName);
    if (!link) return [];
    const ips = addrList(c.sock, { index: link.index }).map((a) => a.address);
    delLinkByName(c.sock, ifName);
    return ips;
  } catch (err) {
    throw CniError.from(err);
  }
}

async function cmdDel(args: CmdArgs): Promise<void> {
  const conf = loadPtpConf(args.stdinData);
  await ipamDel(args);
  let ips: string[] | undefined;
  if (args.netns !== "") {
    try {
      ips = await withContainer(args.netns, (c) => deleteContainerIface(c, args.ifName));
    } catch (err) {
      // The runtime may call DEL after the netns is gone, or twice: nothing left to delete there.
      if (!(err instanceof NsNotFoundError)) throw err;
    }
  }
  // Masquerade rules live in the host netns and are found by owner, so they go even without the netns.
  if (conf.ipMasq) {
    const masq = masqOwner(conf, args);
    await teardownIPMasq(ips?.length ? { ...masq, ips } : masq);
  }
}

/** The container interface of prevResult: named CNI_IFNAME, in CNI_NETNS. */
function containerIface(result: Result, args: CmdArgs): { iface: Interface; index: number } {
  const index = (result.interfaces ?? []).findIndex(
    (i) => i.name === args.ifName && i.sandbox === args.netns,
  );
  const iface = result.interfaces?.[index];
  if (!iface) {
    throw fail(`Sandbox in prevResult doesn't match configured netns: ${args.netns}`);
  }
  return { iface, index };
}

function checkContainer(c: Container, args: CmdArgs, result: Result): void {
  const { iface, index } = containerIface(result, args);
  let link: ReturnType<typeof linkByName>;
  try {
    link = linkByName(c.sock, iface.name);
  } catch (err) {
    throw CniError.from(err);
  }
  if (!link) throw fail(`ptp: Container Interface name in prevResult: ${iface.name} not found`);
  if (link.kind !== "veth") throw fail(`Error: Container interface ${iface.name} not of type veth/p2p`);
  if (iface.mac && iface.mac.toLowerCase() !== link.mac) {
    throw fail(`ptp: Interface ${iface.name} Mac ${iface.mac} doesn't match container Mac: ${link.mac}`);
  }
  const ips = (result.ips ?? []).filter((ipc) => ipc.interface === undefined || ipc.interface === index);
  checkIfaceIPs(c.sock, args.ifName, ips);
  checkRoutes(c.sock, result.routes ?? []);
}

async function cmdCheck(args: CmdArgs): Promise<void> {
  const conf = loadPtpConf(args.stdinData);
  await withContainer(args.netns, async (c) => {
    await ipamCheck(args);
    const result = conf.prevResult;
    if (!result) throw fail("ptp: Required prevResult missing");
    checkContainer(c, args, result);
    if (conf.ipMasq) {
      const ips = (result.ips ?? []).map((i) => i.address);
      await checkIPMasq({ ...masqOwner(conf, args), backend: conf.ipMasqBackend, ips });
    }
  });
}

async function cmdGC(args: CmdArgs): Promise<void> {
  const conf = loadPtpConf(args.stdinData);
  await ipamGC(args);
  // Without the list of live attachments there is no telling which masquerade is stale.
  if (conf.validAttachments) {
    await gcIPMasq({ network: conf.name, validAttachments: conf.validAttachments });
  }
}

async function cmdStatus(args: CmdArgs): Promise<void> {
  loadPtpConf(args.stdinData);
  await ipamStatus(args);
}

export const plugin: Plugin = {
  supportedVersions: CNI_VERSIONS,
  about: "ptp: a routed veth pair per container",
  add: cmdAdd,
  del: cmdDel,
  check: cmdCheck,
  gc: cmdGC,
  status: cmdStatus,
};
