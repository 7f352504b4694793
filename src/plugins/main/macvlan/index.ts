/**
 * macvlan: the container gets a macvlan on a host interface (the master), with its own MAC, in one of
 * the kernel's modes (upstream plugins/main/macvlan v1.9, plus mode "source"). With linkInContainer the
 * master is in the container netns. IPAM is optional: without it the interface is layer 2 only.
 */
import {
  checkAddressesAndRoutes,
  checkRecordedLink,
  containerIfaceOf,
  ipamOnIface,
  mustLink,
  requirePrevResult,
  setUp,
} from "../../../ip/attach.ts";
import { type Container, withContainer } from "../../../ip/container.ts";
import { type UndoList, withUndo } from "../../../ip/undo.ts";
import { delLinkByName } from "../../../ip/veth.ts";
import { ipamCheck, ipamDel, ipamGC, ipamStatus } from "../../../ipam-common/index.ts";
import { type Link, linkAdd, linkByIndex } from "../../../netlink/link.ts";
import { routeList } from "../../../netlink/route.ts";
import { NetlinkSocket } from "../../../netlink/socket.ts";
import { NsNotFoundError } from "../../../ns/index.ts";
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

async function withHandles<T>(args: CmdArgs, fn: (h: Handles) => Promise<T>): Promise<T> {
  let hostSock: NetlinkSocket;
  try {
    hostSock = NetlinkSocket.open();
  } catch (err) {
    throw CniError.from(err, "opening a netlink socket in the host netns");
  }
  try {
    return await withContainer(args.netns, (container) => fn({ hostSock, container }));
  } finally {
    hostSock.close();
  }
}

/** The socket of the netns the master lives in. */
function masterSock(h: Handles, conf: MacvlanConf): NetlinkSocket {
  return conf.linkInContainer ? h.container.sock : h.hostSock;
}

/** The interface of the first default route (IPv4 first, like upstream's route dump order). */
function defaultRouteLink(sock: NetlinkSocket, where: string): Link {
  let found: Link | undefined;
  try {
    const def = routeList(sock).find((r) => (r.dst === "0.0.0.0/0" || r.dst === "::/0") && r.index);
    if (def?.index) found = linkByIndex(sock, def.index);
  } catch (err) {
    throw CniError.from(err, `looking for the default route interface in the ${where}`);
  }
  if (!found) throw fail(`no default route interface found in the ${where} (set "master")`);
  return found;
}

/** The master link: the configured one, else the default route's; the MTU bounded by its MTU. */
function resolveMaster(h: Handles, conf: MacvlanConf): Link {
  const sock = masterSock(h, conf);
  const where = conf.linkInContainer ? "container netns" : "host netns";
  const master =
    conf.master === ""
      ? defaultRouteLink(sock, where)
      : mustLink(sock, conf.master, `failed to lookup master ${JSON.stringify(conf.master)} in the ${where}`);
  if (conf.mtu > master.mtu) {
    throw new CniError(
      ErrCode.InvalidNetworkConfig,
      `invalid MTU ${conf.mtu}, must be [0, master MTU(${master.mtu})]`,
    );
  }
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
          sysctls: [`net/ipv4/conf/${args.ifName}/arp_notify`, `net/ipv6/conf/${args.ifName}/ndisc_notify`],
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
 * Deletes the macvlan, then releases the addresses (so they are never handed out while still in use).
 * A netns that is gone, or an interface already deleted, is done.
 */
async function cmdDel(args: CmdArgs): Promise<void> {
  const conf = loadMacvlanConf(args.stdinData, args.args, { forDel: true });
  // IPAM first, as upstream: dhcp releases its lease from the container interface, which must still exist
  if (conf.ipamType) await ipamDel(args);
  if (args.netns !== "") {
    try {
      await withContainer(args.netns, (c) => delLinkByName(c.sock, args.ifName));
    } catch (err) {
      if (!(err instanceof NsNotFoundError)) throw err;
    }
  }
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
