/**
 * macvlan: the container gets a macvlan on a host interface (the master), with its own MAC, in one of
 * the kernel's modes (upstream plugins/main/macvlan v1.9, plus mode "source"). With linkInContainer the
 * master is in the container netns. IPAM is optional: without it the interface is layer 2 only.
 */
import {
  announceSysctls,
  checkAddressesAndRoutes,
  checkRecordedLink,
  containerIfaceOf,
  ipamOnIface,
  mustLink,
  requirePrevResult,
  setUp,
} from "../../../ip/attach.ts";
import { type Container, deleteContainerLink, withContainer, withHostSocket } from "../../../ip/container.ts";
import { checkMtu, defaultRouteLink, findMaster, masterSocket } from "../../../ip/sublink.ts";
import { type UndoList, withUndo } from "../../../ip/undo.ts";
import { delLinkByName } from "../../../ip/veth.ts";
import { ipamCheck, ipamDel, ipamGC, ipamStatus } from "../../../ipam-common/index.ts";
import { type Link, linkAdd } from "../../../netlink/link.ts";
import type { NetlinkSocket } from "../../../netlink/socket.ts";
import type { CmdArgs, Plugin } from "../../../skel/types.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import { CNI_VERSIONS, type Interface, type Result } from "../../../spec/types.ts";
import { loadMacvlanConf, type MacvlanConf } from "./config.ts";

function fail(msg: string): CniError {
  return new CniError(ErrCode.Internal, msg);
}

interface Handles {
  hostSock: NetlinkSocket;
  container: Container;
}

function withHandles<T>(args: CmdArgs, fn: (h: Handles) => Promise<T>): Promise<T> {
  return withHostSocket((hostSock) => withContainer(args.netns, (container) => fn({ hostSock, container })));
}

/** The socket of the netns the master lives in. */
function masterSock(h: Handles, conf: MacvlanConf): NetlinkSocket {
  return masterSocket(h.hostSock, h.container, conf.linkInContainer);
}

/** The master link: the configured one, else the default route's; the MTU bounded by its MTU. */
function resolveMaster(h: Handles, conf: MacvlanConf): Link {
  const sock = masterSock(h, conf);
  const master =
    conf.master === ""
      ? defaultRouteLink(sock, conf.linkInContainer)
      : findMaster(sock, conf.master, conf.linkInContainer);
  checkMtu(conf.mtu, master);
  return master;
}

/** Creates the macvlan as CNI_IFNAME straight in the container netns; its undo deletes it. */
function createMacvlan(
  h: Handles,
  args: CmdArgs,
  conf: MacvlanConf,
  master: Link,
  undo: UndoList,
): Interface {
  const sock = h.container.sock;
  try {
    linkAdd(masterSock(h, conf), {
      kind: "macvlan",
      name: args.ifName,
      parentIndex: master.index,
      mode: conf.mode,
      ...(conf.mtu ? { mtu: conf.mtu } : {}),
      ...(conf.mac ? { mac: conf.mac } : {}),
      ...(conf.bcQueueLen ? { bcQueueLen: conf.bcQueueLen } : {}),
      ...(conf.linkInContainer ? {} : { netnsFd: h.container.ns.fd }),
    });
  } catch (err) {
    throw CniError.from(err, `failed to create macvlan ${args.ifName} on ${master.name}`);
  }
  undo.push({ what: `deleting macvlan ${args.ifName}`, run: () => delLinkByName(sock, args.ifName) });
  const link = mustLink(sock, args.ifName, `failed to refetch macvlan ${JSON.stringify(args.ifName)}`);
  return { name: link.name, mac: link.mac, sandbox: args.netns };
}

async function cmdAdd(args: CmdArgs): Promise<Result> {
  const conf = loadMacvlanConf(args.stdinData, args.args);
  return withHandles(args, (h) =>
    withUndo(async (undo) => {
      const master = resolveMaster(h, conf);
      const iface = createMacvlan(h, args, conf, master, undo);
      let result: Result;
      if (conf.ipamType) {
        result = await ipamOnIface({
          args,
          container: h.container,
          ifName: args.ifName,
          iface,
          sysctls: announceSysctls(args.ifName),
          undo,
        });
      } else {
        setUp(h.container.sock, args.ifName);
        result = { cniVersion: "1.1.0", interfaces: [iface] };
      }
      // Upstream gives the config's DNS, not IPAM's.
      if (conf.dns) result.dns = conf.dns;
      else delete result.dns;
      return result;
    }),
  );
}

/**
 * Releases the addresses, then deletes the macvlan (IPAM first, as upstream: dhcp releases its lease
 * from the interface). A netns that is gone, or an interface already deleted, is done.
 */
async function cmdDel(args: CmdArgs): Promise<void> {
  const conf = loadMacvlanConf(args.stdinData, args.args, { forDel: true });
  if (conf.ipamType) await ipamDel(args);
  await deleteContainerLink(args.netns, args.ifName, "macvlan");
}

function checkMacvlan(h: Handles, args: CmdArgs, conf: MacvlanConf, result: Result, master: Link): void {
  const rec = containerIfaceOf(result, args);
  const link = checkRecordedLink(h.container.sock, rec);
  if (link.info?.kind !== "macvlan") {
    throw fail(
      `Error: Container interface ${rec.name} not of type macvlan (it is ${link.kind ?? "a device"})`,
    );
  }
  if (link.info.mode !== conf.mode) {
    throw fail(`container macvlan mode ${link.info.mode} does not match expected value: ${conf.mode}`);
  }
  if (link.parentIndex !== master.index) {
    throw fail(`container macvlan ${rec.name} is not on master ${master.name}`);
  }
  checkAddressesAndRoutes(h.container.sock, args.ifName, result);
}

async function cmdCheck(args: CmdArgs): Promise<void> {
  const conf = loadMacvlanConf(args.stdinData, args.args);
  await withHandles(args, async (h) => {
    const master = resolveMaster(h, conf);
    if (conf.ipamType) await ipamCheck(args);
    checkMacvlan(h, args, conf, requirePrevResult(conf.prevResult), master);
  });
}

async function cmdGC(args: CmdArgs): Promise<void> {
  const conf = loadMacvlanConf(args.stdinData, args.args, { forDel: true });
  if (conf.ipamType) await ipamGC(args);
}

async function cmdStatus(args: CmdArgs): Promise<void> {
  const conf = loadMacvlanConf(args.stdinData, args.args, { forDel: true });
  if (conf.ipamType) await ipamStatus(args);
}

export const plugin: Plugin = {
  supportedVersions: CNI_VERSIONS,
  about: "macvlan: a macvlan of a host interface per container",
  add: cmdAdd,
  del: cmdDel,
  check: cmdCheck,
  gc: cmdGC,
  status: cmdStatus,
};
