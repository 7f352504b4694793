/**
 * The ipvlan plugin's configuration (upstream plugins/main/ipvlan NetConf): `master` (default: the
 * interface of the default route, or in a chain the single interface of prevResult), `mode` l2|l3|l3s
 * (default l2), `mtu`, `linkInContainer`, `dns`, `ipam` (optional in a chain whose prevResult has IPs,
 * and — beyond upstream — optional altogether: then the interface is layer-2 only).
 */
import type { IpvlanMode } from "../../../netlink/link-kinds.ts";
import { parseConfDNS } from "../../../spec/conf.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import { getBool, getInt, getObject, getString, parseJSONObject } from "../../../spec/json.ts";
import { parsePrevResult } from "../../../spec/result.ts";
import type { DNS, NetConf, Result } from "../../../spec/types.ts";
import { validateInterfaceName, validateNetworkName } from "../../../spec/validate.ts";

export interface IpvlanConf {
  name: string;
  cniVersion: string;
  /** "" when the config names none (resolved at ADD: default route or prevResult). */
  master: string;
  mode: IpvlanMode;
  mtu: number;
  linkInContainer: boolean;
  dns?: DNS;
  ipamType: string;
  prevResult?: Result;
}

const MODES: readonly string[] = ["l2", "l3", "l3s"];

function invalid(msg: string): CniError {
  return new CniError(ErrCode.InvalidNetworkConfig, msg);
}

export function loadIpvlanConf(stdin: Uint8Array | string): IpvlanConf {
  const conf = parseJSONObject(stdin, "network configuration");
  const name = getString(conf, "name") ?? "";
  validateNetworkName(name);
  const master = getString(conf, "master") ?? "";
  if (master) {
    try {
      validateInterfaceName(master);
    } catch (err) {
      throw invalid(`master: ${err instanceof CniError ? err.msg : err}`);
    }
  }
  const mode = getString(conf, "mode") || "l2";
  if (!MODES.includes(mode)) throw invalid(`unknown ipvlan mode: ${JSON.stringify(mode)}`);
  const mtu = getInt(conf, "mtu") ?? 0;
  if (mtu < 0) throw invalid(`invalid MTU ${mtu}, must be 0 or more`);
  const ipam = getObject(conf, "ipam");
  const out: IpvlanConf = {
    name,
    cniVersion: getString(conf, "cniVersion") ?? "",
    master,
    mode: mode as IpvlanMode,
    mtu,
    linkInContainer: getBool(conf, "linkInContainer") ?? false,
    ipamType: ipam ? (getString(ipam, "type", "ipam") ?? "") : "",
  };
  const dns = parseConfDNS(conf);
  if (dns) out.dns = dns;
  const prev = parsePrevResult(conf as NetConf);
  if (prev) out.prevResult = prev;
  return out;
}

/**
 * The master named by the config, else prevResult's single named interface (a chain); undefined when
 * neither names one: then the interface of the default route is the master.
 */
export function resolveMaster(conf: IpvlanConf): string | undefined {
  if (conf.master) return conf.master;
  if (!conf.prevResult) return undefined;
  const ifs = conf.prevResult.interfaces ?? [];
  const only = ifs.length === 1 ? ifs[0]?.name : undefined;
  if (!only) throw invalid("chained master failure. PrevResult lacks a single named interface");
  return only;
}
