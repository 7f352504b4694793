/**
 * host-device: moves an existing host interface into the container as CNI_IFNAME (upstream
 * plugins/main/host-device v1.9) and back under its original name on DEL. The original name travels
 * in the link's alias, as upstream. Optional IPAM puts addresses and routes on it.
 *
 * Moving and renaming are one RTM_SETLINK (the kernel renames during the move). Names are checked on
 * the far side first, so a taken name fails before anything moves: DEL never strands the device.
 */
import {
  checkAddressesAndRoutes,
  checkRecordedLink,
  containerIfaceOf,
  ipamOnIface,
  requirePrevResult,
} from "../../../ip/attach.ts";
import { type Container, withContainer, withHostSocket } from "../../../ip/container.ts";
import { type UndoList, withUndo } from "../../../ip/undo.ts";
import { ipamAdd, ipamCheck, ipamDel, ipamStatus } from "../../../ipam-common/index.ts";
import { type Link, linkByName, linkList, linkSet } from "../../../netlink/link.ts";
import type { NetlinkSocket } from "../../../netlink/socket.ts";
import { currentNetns, type NetNS, NsNotFoundError } from "../../../ns/index.ts";
import type { CmdArgs, Plugin } from "../../../skel/types.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import { CNI_VERSIONS, type Interface, type Result } from "../../../spec/types.ts";
import {
  type DeviceSelector,
  type HostDeviceConf,
  loadHostDeviceConf,
  netdevUnder,
  pciNetDir,
  SYS_BUS_AUXILIARY,
} from "./config.ts";

function fail(msg: string): CniError {
  return new CniError(ErrCode.Internal, msg);
}

interface Handles {
  hostNs: NetNS;
  hostSock: NetlinkSocket;
  container: Container;
}

async function withHandles<T>(args: CmdArgs, fn: (h: Handles) => Promise<T>): Promise<T> {
  const hostNs = currentNetns();
  try {
    return await withHostSocket((hostSock) =>
      withContainer(args.netns, (container) => fn({ hostNs, hostSock, container })),
    );
  } finally {
    hostNs.close();
  }
}

function describe(sel: DeviceSelector): string {
  switch (sel.by) {
    case "device":
      return `device ${sel.name}`;
    case "hwaddr":
      return `hwaddr ${sel.mac}`;
    case "kernelpath":
      return `kernelpath ${sel.path}`;
    case "pciBusID":
      return `pciBusID ${sel.address}`;
    case "auxDevice":
      return `auxiliary device ${sel.name}`;
  }
}

/** The host link the config selects (upstream getLink). */
function findHostDevice(sock: NetlinkSocket, sel: DeviceSelector): Link {
  const what = `failed to find host device (${describe(sel)})`;
  let name: string | undefined;
  let link: Link | undefined;
  try {
    switch (sel.by) {
      case "device":
        name = sel.name;
        break;
      case "hwaddr":
        link = linkList(sock).find((l) => l.mac === sel.mac);
        break;
      case "kernelpath":
        name = netdevUnder(`${sel.path}/net`);
        break;
      case "pciBusID":
        name = netdevUnder(pciNetDir(sel.address));
        break;
      case "auxDevice":
        name = netdevUnder(`${SYS_BUS_AUXILIARY}/${sel.name}/net`);
        break;
    }
    if (name !== undefined) link = linkByName(sock, name);
  } catch (err) {
    throw CniError.from(err, what);
  }
  if (!link) throw fail(`${what}: Link not found`);
  return link;
}

/**
 * Moves `link` from `from` into the netns `toFd` as `name`, with `alias`. The name must be free there
 * (checked through `toSock` first): the kernel moves under the old name when that one is free and
 * renames after, so a taken new name would otherwise leave the device moved but not renamed.
 */
function moveLink(
  from: NetlinkSocket,
  link: Link,
  to: { sock: NetlinkSocket; fd: number; where: string },
  name: string,
  alias: string,
): Link {
  const op = `moving ${link.name} to the ${to.where} as ${name}`;
  if (linkByName(to.sock, name)) {
    throw fail(`${op}: the ${to.where} already has a link named ${name}`);
  }
  try {
    linkSet(from, link.index, { netnsFd: to.fd, name, alias }, op);
  } catch (err) {
    throw CniError.from(err, op);
  }
  const moved = linkByName(to.sock, name);
  if (!moved) throw fail(`${op}: not found after the move`);
  return moved;
}

function setUpState(sock: NetlinkSocket, name: string, up: boolean, what: string): void {
  try {
    linkSet(sock, name, { up }, what);
  } catch (err) {
    throw CniError.from(err, what);
  }
}

