/** The sbr plugin's configuration (upstream plugins/meta/sbr PluginConf, v1.9): table and prevResult. */
import { CniError, ErrCode } from "../../../spec/errors.ts";
import { formatIP, ipFamily, parseIP } from "../../../spec/ipaddr.ts";
import { getBool, getInt, getString, getStringArray, parseJSONObject } from "../../../spec/json.ts";
import { parsePrevResult } from "../../../spec/result.ts";
import type { NetConf, Result } from "../../../spec/types.ts";
import { validateNetworkName } from "../../../spec/validate.ts";

export interface SbrConf {
  name: string;
  cniVersion: string;
  /** A fixed table: only the rules are added (upstream doRoutesWithTable); otherwise one is picked. */
  table?: number;
  prevResult?: Result;
  /** Static gateways (one per family) used instead of prevResult's (upstream main after v1.9.1). */
  gateways: { 4?: string; 6?: string };
  /** Keep the subnet routes in the main table with the address as source hint (upstream main). */
  addSourceHints: boolean;
}

function invalid(msg: string): CniError {
  return new CniError(ErrCode.InvalidNetworkConfig, msg);
}

function parseGateways(list: string[]): { 4?: string; 6?: string } {
  if (list.length > 2) throw invalid("gateways list cannot contain more than 2 entries (one IPv4, one IPv6)");
  const out: { 4?: string; 6?: string } = {};
  for (const gw of list) {
    const ip = parseIP(gw);
    if (!ip) throw invalid(`invalid static gateway IP address: ${gw}`);
    const family = ipFamily(ip);
    const prev = out[family];
    if (prev) throw invalid(`gateways list contains multiple IPv${family} addresses: ${prev} and ${gw}`);
    out[family] = formatIP(family === 4 && ip.length === 16 ? ip.subarray(12) : ip);
  }
  return out;
}

export function loadSbrConf(stdin: Uint8Array): SbrConf {
  const conf = parseJSONObject(stdin, "network configuration");
  const name = getString(conf, "name") ?? "";
  validateNetworkName(name);
  const out: SbrConf = {
    name,
    cniVersion: getString(conf, "cniVersion") ?? "",
    gateways: parseGateways(getStringArray(conf, "gateways") ?? []),
    addSourceHints: getBool(conf, "addSourceHints") ?? false,
  };
  const table = getInt(conf, "table");
  if (table !== undefined) {
    if (table <= 0 || table > 0xffffffff || table === 253 || table === 254 || table === 255) {
      throw invalid(`table: ${table} is not a usable routing table id`);
    }
    out.table = table;
  }
  const prev = parsePrevResult(conf as NetConf);
  if (prev) out.prevResult = prev;
  return out;
}
