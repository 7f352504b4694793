/**
 * tap: a persistent tap device in the container netns (upstream plugins/main/tap v1.9), for a VM
 * monitor there to open: owned by `owner`/`group`, multi-queue if asked, optionally a port of a bridge
 * in the container netns. IPAM is optional.
 *
 * Created through /dev/net/tun in the container netns (src/netlink/link-tuntap.ts), not `ip tuntap`.
 * selinuxContext needs the creating task's label: on a host without SELinux it is refused clearly.
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
import { ipamCheck, ipamDel, ipamStatus } from "../../../ipam-common/index.ts";
import { linkAdd } from "../../../netlink/link.ts";
import { NsNotFoundError } from "../../../ns/index.ts";
import type { CmdArgs, Plugin } from "../../../skel/types.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import { CNI_VERSIONS, type Interface, type Result } from "../../../spec/types.ts";
import { exists } from "../../../sys/fs.ts";
import { loadTapConf, type TapConf } from "./config.ts";

function fail(msg: string): CniError {
  return new CniError(ErrCode.Internal, msg);
}

/** Refuses selinuxContext where it cannot be honoured (upstream fails setting the exec label too). */
function checkSelinux(conf: TapConf): void {
  if (!conf.selinuxContext) return;
  if (!exists("/sys/fs/selinux/enforce")) {
    throw new CniError(
      ErrCode.InvalidNetworkConfig,
      `failed set socket label: selinuxContext ${JSON.stringify(conf.selinuxContext)} given but SELinux is not enabled on this host`,
    );
  }
  throw new CniError(
    ErrCode.UnsupportedField,
    "selinuxContext: creating a tap under another SELinux context is not supported yet",
  );
}

/** The tap as CNI_IFNAME in the container, a bridge port if asked, up; its undo deletes it. */
function createTap(c: Container, args: CmdArgs, conf: TapConf, undo: UndoList): Interface {
  const masterIndex = conf.bridge
    ? mustLink(c.sock, conf.bridge, `failed to get bridge ${conf.bridge}`).index
    : undefined;
  try {
    linkAdd(c.sock, {
      kind: "tuntap",
      mode: "tap",
      name: args.ifName,
      multiQueue: conf.multiQueue,
      // upstream's netlink path (owner and group both given) asks for virtio-net headers
      vnetHdr: conf.owner !== undefined && conf.group !== undefined,
      ...(conf.owner !== undefined ? { owner: conf.owner } : {}),
      ...(conf.group !== undefined ? { group: conf.group } : {}),
      ...(conf.mtu ? { mtu: conf.mtu } : {}),
      ...(conf.mac ? { mac: conf.mac } : {}),
      ...(masterIndex !== undefined ? { masterIndex } : {}),
      up: true,
    });
  } catch (err) {
    throw CniError.from(err, `failed to create tap ${args.ifName}`);
  }
  undo.push({ what: `deleting tap ${args.ifName}`, run: () => delLinkByName(c.sock, args.ifName) });
  const link = mustLink(c.sock, args.ifName, `failed to refetch tap ${JSON.stringify(args.ifName)}`);
  return { name: link.name, mac: link.mac, sandbox: args.netns };
}

async function cmdAdd(args: CmdArgs): Promise<Result> {
  const conf = loadTapConf(args.stdinData, args.args);
  checkSelinux(conf);
  return withContainer(args.netns, (c) =>
    withUndo(async (undo) => {
      const iface = createTap(c, args, conf, undo);
      let result: Result;
      if (conf.ipamType) {
        result = await ipamOnIface({
          args,
          container: c,
          ifName: args.ifName,
          iface,
          sysctls: [`net/ipv4/conf/${args.ifName}/arp_notify`],
          undo,
        });
      } else {
        setUp(c.sock, args.ifName);
        result = { cniVersion: "1.1.0", interfaces: [iface] };
      }
      if (conf.dns) result.dns = conf.dns;
      else delete result.dns;
      return result;
    }),
  );
}

/** Deletes the tap, then releases its addresses; a netns or tap already gone is done. */
async function cmdDel(args: CmdArgs): Promise<void> {
  const conf = loadTapConf(args.stdinData, args.args, { forDel: true });
  if (args.netns !== "") {
    try {
      await withContainer(args.netns, (c) => delLinkByName(c.sock, args.ifName));
    } catch (err) {
      if (!(err instanceof NsNotFoundError)) throw err;
    }
  }
  if (conf.ipamType) await ipamDel(args);
}

/** Beyond upstream's address and route checks: it is still a tap, with the owner, group, queues and bridge asked for. */
function checkTap(c: Container, args: CmdArgs, conf: TapConf, result: Result): void {
  const rec = containerIfaceOf(result, args);
  const link = checkRecordedLink(c.sock, rec);
  const info = link.info;
  if (info?.kind !== "tun" || info.mode !== "tap") {
    throw fail(`Container interface ${rec.name} is not a tap (it is ${link.kind ?? "a device"})`);
  }
  if (conf.owner !== undefined && info.owner !== conf.owner) {
    throw fail(`tap ${rec.name} owner ${info.owner ?? "none"} does not match expected value: ${conf.owner}`);
  }
  if (conf.group !== undefined && info.group !== conf.group) {
    throw fail(`tap ${rec.name} group ${info.group ?? "none"} does not match expected value: ${conf.group}`);
  }
  if (info.multiQueue !== conf.multiQueue) {
    throw fail(
      `tap ${rec.name} multi_queue ${info.multiQueue} does not match expected value: ${conf.multiQueue}`,
    );
  }
  if (conf.bridge) {
    const br = mustLink(c.sock, conf.bridge, `failed to get bridge ${conf.bridge}`);
    if (link.masterIndex !== br.index) throw fail(`tap ${rec.name} is not a port of bridge ${conf.bridge}`);
  }
  checkAddressesAndRoutes(c.sock, args.ifName, result);
}

async function cmdCheck(args: CmdArgs): Promise<void> {
  const conf = loadTapConf(args.stdinData, args.args);
  await withContainer(args.netns, async (c) => {
    if (conf.ipamType) await ipamCheck(args);
    checkTap(c, args, conf, requirePrevResult(conf.prevResult));
  });
}

async function cmdStatus(args: CmdArgs): Promise<void> {
  const conf = loadTapConf(args.stdinData, args.args, { forDel: true });
  if (conf.ipamType) await ipamStatus(args);
}

export const plugin: Plugin = {
  supportedVersions: CNI_VERSIONS,
  about: "tap: a persistent tap device in the container",
  add: cmdAdd,
  del: cmdDel,
  check: cmdCheck,
  status: cmdStatus,
};
