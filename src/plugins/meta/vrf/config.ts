/**
 * The vrf plugin's configuration (upstream plugins/meta/vrf VRFNetConf): `vrfname` (required, a link
 * name) and `table` (uint32; 0 or absent: the lowest table no VRF in the netns uses, as upstream).
 */
import { CniError, ErrCode } from "../../../spec/errors.ts";
import { getInt, getString, parseJSONObject } from "../../../spec/json.ts";
import { parsePrevResult } from "../../../spec/result.ts";
import type { NetConf, Result } from "../../../spec/types.ts";
import { validateInterfaceName, validateNetworkName } from "../../../spec/validate.ts";

export interface VrfConf {
  name: string;
  cniVersion: string;
  vrfName: string;
  /** 0: pick a free one. */
  table: number;
  prevResult?: Result;
}

function invalid(msg: string): CniError {
  return new CniError(ErrCode.InvalidNetworkConfig, msg);
}

export function loadVrfConf(stdin: Uint8Array | string): VrfConf {
  const conf = parseJSONObject(stdin, "network configuration");
  const name = getString(conf, "name") ?? "";
  validateNetworkName(name);
  const vrfName = getString(conf, "vrfname") ?? "";
  if (!vrfName) throw invalid("configuration is expected to have a valid vrf name");
  try {
    validateInterfaceName(vrfName);
  } catch (err) {
    throw invalid(`vrfname: ${err instanceof CniError ? err.msg : err}`);
  }
  const table = getInt(conf, "table") ?? 0;
  if (table < 0 || table > 0xffffffff)
    throw invalid(`table: ${table} is not a routing table id (0-4294967295)`);
  const out: VrfConf = { name, cniVersion: getString(conf, "cniVersion") ?? "", vrfName, table };
  const prev = parsePrevResult(conf as NetConf);
  if (prev) out.prevResult = prev;
  return out;
}
