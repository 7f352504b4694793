/**
 * The vlan plugin's configuration (upstream plugins/main/vlan NetConf): `master` (required), `vlanId`
 * (required here, 0–4094), `mtu` (0..master's MTU, checked at ADD), `linkInContainer`, `dns`, `ipam`.
 * Keys decode with Go's rules (wrong type → code 6); bad values are code 7 naming the key.
 */
import { parseConfDNS } from "../../../spec/conf.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import { field, getBool, getInt, getObject, getString, parseJSONObject } from "../../../spec/json.ts";
import { parsePrevResult } from "../../../spec/result.ts";
import type { DNS, NetConf, Result } from "../../../spec/types.ts";
import { validateInterfaceName, validateNetworkName } from "../../../spec/validate.ts";

export interface VlanConf {
  name: string;
  cniVersion: string;
  master: string;
  vlanId: number;
  /** 0: the kernel's default (the master's). */
  mtu: number;
  linkInContainer: boolean;
  dns?: DNS;
  ipamType: string;
  prevResult?: Result;
}

function invalid(msg: string): CniError {
  return new CniError(ErrCode.InvalidNetworkConfig, msg);
}

export function loadVlanConf(stdin: Uint8Array | string): VlanConf {
  const conf = parseJSONObject(stdin, "network configuration");
  const name = getString(conf, "name") ?? "";
  validateNetworkName(name);
  const master = getString(conf, "master") ?? "";
  if (!master) {
    throw invalid('"master" field is required. It specifies the host interface name to create the VLAN for');
  }
  try {
    validateInterfaceName(master);
  } catch (err) {
    throw invalid(`master: ${err instanceof CniError ? err.msg : err}`);
  }
  if (field(conf, "vlanId") === undefined) throw invalid('"vlanId" field is required (0-4094)');
  const vlanId = getInt(conf, "vlanId") ?? 0;
  if (vlanId < 0 || vlanId > 4094)
    throw invalid(`invalid VLAN ID ${vlanId} (must be between 0 and 4094 inclusive)`);
  const mtu = getInt(conf, "mtu") ?? 0;
  if (mtu < 0) throw invalid(`invalid MTU ${mtu}, must be 0 or more`);
  const ipam = getObject(conf, "ipam");
  const out: VlanConf = {
    name,
    cniVersion: getString(conf, "cniVersion") ?? "",
    master,
    vlanId,
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
