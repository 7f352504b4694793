/** The sbr plugin's configuration (upstream plugins/meta/sbr PluginConf, v1.9): table and prevResult. */
import { CniError, ErrCode } from "../../../spec/errors.ts";
import { getInt, getString, parseJSONObject } from "../../../spec/json.ts";
import { parsePrevResult } from "../../../spec/result.ts";
import type { NetConf, Result } from "../../../spec/types.ts";
import { validateNetworkName } from "../../../spec/validate.ts";

export interface SbrConf {
  name: string;
  cniVersion: string;
  /** A fixed table: only the rules are added (upstream doRoutesWithTable); otherwise one is picked. */
  table?: number;
  prevResult?: Result;
}

export function loadSbrConf(stdin: Uint8Array): SbrConf {
  const conf = parseJSONObject(stdin, "network configuration");
  const name = getString(conf, "name") ?? "";
  validateNetworkName(name);
  const out: SbrConf = { name, cniVersion: getString(conf, "cniVersion") ?? "" };
  const table = getInt(conf, "table");
  if (table !== undefined) {
    if (table <= 0 || table > 0xffffffff || table === 253 || table === 254 || table === 255) {
      throw new CniError(ErrCode.InvalidNetworkConfig, `table: ${table} is not a usable routing table id`);
    }
    out.table = table;
  }
  const prev = parsePrevResult(conf as NetConf);
  if (prev) out.prevResult = prev;
  return out;
}
