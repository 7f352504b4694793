/**
 * The bandwidth plugin's configuration (upstream plugins/meta/bandwidth parseConfig, plugins 1.1.1):
 * ingressRate/ingressBurst/egressRate/egressBurst in bits/s and bits, at the top level of the config or
 * in the `bandwidth` capability (runtimeConfig.bandwidth). When both are given, the config's own keys
 * win, as upstream's getBandwidth does.
 *
 * Each direction needs its rate and burst together; bursts must stay under 4 GiB in bytes (upstream),
 * and a set rate or burst must be at least 8 bits so it is not 0 bytes in tc's units.
 */
import { parseBandwidth } from "../../../spec/args.ts";
import { parseNetConf, parseValidAttachments } from "../../../spec/conf.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import { field, getArray, getObject, type JSONObject } from "../../../spec/json.ts";
import { parsePrevResult } from "../../../spec/result.ts";
import type { BandwidthEntry, GCAttachment, Result } from "../../../spec/types.ts";
import { validateNetworkName } from "../../../spec/validate.ts";

/** One shaped direction: rate in bits/s, burst in bits. */
export interface Shape {
  rateBits: number;
  burstBits: number;
}

export interface BandwidthConf {
  name: string;
  cniVersion: string;
  /** Traffic toward the container (shaped on the host veth). */
  ingress?: Shape;
  /** Traffic from the container (redirected through an ifb and shaped there). */
  egress?: Shape;
  prevResult?: Result;
  validAttachments?: GCAttachment[];
}

const BANDWIDTH_KEYS = ["ingressRate", "ingressBurst", "egressRate", "egressBurst"] as const;
const MAX_UINT32 = 2 ** 32 - 1;

function invalid(msg: string): CniError {
  return new CniError(ErrCode.InvalidNetworkConfig, msg);
}

/** upstream validateRateAndBurst, plus the 8-bit minimum; undefined when the direction is unshaped. */
export function validateShape(direction: "ingress" | "egress", rate = 0, burst = 0): Shape | undefined {
  if (rate === 0 && burst === 0) return undefined;
  if (burst === 0) throw invalid(`${direction}: if rate is set, burst must also be set`);
  if (rate === 0) throw invalid(`${direction}: if burst is set, rate must also be set`);
  if (burst / 8 >= MAX_UINT32) throw invalid(`${direction}: burst cannot be more than 4GB`);
  if (rate < 8) throw invalid(`${direction}: rate must be at least 8 bits/s, got ${rate}`);
  if (burst < 8) throw invalid(`${direction}: burst must be at least 8 bits, got ${burst}`);
  return { rateBits: rate, burstBits: burst };
}

/** The config's own entry: present when any of the four keys is (as Go's embedded *BandwidthEntry). */
function configEntry(raw: JSONObject): BandwidthEntry | undefined {
  if (BANDWIDTH_KEYS.every((k) => field(raw, k) === undefined || field(raw, k) === null)) return undefined;
  const picked: JSONObject = {};
  for (const k of BANDWIDTH_KEYS) picked[k] = field(raw, k);
  return parseBandwidth(picked, "");
}

/** upstream 1.1.1 has no subnet selection (later versions do, with htb): refuse rather than ignore it. */
function refuseSubnets(entry: JSONObject | undefined, path: string): void {
  if (!entry) return;
  for (const key of ["shapedSubnets", "unshapedSubnets"]) {
    const list = getArray(entry, key, path);
    if (list && list.length > 0) {
      throw invalid(
        `${path ? `${path}.` : ""}${key}: not supported (all traffic of the container is shaped)`,
      );
    }
  }
}

export function parseBandwidthConf(stdin: Uint8Array | string): BandwidthConf {
  const netconf = parseNetConf(stdin);
  const raw = netconf as unknown as JSONObject;
  // The name goes into the ifb's name hash and alias.
  validateNetworkName(netconf.name);
  const rc = getObject(raw, "runtimeConfig");
  const rcBandwidth = rc ? getObject(rc, "bandwidth", "runtimeConfig") : undefined;
  refuseSubnets(raw, "");
  refuseSubnets(rcBandwidth, "runtimeConfig.bandwidth");
  const fromRuntime = parseBandwidth(rcBandwidth, "runtimeConfig.bandwidth");
  const entry = configEntry(raw) ?? fromRuntime;

  const conf: BandwidthConf = { name: netconf.name, cniVersion: netconf.cniVersion };
  const ingress = validateShape("ingress", entry?.ingressRate, entry?.ingressBurst);
  const egress = validateShape("egress", entry?.egressRate, entry?.egressBurst);
  if (ingress) conf.ingress = ingress;
  if (egress) conf.egress = egress;
  const prev = parsePrevResult(netconf);
  if (prev) conf.prevResult = prev;
  const valid = parseValidAttachments(raw);
  if (valid) conf.validAttachments = valid;
  return conf;
}
