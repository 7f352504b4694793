/**
 * dummy: a dummy link in the container holding the IPAM addresses and routes (upstream plugins/main/dummy).
 * Nothing on the host side; DEL releases the IPAM allocation and deletes the link.
 */
import { type Container, deleteContainerLink, withContainer } from "../../../ip/container.ts";
import { checkIfaceIPs, configureIface } from "../../../ip/iface.ts";
import { withUndo } from "../../../ip/undo.ts";
import { delLinkByName } from "../../../ip/veth.ts";
import { ipamAdd, ipamCheck, ipamDel, ipamStatus } from "../../../ipam-common/index.ts";
import { linkAdd, linkByName } from "../../../netlink/link.ts";
import type { CmdArgs, Plugin } from "../../../skel/types.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import { CNI_VERSIONS, type Interface, type Result } from "../../../spec/types.ts";
import { loadDummyConf, requireIpam } from "./config.ts";

function fail(msg: string): CniError {
  return new CniError(ErrCode.Internal, msg);
}

function createDummy(c: Container, ifName: string, netnsPath: string): Interface {
  try {
    linkAdd(c.sock, { kind: "dummy", name: ifName });
    const link = linkByName(c.sock, ifName);
    if (!link) throw fail(`failed to fetch dummy ${JSON.stringify(ifName)}: not found after creating it`);
    return { name: ifName, mac: link.mac, sandbox: netnsPath };
  } catch (err) {
    throw CniError.from(err, `creating dummy ${ifName}`);
  }
}

async function cmdAdd(args: CmdArgs): Promise<Result> {
  const conf = loadDummyConf(args.stdinData);
  requireIpam(conf);
  return withContainer(args.netns, (c) =>
    withUndo(async (undo) => {
      const iface = createDummy(c, args.ifName, args.netns);
      undo.push({ what: `deleting dummy ${args.ifName}`, run: () => delLinkByName(c.sock, args.ifName) });

      const result = await ipamAdd(args);
      undo.push({ what: "releasing the IPAM allocation", run: () => ipamDel(args) });
      if (!result.ips?.length) throw fail("IPAM plugin returned missing IP config");
      // every address belongs to the one dummy interface
      for (const ipc of result.ips) ipc.interface = 0;
      result.interfaces = [iface];

      await configureIface(c.sock, c.ns, args.ifName, result);
      result.cniVersion = conf.cniVersion;
      return result;
    }),
  );
}

async function cmdDel(args: CmdArgs): Promise<void> {
  const conf = loadDummyConf(args.stdinData);
  if (conf.ipamType) await ipamDel(args);
  await deleteContainerLink(args.netns, args.ifName, "dummy");
}

function checkDummy(c: Container, iface: Interface): void {
  const link = linkByName(c.sock, iface.name);
  if (!link) throw fail(`Container Interface name in prevResult: ${iface.name} not found`);
  if (link.kind !== "dummy") throw fail(`Error: Container interface ${iface.name} not of type dummy`);
  if (iface.mac && iface.mac.toLowerCase() !== link.mac) {
    throw fail(`Interface ${iface.name} Mac ${iface.mac} doesn't match container Mac: ${link.mac}`);
  }
  if (!link.up) throw fail(`Interface ${iface.name} is down`);
}

async function cmdCheck(args: CmdArgs): Promise<void> {
  const conf = loadDummyConf(args.stdinData);
  requireIpam(conf);
  await withContainer(args.netns, async (c) => {
    await ipamCheck(args);
    const result = conf.prevResult;
    if (!result) throw fail("dummy: Required prevResult missing");
    const iface = result.interfaces?.find((i) => i.name === args.ifName && i.sandbox === args.netns);
    if (!iface) throw fail(`Sandbox in prevResult doesn't match configured netns: ${args.netns}`);
    try {
      checkDummy(c, iface);
    } catch (err) {
      throw err instanceof CniError ? err : CniError.from(err, `checking dummy ${iface.name}`);
    }
    checkIfaceIPs(c.sock, args.ifName, result.ips ?? []);
  });
}

async function cmdStatus(args: CmdArgs): Promise<void> {
  const conf = loadDummyConf(args.stdinData);
  if (conf.ipamType) await ipamStatus(args);
}

export const plugin: Plugin = {
  supportedVersions: CNI_VERSIONS,
  about: "dummy: a dummy link in the container with IPAM addresses",
  add: cmdAdd,
  del: cmdDel,
  check: cmdCheck,
  status: cmdStatus,
};
