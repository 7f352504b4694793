/**
 * vrf (upstream plugins/meta/vrf): chained after a main plugin, puts the container interface into a VRF
 * (made on first use, with `table` or the lowest table no VRF uses) and moves the interface's routes into
 * the VRF's table. Global IPv6 addresses, which the kernel drops when a link changes master (unless
 * keep_addr_on_down), are put back. DEL frees the interface and deletes the VRF once nothing is in it.
 */
import { type Container, withContainer } from "../../../ip/container.ts";
import { type UndoList, withUndo } from "../../../ip/undo.ts";
import { type AddrInfo, addrAdd, addrList, IFA_F, SCOPE } from "../../../netlink/addr.ts";
import {
  linkAdd,
  linkByName,
  linkDel,
  linkList,
  linkSetMaster,
  linkSetNoMaster,
  linkSetUp,
} from "../../../netlink/link.ts";
import type { Link } from "../../../netlink/link-info.ts";
import { type RouteInfo, routeList, routeReplace } from "../../../netlink/route.ts";
import { NsNotFoundError } from "../../../ns/index.ts";
import type { CmdArgs, Plugin } from "../../../skel/types.ts";
import { CniError, ErrCode, withContext } from "../../../spec/errors.ts";
import { CNI_VERSIONS, type Result } from "../../../spec/types.ts";
import { loadVrfConf, type VrfConf } from "./config.ts";

const RESTORE_TRIES = 8; // 10 ms doubling: ~2.5 s for the kernel to install a restored address's routes

function fail(msg: string): CniError {
  return new CniError(ErrCode.Internal, msg);
}

const step = withContext;

function vrfTable(l: Link): number {
  return l.info?.kind === "vrf" ? l.info.table : 0;
}

/** The VRF named `name`, undefined when there is no such link; a link of another kind is an error. */
function findVrf(c: Container, name: string): Link | undefined {
  const l = step(`looking up VRF ${name}`, () => linkByName(c.sock, name));
  if (l && l.kind !== "vrf") throw fail(`Netlink ${name} is not a VRF`);
  return l;
}

/** The lowest table id (from 1) no VRF of the netns uses, as upstream. */
function freeTable(c: Container): number {
  const taken = new Set(step("listing links", () => linkList(c.sock)).map(vrfTable));
  let t = 1;
  while (taken.has(t)) t++;
  return t;
}

function ensureVrf(c: Container, conf: VrfConf, undo: UndoList): Link {
  const found = findVrf(c, conf.vrfName);
  if (found) {
    if (conf.table !== 0 && vrfTable(found) !== conf.table) {
      throw fail(`VRF ${conf.vrfName} already exist with different routing table ${vrfTable(found)}`);
    }
    return found;
  }
  const table = conf.table || freeTable(c);
  const vrf = step(`could not add VRF ${conf.vrfName}`, () =>
    linkAdd(c.sock, { kind: "vrf", name: conf.vrfName, table }),
  );
  if (!vrf) throw fail(`could not add VRF ${conf.vrfName}: not found after creating it`);
  undo.push({ what: `deleting VRF ${conf.vrfName}`, run: () => linkDel(c.sock, vrf.index) });
  step(`could not set link up for VRF ${conf.vrfName}`, () => linkSetUp(c.sock, vrf.index));
  return vrf;
}

function globalV6(c: Container, index: number): AddrInfo[] {
  return addrList(c.sock, { index, version: 6 }).filter((a) => a.scope === SCOPE.universe);
}

/** Waits until the kernel has the restored address's local route in the VRF's table. */
async function waitForLocalRoute(c: Container, a: AddrInfo, index: number, table: number): Promise<void> {
  for (let i = 0; ; i++) {
    const routes = routeList(c.sock, { table: 0, version: 6, index });
    if (routes.some((r) => r.table === table && r.dst === `${a.ip}/128`)) return;
    if (i === RESTORE_TRIES) {
      throw fail(
        `failed getting local/host addresses for index ${index} in table ${table} with dst ${a.address}`,
      );
    }
    await Bun.sleep(10 * 2 ** i);
  }
}

