/**
 * loopback: brings `lo` up in the container (CNI_IFNAME is ignored, as upstream). The result names `lo`
 * with its loopback addresses, or is the prevResult passed through when chained. DEL sets `lo` down and
 * succeeds when the netns is already gone; CHECK requires `lo` up.
 */
import { type Container, withContainer } from "../../../ip/container.ts";
import { type AddrInfo, addrList } from "../../../netlink/addr.ts";
import { type Link, linkByName, linkSetDown, linkSetUp } from "../../../netlink/link.ts";
import { NsNotFoundError } from "../../../ns/index.ts";
import type { CmdArgs, Plugin } from "../../../skel/types.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import { CNI_VERSIONS, type Result } from "../../../spec/types.ts";
import { loadLoopbackConf } from "./config.ts";

const LO = "lo";
const IFF_LOOPBACK = 0x8;

/** Runs a kernel call; its SysError (which names the operation) becomes a CniError. */
function kernel<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw CniError.from(err);
  }
}

function lookupLo(c: Container): Link {
  const link = kernel(() => linkByName(c.sock, LO));
  if (!link) throw new CniError(ErrCode.Internal, `looking up ${LO}: no such link`);
  return link;
}

function isLoopbackIP(a: AddrInfo): boolean {
  return a.version === 4 ? a.ip.startsWith("127.") : a.ip === "::1";
}

/** Brings lo up and returns the first address of each family (they exist only once lo is up). */
function bringUp(c: Container): AddrInfo[] {
  const link = lookupLo(c);
  kernel(() => linkSetUp(c.sock, link.index));
  const addrs = kernel(() => addrList(c.sock, { index: link.index }));
  const odd = addrs.find((a) => !isLoopbackIP(a));
  if (odd) {
    throw new CniError(ErrCode.Internal, `loopback interface found with non-loopback address "${odd.ip}"`);
  }
  const first = (v: 4 | 6) => addrs.find((a) => a.version === v);
  return [first(4), first(6)].filter((a): a is AddrInfo => a !== undefined);
}

async function cmdAdd(args: CmdArgs): Promise<Result> {
  const conf = loadLoopbackConf(args.stdinData);
  const addrs = await withContainer(args.netns, bringUp);
  if (conf.prevResult) return conf.prevResult;
  const result: Result = {
    cniVersion: conf.cniVersion,
    interfaces: [{ name: LO, mac: "00:00:00:00:00:00", sandbox: args.netns }],
  };
  if (addrs.length) result.ips = addrs.map((a) => ({ interface: 0, address: a.address }));
  return result;
}

async function cmdDel(args: CmdArgs): Promise<void> {
  loadLoopbackConf(args.stdinData);
  if (args.netns === "") return;
  try {
    await withContainer(args.netns, (c) => kernel(() => linkSetDown(c.sock, lookupLo(c).index)));
  } catch (err) {
    // The runtime may call DEL after the netns is gone, or twice.
    if (err instanceof NsNotFoundError) return;
    throw err;
  }
}

async function cmdCheck(args: CmdArgs): Promise<void> {
  loadLoopbackConf(args.stdinData);
  await withContainer(args.netns, (c) => {
    const link = lookupLo(c);
    if ((link.flags & IFF_LOOPBACK) === 0) {
      throw new CniError(ErrCode.Internal, `interface ${LO} is not a loopback interface`);
    }
    if (!link.up) throw new CniError(ErrCode.Internal, "loopback interface is down");
  });
}

export const plugin: Plugin = {
  supportedVersions: CNI_VERSIONS,
  about: "loopback: brings up the loopback interface of the container",
  add: cmdAdd,
  del: cmdDel,
  check: cmdCheck,
};
