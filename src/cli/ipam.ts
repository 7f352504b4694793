/**
 * `tscni ipam <network|file> [--ip ADDR] [--json]`: the cluster IPAM (whereabouts on etcd) of a
 * network from NETCONFPATH, or of a .conf/.conflist file: blocks per node with used/free counts, or
 * the owner of one address.
 */
import { existsSync, readFileSync } from "node:fs";
import { loadWhereaboutsConf } from "../ipam-etcd/config.ts";
import { etcdError } from "../ipam-etcd/pool.ts";
import { ipamOwner, ipamView } from "../ipam-etcd/view.ts";
import { loadConfList } from "../libcni/conf.ts";
import { CniError, ErrCode } from "../spec/errors.ts";
import { isObject, type JSONObject } from "../spec/json.ts";
import { print } from "./out.ts";
import { UsageError } from "./shared.ts";

export const IPAM_USAGE = "tscni ipam <network|file> [--ip ADDR] [--json]";

/** The first plugin config of the list whose ipam.type is whereabouts, as its own network config. */
function whereaboutsConf(list: JSONObject): string {
  const plugins = Array.isArray(list.plugins) ? list.plugins : [list];
  for (const p of plugins) {
    if (isObject(p) && isObject(p.ipam) && p.ipam.type === "whereabouts") {
      return JSON.stringify({ cniVersion: list.cniVersion, name: list.name, ...p });
    }
  }
  throw new CniError(ErrCode.InvalidNetworkConfig, `network ${String(list.name)} has no whereabouts IPAM`);
}

async function loadList(target: string): Promise<JSONObject> {
  if (existsSync(target)) return JSON.parse(readFileSync(target, "utf8")) as JSONObject;
  const l = await loadConfList(process.env.NETCONFPATH || "/etc/cni/net.d", target);
  return { ...l.raw, cniVersion: l.cniVersion, name: l.name, plugins: l.plugins };
}

export async function ipamCmd(argv: string[]): Promise<void> {
  let target: string | undefined;
  let ip: string | undefined;
  let json = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === "--ip") ip = argv[++i];
    else if (a.startsWith("--ip=")) ip = a.slice(5);
    else if (a === "--json") json = true;
    else if (!target) target = a;
    else throw new UsageError(`unexpected argument ${a}\n${IPAM_USAGE}`);
  }
  if (!target) throw new UsageError(IPAM_USAGE);
  const conf = loadWhereaboutsConf(whereaboutsConf(await loadList(target)), "");
  try {
    if (ip !== undefined) {
      const r = await ipamOwner(conf, ip);
      if (json) await print(`${JSON.stringify(r ?? null)}\n`);
      else if (!r) await print(`${ip}: free\n`);
      else {
        const pod = r.podName ? ` pod ${r.podNamespace}/${r.podName}` : "";
        await print(`${ip}: node ${r.node} container ${r.containerID} ifname ${r.ifName}${pod}\n`);
      }
      return;
    }
    const views = await ipamView(conf);
    if (json) {
      await print(`${JSON.stringify(views, null, 2)}\n`);
      return;
    }
    const { printTable } = await import("./commands.ts");
    for (const v of views) {
      await print(
        `pool ${v.pool}  range ${v.range}  blocks /${v.blockPrefix}  used ${v.used}  unclaimed ${v.unclaimed}` +
          (v.orphans ? `  ORPHANS ${v.orphans}` : "") +
          "\n",
      );
      await printTable(
        ["BLOCK", "NODE", "USED", "FREE"],
        v.blocks.map((b) => [b.block, b.node, String(b.used), String(b.free)]),
      );
    }
  } catch (err) {
    throw etcdError(err, "reading the IPAM pools");
  }
}
