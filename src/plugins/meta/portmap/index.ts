/**
 * portmap (upstream plugins/meta/portmap): a chained plugin that forwards host ports to the
 * container (runtimeConfig.portMappings), with hairpin and localhost SNAT. It passes prevResult
 * through. Backends: nftables (default, nft.ts: maps, one transaction) or iptables (iptables.ts:
 * upstream's chains, interoperable with the Go plugin). GC (not in upstream) removes the mappings of
 * the network's attachments that are no longer valid.
 */
import { withUndo } from "../../../ip/undo.ts";
import type { CmdArgs, Plugin } from "../../../skel/types.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import { CNI_VERSIONS, type GCAttachment, type Result } from "../../../spec/types.ts";
import { mappingsFor, type Owner, type PortmapConf, parseConfig } from "./config.ts";
import { deleteUdpConntrack, enableLocalnetRouting } from "./host.ts";
import { iptablesAdd, iptablesCheck, iptablesDel, iptablesGC } from "./iptables.ts";
import { nftAdd, nftCheck, nftDel, nftGC } from "./nft.ts";

interface Backend {
  add(o: Owner, conf: PortmapConf): Promise<void>;
  del(o: Owner): Promise<void>;
  check(o: Owner, conf: PortmapConf): Promise<void>;
  gc(network: string, valid: readonly GCAttachment[]): Promise<void>;
}

const BACKENDS: Record<PortmapConf["backend"], Backend> = {
  nftables: { add: nftAdd, del: nftDel, check: nftCheck, gc: nftGC },
  iptables: { add: iptablesAdd, del: iptablesDel, check: iptablesCheck, gc: iptablesGC },
};

function owner(args: CmdArgs, conf: PortmapConf): Owner {
  return { network: conf.name, containerID: args.containerID, ifName: args.ifName };
}

/** route_localnet on the interface routing the container's IPv4 address, when localhost SNAT applies. */
function enableLocalhostAccess(conf: PortmapConf): void {
  const v4 = conf.addrs.find((a) => a.family === 4);
  if (!conf.snat || !v4 || mappingsFor(conf, 4).length === 0) return;
  try {
    enableLocalnetRouting(v4.ip);
  } catch (err) {
    throw CniError.from(err, "unable to enable route_localnet");
  }
}

/** Stale UDP flows would bypass (or outlive) the mapping; failures are informative only, as upstream. */
function flushUdpFlows(conf: PortmapConf, families: readonly (4 | 6)[]): void {
  const ports = (f: 4 | 6) =>
    families.includes(f)
      ? mappingsFor(conf, f)
          .filter((m) => m.protocol === "udp")
          .map((m) => m.hostPort)
      : [];
  try {
    deleteUdpConntrack({ 4: ports(4), 6: ports(6) });
  } catch (err) {
    process.stderr.write(
      `portmap: failed to delete stale UDP conntrack entries: ${(err as Error).message}\n`,
    );
  }
}

async function cmdAdd(args: CmdArgs): Promise<Result> {
  const conf = parseConfig(args.stdinData, args.ifName);
  if (!conf.prevResult)
    throw new CniError(ErrCode.InvalidNetworkConfig, "portmap: must be called as chained plugin");
  if (conf.portMappings.length === 0 || conf.addrs.length === 0) return conf.prevResult;
  const backend = BACKENDS[conf.backend];
  const o = owner(args, conf);
  await withUndo(async (undo) => {
    await backend.add(o, conf);
    undo.push({ what: `removing the port mappings of ${o.containerID}`, run: () => backend.del(o) });
    enableLocalhostAccess(conf);
  });
  flushUdpFlows(
    conf,
    conf.addrs.map((a) => a.family),
  );
  return conf.prevResult;
}

async function cmdDel(args: CmdArgs): Promise<void> {
  const conf = parseConfig(args.stdinData, args.ifName);
  // Like upstream: nothing was mapped without mappings (so DEL costs nothing for most containers).
  if (conf.portMappings.length === 0) return;
  await BACKENDS[conf.backend].del(owner(args, conf));
  const families = conf.addrs.length > 0 ? conf.addrs.map((a) => a.family) : ([4, 6] as const);
  flushUdpFlows(conf, families);
}

async function cmdCheck(args: CmdArgs): Promise<void> {
  const conf = parseConfig(args.stdinData, args.ifName);
  if (!conf.prevResult)
    throw new CniError(ErrCode.InvalidNetworkConfig, "portmap: required prevResult missing");
  if (conf.portMappings.length === 0) return;
  await BACKENDS[conf.backend].check(owner(args, conf), conf);
}

async function cmdGC(args: CmdArgs): Promise<void> {
  const conf = parseConfig(args.stdinData, args.ifName);
  if (!conf.validAttachments) {
    throw new CniError(
      ErrCode.InvalidNetworkConfig,
      "portmap GC: config is missing cni.dev/valid-attachments",
    );
  }
  await BACKENDS[conf.backend].gc(conf.name, conf.validAttachments);
}

export const plugin: Plugin = {
  supportedVersions: CNI_VERSIONS,
  about: "portmap: forwards host ports to the container (nftables maps or upstream's iptables chains)",
  add: cmdAdd,
  del: cmdDel,
  check: cmdCheck,
  gc: cmdGC,
};
