/**
 * static IPAM: returns the configured addresses, routes and DNS; allocates nothing, so DEL, GC and
 * STATUS have nothing to do.
 */
import type { CmdArgs, Plugin } from "../../../skel/types.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import { formatIP, parseCIDR, parseIP } from "../../../spec/ipaddr.ts";
import { parseJSONObject } from "../../../spec/json.ts";
import { parsePrevResult } from "../../../spec/result.ts";
import { CNI_VERSIONS, type NetConf, type Result } from "../../../spec/types.ts";
import { formatAddress, loadStaticConf } from "./config.ts";

function cmdAdd(args: CmdArgs): Result {
  const conf = loadStaticConf(args.stdinData, args.args);
  const result: Result = { cniVersion: conf.cniVersion || "0.1.0" };
  if (conf.addresses.length > 0) {
    result.ips = conf.addresses.map((a) =>
      a.gateway ? { address: formatAddress(a), gateway: formatIP(a.gateway) } : { address: formatAddress(a) },
    );
  }
  if (conf.routes.length > 0) result.routes = conf.routes;
  if (conf.dns) result.dns = conf.dns;
  return result;
}

/** Nothing was allocated, so there is nothing to release. */
function cmdDel(_args: CmdArgs): void {}

/**
 * Every configured address must be in prevResult with the configured gateway. (Upstream only
 * compares gateways of addresses it finds; a missing address is a failed check here.)
 */
function cmdCheck(args: CmdArgs): void {
  const conf = loadStaticConf(args.stdinData, args.args);
  const prev = parsePrevResult(parseJSONObject(args.stdinData, "network configuration") as NetConf);
  if (!prev) throw new CniError(ErrCode.InvalidNetworkConfig, "Required prevResult missing");
  const have = (prev.ips ?? []).map((ipc) => {
    const c = parseCIDR(ipc.address);
    return { ip: c ? formatIP(c.ip) : ipc.address, gateway: ipc.gateway && parseIP(ipc.gateway) };
  });
  for (const a of conf.addresses) {
    const ip = formatIP(a.ip);
    const found = have.find((h) => h.ip === ip);
    if (!found) {
      throw new CniError(ErrCode.Internal, `static: Failed to find addr ${ip} on interface ${args.ifName}`);
    }
    if (a.gateway && (!found.gateway || formatIP(found.gateway) !== formatIP(a.gateway))) {
      throw new CniError(ErrCode.Internal, `static: Failed to match addr ${ip} on interface ${args.ifName}`);
    }
  }
}

export const plugin: Plugin = {
  supportedVersions: CNI_VERSIONS,
  about: "static IPAM: assigns the configured addresses, routes and DNS",
  add: cmdAdd,
  del: cmdDel,
  check: cmdCheck,
};
