/**
 * ipvlan (upstream plugins/main/ipvlan): an ipvlan sub-interface (l2, l3 or l3s) of `master` given to
 * the container as CNI_IFNAME. Addresses come from IPAM, or in a chain from prevResult; with neither the
 * interface is layer-2 only. DEL releases the IPAM allocation and deletes the link.
 */

import { announceSysctls, ipamOnIface, setSysctlsBestEffort, setUp } from "../../../ip/attach.ts";
import { type Container, deleteContainerLink, withContainer, withHostSocket } from "../../../ip/container.ts";
import { checkIfaceIPs, checkRoutes, configureIface } from "../../../ip/iface.ts";
import { createSubLink, defaultRouteLink, findMaster, masterSocket } from "../../../ip/sublink.ts";
import { withUndo } from "../../../ip/undo.ts";
import { ipamCheck, ipamDel, ipamStatus } from "../../../ipam-common/index.ts";
import { linkByName } from "../../../netlink/link.ts";
import type { CmdArgs, Plugin } from "../../../skel/types.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import { CNI_VERSIONS, type Interface, type Result } from "../../../spec/types.ts";
import { type IpvlanConf, loadIpvlanConf, resolveMaster } from "./config.ts";

function fail(msg: string): CniError {
  return new CniError(ErrCode.Internal, msg);
}

async function cmdAdd(args: CmdArgs): Promise<Result> {
  const conf = loadIpvlanConf(args.stdinData);
  return withHostSocket((hostSock) =>
    withContainer(args.netns, (c) =>
      withUndo(async (undo) => {
        const sock = masterSocket(hostSock, c, conf.linkInContainer);
        const named = resolveMaster(conf);
        const master = named
          ? findMaster(sock, named, conf.linkInContainer)
          : defaultRouteLink(sock, conf.linkInContainer);
        const iface = createSubLink({
          sock,
          container: c,
          netnsPath: args.netns,
          ifName: args.ifName,
          what: "ipvlan",
          spec: (name) => ({
            kind: "ipvlan",
            name,
            parentIndex: master.index,
            mode: conf.mode,
            ...(conf.mtu && { mtu: conf.mtu }),
          }),
          undo,
        });

        let result: Result;
        const chained = !conf.ipamType && conf.prevResult?.ips?.length ? conf.prevResult : undefined;
        if (conf.ipamType) {
          result = await ipamOnIface({
            args,
            container: c,
            ifName: args.ifName,
            iface,
            sysctls: announceSysctls(args.ifName),
            undo,
          });
        } else if (chained) {
          // a chain's prevResult gave the addresses: configured here without IPAM
          result = {
            cniVersion: conf.cniVersion,
            interfaces: [iface],
            ips: (chained.ips ?? []).map((i) => ({ ...i, interface: 0 })),
            ...(chained.routes && { routes: chained.routes }),
          };
          setSysctlsBestEffort(c, announceSysctls(args.ifName));
          await configureIface(c.sock, c.ns, args.ifName, result);
        } else {
          // layer 2 only
          result = { cniVersion: conf.cniVersion, interfaces: [iface], ips: [] };
          setSysctlsBestEffort(c, announceSysctls(args.ifName));
          setUp(c.sock, args.ifName);
        }
        if (conf.dns) result.dns = conf.dns;
        else delete result.dns;
        result.cniVersion = conf.cniVersion;
        return result;
      }),
    ),
  );
}

async function cmdDel(args: CmdArgs): Promise<void> {
  const conf = loadIpvlanConf(args.stdinData);
  if (conf.ipamType) await ipamDel(args);
  await deleteContainerLink(args.netns, args.ifName, "ipvlan");
}

function checkIpvlan(c: Container, iface: Interface, conf: IpvlanConf): void {
  const link = linkByName(c.sock, iface.name);
  if (!link) throw fail(`Container Interface name in prevResult: ${iface.name} not found`);
  if (link.info?.kind !== "ipvlan") throw fail(`Error: Container interface ${iface.name} not of type ipvlan`);
  if (link.info.mode !== conf.mode) {
    throw fail(`Container IPVlan mode ${link.info.mode} does not match expected value: ${conf.mode}`);
  }
  if (iface.mac && iface.mac.toLowerCase() !== link.mac) {
    throw fail(`Interface ${iface.name} Mac ${iface.mac} doesn't match container Mac: ${link.mac}`);
  }
}

async function cmdCheck(args: CmdArgs): Promise<void> {
  const conf = loadIpvlanConf(args.stdinData);
  await withHostSocket((hostSock) =>
    withContainer(args.netns, async (c) => {
      if (conf.ipamType) await ipamCheck(args);
      const result = conf.prevResult;
      if (!result) throw fail("Required prevResult missing");
      const iface = result.interfaces?.find((i) => i.name === args.ifName && i.sandbox === args.netns);
      if (!iface) throw fail(`Sandbox in prevResult doesn't match configured netns: ${args.netns}`);
      if (conf.master)
        findMaster(masterSocket(hostSock, c, conf.linkInContainer), conf.master, conf.linkInContainer);
      try {
        checkIpvlan(c, iface, conf);
      } catch (err) {
        throw err instanceof CniError ? err : CniError.from(err, `checking ipvlan ${iface.name}`);
      }
      checkIfaceIPs(c.sock, args.ifName, result.ips ?? []);
      checkRoutes(c.sock, result.routes ?? []);
    }),
  );
}

async function cmdStatus(args: CmdArgs): Promise<void> {
  const conf = loadIpvlanConf(args.stdinData);
  if (conf.ipamType) await ipamStatus(args);
}

export const plugin: Plugin = {
  supportedVersions: CNI_VERSIONS,
  about: "ipvlan: an ipvlan sub-interface of a host link",
  add: cmdAdd,
  del: cmdDel,
  check: cmdCheck,
  status: cmdStatus,
};