/** Moves the host device in, renamed to CNI_IFNAME, and up; the undo moves it back as it was. */
function moveIn(h: Handles, args: CmdArgs, dev: Link, undo: UndoList): Link {
  const cont = { sock: h.container.sock, fd: h.container.ns.fd, where: "container netns" };
  const host = { sock: h.hostSock, fd: h.hostNs.fd, where: "host netns" };
  moveLink(h.hostSock, dev, cont, args.ifName, dev.name);
  undo.push({
    what: `moving ${args.ifName} back to the host netns as ${dev.name}`,
    run: () => {
      const inCont = linkByName(h.container.sock, args.ifName);
      if (!inCont) return;
      moveLink(h.container.sock, inCont, host, dev.name, "");
      if (dev.up) setUpState(h.hostSock, dev.name, true, `setting ${dev.name} up again`);
    },
  });
  setUpState(h.container.sock, args.ifName, true, `failed to set ${JSON.stringify(args.ifName)} up`);
  const link = linkByName(h.container.sock, args.ifName);
  if (!link) throw fail(`failed to find ${JSON.stringify(args.ifName)} in container NS`);
  return link;
}

async function cmdAdd(args: CmdArgs): Promise<Result> {
  const conf = loadHostDeviceConf(args.stdinData);
  return withHandles(args, (h) =>
    withUndo(async (undo) => {
      let iface: Interface = { name: args.ifName, sandbox: args.netns };
      if (!conf.dpdkMode) {
        const dev = findHostDevice(h.hostSock, conf.select);
        const link = moveIn(h, args, dev, undo);
        iface = { name: link.name, mac: link.mac, sandbox: args.netns };
      }
      if (!conf.ipamType) return { cniVersion: "1.1.0", interfaces: [iface] };
      if (conf.dpdkMode) {
        return ipamOnly(args, conf, iface, undo);
      }
      const result = await ipamOnIface({ args, container: h.container, ifName: args.ifName, iface, undo });
      if (conf.dns) result.dns = conf.dns;
      return result;
    }),
  );
}

/** DPDK mode: the addresses are only reported (the device has no netdev to put them on). */
async function ipamOnly(
  args: CmdArgs,
  conf: HostDeviceConf,
  iface: Interface,
  undo: UndoList,
): Promise<Result> {
  const ipam = await ipamAdd(args);
  undo.push({ what: "releasing the IPAM reservation", run: () => ipamDel(args) });
  if (!ipam.ips?.length) throw fail("IPAM plugin returned missing IP config");
  const result: Result = {
    ...ipam,
    cniVersion: "1.1.0",
    interfaces: [iface],
    ips: ipam.ips.map((ipc) => ({ ...ipc, interface: 0 })),
  };
  if (conf.dns) result.dns = conf.dns;
  else delete result.dns;
  return result;
}

/**
 * Moves CNI_IFNAME back to the host netns under the name in its alias (left down, as upstream), then
 * releases the addresses. A netns or interface already gone is done; a taken host name fails before
 * anything moves, keeping the device and its reservation where they are.
 */
async function cmdDel(args: CmdArgs): Promise<void> {
  const conf = loadHostDeviceConf(args.stdinData);
  if (args.netns !== "" && !conf.dpdkMode) {
    try {
      await withHandles(args, async (h) => {
        const link = linkByName(h.container.sock, args.ifName);
        if (!link) return;
        if (!link.alias) {
          throw fail(`failed to find original ifname for ${JSON.stringify(args.ifName)} (alias is not set)`);
        }
        moveLink(
          h.container.sock,
          link,
          { sock: h.hostSock, fd: h.hostNs.fd, where: "host netns" },
          link.alias,
          "",
        );
      });
    } catch (err) {
      if (!(err instanceof NsNotFoundError)) throw err;
    }
  }
  if (conf.ipamType) await ipamDel(args);
}

async function cmdCheck(args: CmdArgs): Promise<void> {
  const conf = loadHostDeviceConf(args.stdinData);
  await withHandles(args, async (h) => {
    if (conf.ipamType) await ipamCheck(args);
    const result = requirePrevResult(conf.prevResult);
    if (conf.dpdkMode) return;
    const rec = containerIfaceOf(result, args);
    checkRecordedLink(h.container.sock, rec);
    checkAddressesAndRoutes(h.container.sock, args.ifName, result);
  });
}

async function cmdStatus(args: CmdArgs): Promise<void> {
  const conf = loadHostDeviceConf(args.stdinData);
  if (conf.ipamType) await ipamStatus(args);
}

export const plugin: Plugin = {
  supportedVersions: CNI_VERSIONS,
  about: "host-device: moves a host interface into the container",
  add: cmdAdd,
  del: cmdDel,
  check: cmdCheck,
  status: cmdStatus,
};
