/**
 * vlan (upstream plugins/main/vlan): an 802.1q sub-interface of `master` (in the host netns, or in the
 * container's with linkInContainer) given to the container as CNI_IFNAME, with the IPAM addresses.
 * DEL releases the IPAM allocation and deletes the link; it needs neither the master nor the netns.
 */

import { ipamOnIface } from "../../../ip/attach.ts";
import { type Container, deleteContainerLink, withContainer, withHostSocket } from "../../../ip/container.ts";
import { checkIfaceIPs, checkRoutes } from "../../../ip/iface.ts";
import { checkMtu, createSubLink, findMaster, masterSocket } from "../../../ip/sublink.ts";
import { withUndo } from "../../../ip/undo.ts";
import { ipamCheck, ipamDel, ipamStatus } from "../../../ipam-common/index.ts";
import { linkByName } from "../../../netlink/link.ts";
import type { CmdArgs, Plugin } from "../../../skel/types.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import { CNI_VERSIONS, type Interface, type Result } from "../../../spec/types.ts";
import { loadVlanConf, type VlanConf } from "./config.ts";

function fail(msg: string): CniError {
  return new CniError(ErrCode.Internal, msg);
}

async function cmdAdd(args: CmdArgs): Promise<Result> {
  const conf = loadVlanConf(args.stdinData);
  return withHostSocket((hostSock) =>
    withContainer(args.netns, (c) =>
      withUndo(async (undo) => {
        const sock = masterSocket(hostSock, c, conf.linkInContainer);
        const master = findMaster(sock, conf.master, conf.linkInContainer);
        checkMtu(conf.mtu, master);
        const iface = createSubLink({
          sock,
          container: c,
          netnsPath: args.netns,
          ifName: args.ifName,
          what: "vlan",
          spec: (name) => ({
            kind: "vlan",
            name,
            parentIndex: master.index,
            vlanId: conf.vlanId,
            ...(conf.mtu && { mtu: conf.mtu }),
          }),
          undo,
        });

        const result = await ipamOnIface({ args, container: c, ifName: args.ifName, iface, undo });
        // the config's DNS, not IPAM's, as upstream
        if (conf.dns) result.dns = conf.dns;
        result.cniVersion = conf.cniVersion;
        return result;
      }),
    ),
  );
}

async function cmdDel(args: CmdArgs): Promise<void> {
  const conf = loadVlanConf(args.stdinData);
  if (conf.ipamType) await ipamDel(args);
  await deleteContainerLink(args.netns, args.ifName, "vlan");
}

function checkVlan(c: Container, iface: Interface, conf: VlanConf): void {
  const link = linkByName(c.sock, iface.name);
  if (!link) throw fail(`vlan: Container Interface name in prevResult: ${iface.name} not found`);
  if (link.info?.kind !== "vlan") throw fail(`Error: Container interface ${iface.name} not of type vlan`);
  if (iface.mac && iface.mac.toLowerCase() !== link.mac) {
    throw fail(`vlan: Interface ${iface.name} Mac ${iface.mac} doesn't match container Mac: ${link.mac}`);
  }
  if (link.info.vlanId !== conf.vlanId) {
    throw fail(
      `Error: vlan link ${iface.name} configured VLAN ID is ${conf.vlanId}, current value is ${link.info.vlanId}`,
    );
  }
  if (conf.mtu && link.mtu !== conf.mtu) {
    throw fail(`Error: configured MTU of ${iface.name} is ${conf.mtu}, current value is ${link.mtu}`);
  }
}

async function cmdCheck(args: CmdArgs): Promise<void> {
  const conf = loadVlanConf(args.stdinData);
  await withHostSocket((hostSock) =>
    withContainer(args.netns, async (c) => {
      await ipamCheck(args);
      const result = conf.prevResult;
      if (!result) throw fail("vlan: Required prevResult missing");
      const iface = result.interfaces?.find((i) => i.name === args.ifName && i.sandbox === args.netns);
      if (!iface) throw fail(`Sandbox in prevResult doesn't match configured netns: ${args.netns}`);
      findMaster(masterSocket(hostSock, c, conf.linkInContainer), conf.master, conf.linkInContainer);
      try {
        checkVlan(c, iface, conf);
      } catch (err) {
        throw err instanceof CniError ? err : CniError.from(err, `checking vlan ${iface.name}`);
      }
      checkIfaceIPs(c.sock, args.ifName, result.ips ?? []);
      checkRoutes(c.sock, result.routes ?? []);
    }),
  );
}

async function cmdStatus(args: CmdArgs): Promise<void> {
  const conf = loadVlanConf(args.stdinData);
  if (conf.ipamType) await ipamStatus(args);
}

export const plugin: Plugin = {
  supportedVersions: CNI_VERSIONS,
  about: "vlan: an 802.1q sub-interface of a host link",
  add: cmdAdd,
  del: cmdDel,
  check: cmdCheck,
  status: cmdStatus,
};
