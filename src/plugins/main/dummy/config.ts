/**
 * The dummy plugin's configuration (upstream plugins/main/dummy: a plain types.NetConf). An IPAM section
 * is required for ADD and CHECK, as upstream ("dummy interface requires an IPAM configuration").
 */
import { CniError, ErrCode } from "../../../spec/errors.ts";
import { getObject, getString, parseJSONObject } from "../../../spec/json.ts";
import { parsePrevResult } from "../../../spec/result.ts";
import type { NetConf, Result } from "../../../spec/types.ts";
import { validateNetworkName } from "../../../spec/validate.ts";

export interface DummyConf {
  name: string;
  cniVersion: string;
  /** ipam.type, "" when the config has none. */
  ipamType: string;
  prevResult?: Result;
}

export function loadDummyConf(stdin: Uint8Array | string): DummyConf {
  const conf = parseJSONObject(stdin, "network configuration");
  const name = getString(conf, "name") ?? "";
  validateNetworkName(name);
  const ipam = getObject(conf, "ipam");
  const ipamType = ipam ? (getString(ipam, "type", "ipam") ?? "") : "";
  const out: DummyConf = { name, cniVersion: getString(conf, "cniVersion") ?? "", ipamType };
  const prev = parsePrevResult(conf as NetConf);
  if (prev) out.prevResult = prev;
  return out;
}

/** ADD and CHECK need IPAM: a dummy link without addresses is of no use to a container. */
export function requireIpam(conf: DummyConf): void {
  if (!conf.ipamType)
    throw new CniError(ErrCode.InvalidNetworkConfig, "dummy interface requires an IPAM configuration");
}
