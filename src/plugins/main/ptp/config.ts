/**
 * The ptp plugin's configuration (upstream plugins/main/ptp NetConf, with ipMasqBackend of plugins ≥ 1.6).
 * Keys decode with Go's rules (case-insensitive, wrong type → code 6); bad values are code 7 naming the key.
 */

import { type IPMasqBackend, parseIPMasqBackend } from "../../../ip/ipmasq-backend.ts";
import { parseConfDNS, parseValidAttachments } from "../../../spec/conf.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import { getBool, getInt, getString, parseJSONObject } from "../../../spec/json.ts";
import { parsePrevResult } from "../../../spec/result.ts";
import type { DNS, GCAttachment, NetConf, Result } from "../../../spec/types.ts";
import { validateNetworkName } from "../../../spec/validate.ts";

export interface PtpConf {
  name: string;
  cniVersion: string;
  ipMasq: boolean;
  ipMasqBackend: IPMasqBackend;
  /** 0: the kernel's default. */
  mtu: number;
  /** The config's own DNS when it sets anything (it then replaces IPAM's, as upstream). */
  dns?: DNS;
  prevResult?: Result;
  /** GC's cni.dev/valid-attachments, when present. */
  validAttachments?: GCAttachment[];
}

function invalid(msg: string): CniError {
  return new CniError(ErrCode.InvalidNetworkConfig, msg);
}

/** Parses and validates the ptp configuration (stdin). */
export function loadPtpConf(stdin: Uint8Array | string): PtpConf {
  const conf = parseJSONObject(stdin, "network configuration");
  const name = getString(conf, "name") ?? "";
  validateNetworkName(name);
  const mtu = getInt(conf, "mtu") ?? 0;
  if (mtu !== 0 && (mtu < 68 || mtu > 65535)) throw invalid(`mtu: invalid MTU ${mtu} (must be 68-65535)`);
  const out: PtpConf = {
    name,
    cniVersion: getString(conf, "cniVersion") ?? "",
    ipMasq: getBool(conf, "ipMasq") ?? false,
    ipMasqBackend: parseIPMasqBackend(conf),
    mtu,
  };
  const dns = parseConfDNS(conf);
  if (dns) out.dns = dns;
  const prev = parsePrevResult(conf as NetConf);
  if (prev) out.prevResult = prev;
  const valid = parseValidAttachments(conf);
  if (valid) out.validAttachments = valid;
  return out;
}