async function enslave(c: Container, vrf: Link, ifName: string, undo: UndoList): Promise<void> {
  const link = step(`could not get link by name ${ifName}`, () => linkByName(c.sock, ifName));
  if (!link) throw fail(`could not get link by name ${ifName}`);
  if (link.masterIndex) {
    const master = linkList(c.sock).find((l) => l.index === link.masterIndex);
    throw fail(`interface ${ifName} has already a master set: ${master?.name ?? link.masterIndex}`);
  }
  const table = vrfTable(vrf);
  const before = step(`listing the IPv6 addresses of ${ifName}`, () => globalV6(c, link.index));
  // Routes other than local and connected ones go when the master changes: saved to move them.
  const routes = step(`listing the routes of ${ifName}`, () =>
    routeList(c.sock, { index: link.index }).filter((r) => r.scope === SCOPE.universe),
  );

  step(`could not set vrf ${vrf.name} as master of ${ifName}`, () =>
    linkSetMaster(c.sock, link.index, vrf.index),
  );
  undo.push({
    what: `freeing ${ifName} from VRF ${vrf.name}`,
    run: () => linkSetNoMaster(c.sock, link.index),
  });

  const after = new Set(globalV6(c, link.index).map((a) => a.address));
  for (const a of before.filter((x) => !after.has(x.address))) {
    step(`could not restore address ${a.address} to ${ifName} @ ${vrf.name}`, () =>
      addrAdd(c.sock, {
        index: link.index,
        devName: ifName,
        address: a.address,
        flags: { nodad: !!(a.flags & IFA_F.NODAD), noprefixroute: !!(a.flags & IFA_F.NOPREFIXROUTE) },
      }),
    );
    await waitForLocalRoute(c, a, link.index, table);
  }
  for (const r of routes) {
    step(`could not add route ${r.dst} to table ${table}`, () =>
      routeReplace(c.sock, { ...routeOptions(r), table }),
    );
  }
}

function routeOptions(r: RouteInfo) {
  return {
    dst: r.dst,
    version: r.version,
    ...(r.gw !== undefined && { gw: r.gw }),
    ...(r.index !== undefined && { index: r.index }),
    ...(r.src !== undefined && { src: r.src }),
    ...(r.mtu !== undefined && { mtu: r.mtu }),
    ...(r.advmss !== undefined && { advmss: r.advmss }),
    scope: r.scope,
    protocol: r.protocol,
    type: r.type,
    priority: r.priority,
    onlink: r.onlink,
  };
}

async function cmdAdd(args: CmdArgs): Promise<Result> {
  const conf = loadVrfConf(args.stdinData);
  if (!conf.prevResult) throw fail("missing prevResult from earlier plugin");
  const result = conf.prevResult;
  await withContainer(args.netns, (c) =>
    withUndo(async (undo) => {
      const vrf = ensureVrf(c, conf, undo);
      await enslave(c, vrf, args.ifName, undo);
    }),
  );
  result.cniVersion = conf.cniVersion;
  return result;
}

async function cmdDel(args: CmdArgs): Promise<void> {
  const conf = loadVrfConf(args.stdinData);
  if (args.netns === "") return;
  try {
    await withContainer(args.netns, (c) => {
      const vrf = findVrf(c, conf.vrfName);
      if (!vrf) return;
      // a second DEL, or the interface gone already: nothing to free
      const link = step(`looking up ${args.ifName}`, () => linkByName(c.sock, args.ifName));
      if (link?.masterIndex === vrf.index) {
        step(`freeing ${args.ifName} from VRF ${vrf.name}`, () => linkSetNoMaster(c.sock, link.index));
      }
      const members = step("listing links", () => linkList(c.sock)).filter(
        (l) => l.masterIndex === vrf.index,
      );
      if (!members.length) step(`deleting VRF ${vrf.name}`, () => linkDel(c.sock, vrf.index));
    });
  } catch (err) {
    if (!(err instanceof NsNotFoundError)) throw err;
  }
}

async function cmdCheck(args: CmdArgs): Promise<void> {
  const conf = loadVrfConf(args.stdinData);
  if (!conf.prevResult) throw fail("missing prevResult from earlier plugin");
  await withContainer(args.netns, (c) => {
    const vrf = findVrf(c, conf.vrfName);
    if (!vrf) throw fail(`VRF ${conf.vrfName} not found`);
    if (conf.table !== 0 && vrfTable(vrf) !== conf.table) {
      throw fail(`VRF ${conf.vrfName} has routing table ${vrfTable(vrf)}, not ${conf.table}`);
    }
    const member = step("listing links", () => linkList(c.sock)).some(
      (l) => l.masterIndex === vrf.index && l.name === args.ifName,
    );
    if (!member) throw fail(`failed to find ${args.ifName} associated to vrf ${conf.vrfName}`);
  });
}

export const plugin: Plugin = {
  // as upstream: a chained plugin needs prevResult, so from 0.3.1
  supportedVersions: CNI_VERSIONS.filter((v) => v >= "0.3.1"),
  about: "vrf: puts the container interface into a VRF",
  add: cmdAdd,
  del: cmdDel,
  check: cmdCheck,
  status: async (args) => {
    loadVrfConf(args.stdinData);
  },
};
