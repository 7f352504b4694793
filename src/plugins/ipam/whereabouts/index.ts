/**
 * whereabouts IPAM on etcd: one range shared by every node of a cluster, allocated in node-affine
 * blocks by etcd transactions (src/ipam-etcd/pool.ts has the key layout and the txns). Reads whereabouts' config
 * keys (src/ipam-etcd/config.ts), so an existing whereabouts etcd config works; docs/cluster-ipam.md has the design.
 */
import { EtcdClient } from "../../../etcd/client.ts";
import { formatAddr, hexAddr } from "../../../ipam-common/ipmath.ts";
import { loadWhereaboutsConf, type WhereaboutsConf } from "../../../ipam-etcd/config.ts";
import { claimValue, etcdError, Pool } from "../../../ipam-etcd/pool.ts";
import type { CmdArgs, Plugin } from "../../../skel/types.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import { CNI_VERSIONS, type IPConfig, type Result } from "../../../spec/types.ts";
import { validateContainerID, validateInterfaceName } from "../../../spec/validate.ts";

function load(args: CmdArgs): { conf: WhereaboutsConf; pools: Pool[] } {
  const conf = loadWhereaboutsConf(args.stdinData, args.args);
  const client = new EtcdClient(conf.etcd);
  return { conf, pools: conf.ranges.map((r) => new Pool(client, conf.prefix, r)) };
}

function validateAttachment(args: CmdArgs): void {
  validateContainerID(args.containerID);
  validateInterfaceName(args.ifName);
}

/** One address per range; on any failure the addresses taken so far are released. */
async function cmdAdd(args: CmdArgs): Promise<Result> {
  validateAttachment(args);
  const { conf, pools } = load(args);
  const att = {
    containerID: args.containerID,
    ifName: args.ifName,
    node: conf.node,
    podNamespace: conf.podNamespace,
    podName: conf.podName,
  };
  const taken: Pool[] = [];
  const ips: IPConfig[] = [];
  try {
    for (const pool of pools) {
      const a = await pool.allocate(att).catch((err) => {
        throw etcdError(err, `allocating for ${args.containerID}/${args.ifName} in ${pool.range.id}`);
      });
      taken.push(pool);
      const ipc: IPConfig = { address: `${formatAddr(a)}/${pool.range.subnet.prefix}` };
      if (pool.range.gateway) ipc.gateway = formatAddr(pool.range.gateway);
      ips.push(ipc);
    }
  } catch (err) {
    for (const pool of taken.reverse()) {
      await pool.release(args.containerID, args.ifName).catch(() => undefined);
    }
    throw err;
  }
  const result: Result = { cniVersion: conf.cniVersion || "0.1.0", ips };
  if (conf.routes.length > 0) result.routes = conf.routes;
  if (conf.dns) result.dns = conf.dns;
  return result;
}

/** Releases the attachment's addresses; nothing recorded is success (DEL is idempotent). */
async function cmdDel(args: CmdArgs): Promise<void> {
  validateAttachment(args);
  const { pools } = load(args);
  for (const pool of pools) {
    await pool.release(args.containerID, args.ifName).catch((err) => {
      throw etcdError(err, `releasing ${args.containerID}/${args.ifName} in ${pool.range.id}`);
    });
  }
}

async function cmdCheck(args: CmdArgs): Promise<void> {
  validateAttachment(args);
  const { pools } = load(args);
  for (const pool of pools) {
    const r = await pool.owner(args.containerID, args.ifName).catch((err) => {
      throw etcdError(err, `checking ${args.containerID}/${args.ifName}`);
    });
    if (!r) {
      throw new CniError(
        ErrCode.UnknownContainer,
        `whereabouts: no address in ${pool.range.id} for ${args.containerID}/${args.ifName}`,
      );
    }
  }
}

/**
 * Releases the addresses of this node's attachments that the runtime no longer lists as valid, then
 * hands back this node's empty blocks. Other nodes' attachments are theirs to collect.
 */
async function cmdGC(args: CmdArgs): Promise<void> {
  const { conf, pools } = load(args);
  if (!conf.validAttachments) {
    throw new CniError(ErrCode.InvalidNetworkConfig, "GC: config is missing cni.dev/valid-attachments");
  }
  const valid = new Set(conf.validAttachments.map((a) => `${a.containerID}/${a.ifname}`));
  for (const pool of pools) {
    try {
      for (const [key, rec] of await pool.owners()) {
        if (rec.node !== conf.node || valid.has(key)) continue;
        const slash = key.lastIndexOf("/");
        await pool.release(key.slice(0, slash), key.slice(slash + 1));
      }
      for (const [hex, claim] of await pool.claims()) {
        if (claim.value === claimValue(conf.node))
          await pool.handBack(hexAddr(hex, pool.range.subnet.ip.family), claim);
      }
    } catch (err) {
      throw etcdError(err, `GC of ${pool.range.id}`);
    }
  }
}

/** 50 (not available) when etcd has no quorum: an ADD could not commit. */
async function cmdStatus(args: CmdArgs): Promise<void> {
  const { conf, pools } = load(args);
  const client = pools[0]?.client;
  try {
    await client?.checkQuorum(`${conf.prefix}/`);
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    throw new CniError(ErrCode.PluginNotAvailable, `whereabouts: etcd has no quorum: ${msg}`);
  }
}

export const plugin: Plugin = {
  supportedVersions: CNI_VERSIONS,
  about: "whereabouts IPAM on etcd: a cluster-wide range in node-affine blocks",
  add: cmdAdd,
  del: cmdDel,
  check: cmdCheck,
  gc: cmdGC,
  status: cmdStatus,
};
