/**
 * CHECK (upstream cmdCheck): the bridge of prevResult exists, is a bridge with the recorded MAC and
 * the configured promiscuous mode; the container interface is a veth in the recorded sandbox with the
 * recorded MAC; one of the other recorded interfaces is its host peer, enslaved to the bridge; and the
 * container still has the recorded addresses and routes. Each failure says what differs.
 */
import { checkIface } from "../../../ip/iface.ts";
import { type Link, linkByName } from "../../../netlink/link.ts";
import type { NetlinkSocket } from "../../../netlink/socket.ts";
import type { CmdArgs } from "../../../skel/types.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import type { Interface, Result } from "../../../spec/types.ts";
import type { Handles } from "./add.ts";
import type { BridgeConf } from "./config.ts";

function fail(msg: string): CniError {
  return new CniError(ErrCode.Internal, msg);
}

function lookup(sock: NetlinkSocket, name: string, where: string): Link {
  let link: Link | undefined;
  try {
    link = linkByName(sock, name);
  } catch (err) {
    throw CniError.from(err, `looking up ${name} in the ${where}`);
  }
  if (!link) throw fail(`Interface name ${name} not found in the ${where}`);
  return link;
}

function sameMac(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase();
}

function checkBridge(sock: NetlinkSocket, conf: BridgeConf, rec: Interface | undefined): Link {
  if (!rec) throw fail(`CNI created bridge ${conf.bridge} in host namespace was not found in prevResult`);
  if (rec.sandbox) throw fail(`Interface ${rec.name} should not be in sandbox`);
  const br = lookup(sock, rec.name, "host netns");
  if (br.kind !== "bridge")
    throw fail(`Interface ${rec.name} does not have link type of bridge (it is ${br.kind ?? "a device"})`);
  if (rec.mac && !sameMac(rec.mac, br.mac)) {
    throw fail(`Bridge interface ${rec.name} Mac doesn't match: recorded ${rec.mac}, found ${br.mac}`);
  }
  if (br.promisc !== conf.promiscMode) {
    throw fail(
      `Bridge interface ${rec.name} configured Promisc Mode ${conf.promiscMode} doesn't match current state: ${br.promisc}`,
    );
  }
  return br;
}

function checkContainer(sock: NetlinkSocket, rec: Interface): Link {
  const link = lookup(sock, rec.name, "container netns");
  if (link.kind !== "veth")
    throw fail(`Error: Container interface ${rec.name} not of type veth (it is ${link.kind ?? "a device"})`);
  if (rec.mac && !sameMac(rec.mac, link.mac)) {
    throw fail(`Interface ${rec.name} Mac ${rec.mac} doesn't match container Mac: ${link.mac}`);
  }
  return link;
}

/** The recorded host veth that is the container interface's peer and a port of the bridge. */
function checkHostVeth(sock: NetlinkSocket, result: Result, br: Link, cont: Link, skip: string[]): void {
  const others = (result.interfaces ?? []).filter((i) => !skip.includes(i.name) && !i.sandbox);
  for (const rec of others) {
    const link = linkByName(sock, rec.name);
    if (link?.kind !== "veth") continue;
    if (link.index !== cont.parentIndex || link.parentIndex !== cont.index) continue;
    if (link.masterIndex !== br.index) {
      throw fail(`CNI veth ${rec.name} is the peer of ${cont.name} but not a port of bridge ${br.name}`);
    }
    if (rec.mac && !sameMac(rec.mac, link.mac)) {
      throw fail(`Interface ${rec.name} Mac doesn't match: recorded ${rec.mac}, found ${link.mac}`);
    }
    return;
  }
  throw fail(
    `CNI veth created for bridge ${br.name} was not found (no recorded host veth is the peer of ${cont.name})`,
  );
}

export async function checkAttachment(
  h: Handles,
  args: CmdArgs,
  conf: BridgeConf,
  result: Result,
): Promise<void> {
  const ifaces = result.interfaces ?? [];
  const brRec = ifaces.find((i) => i.name === conf.bridge);
  const contRec = ifaces.find((i) => i.name === args.ifName && i.sandbox === args.netns);
  const br = checkBridge(h.hostSock, conf, brRec);
  if (!contRec) {
    const other = ifaces.find((i) => i.name === args.ifName);
    throw fail(
      other
        ? `Sandbox in prevResult ${other.sandbox ?? ""} doesn't match configured netns: ${args.netns}`
        : `CNI created interface in container ${args.ifName} not found in prevResult`,
    );
  }
  const cont = checkContainer(h.contSock, contRec);
  checkHostVeth(h.hostSock, result, br, cont, [br.name]);
  checkIface(h.contSock, args.ifName, result);
  if (conf.ipMasq && result.ips?.length) {
    const { checkIPMasq } = await import("../../../ip/ipmasq.ts");
    await checkIPMasq({
      network: conf.name,
      containerID: args.containerID,
      ifName: args.ifName,
      backend: conf.ipMasqBackend,
      ips: result.ips.map((ipc) => ipc.address),
    });
  }
}
