/**
 * The bridge plugin's configuration (upstream plugins/main/bridge loadNetConf, with the options of
 * plugins ≥ 1.2: vlanTrunk, preserveDefaultVlan, macspoofchk, enabledad, disableContainerInterface,
 * portIsolation, ipMasqBackend). Keys decode with Go's rules (case-insensitive, wrong type → code 6);
 * bad values are code 7 naming the key.
 */

import { type IPMasqBackend, parseIPMasqBackend } from "../../../ip/ipmasq-backend.ts";
import { linkMac } from "../../../ip/mac.ts";
import { parseConfDNS, parseValidAttachments } from "../../../spec/conf.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import {
  getArray,
  getBool,
  getInt,
  getObject,
  getString,
  isObject,
  parseJSONObject,
} from "../../../spec/json.ts";
import type { DNS, GCAttachment } from "../../../spec/types.ts";
import { validateNetworkName } from "../../../spec/validate.ts";

export const DEFAULT_BRIDGE = "cni0";

export interface BridgeConf {
  name: string;
  cniVersion: string;
  /** The bridge's name (default cni0). */
  bridge: string;
  /** isGateway, or implied by isDefaultGateway. */
  isGateway: boolean;
  isDefaultGateway: boolean;
  forceAddress: boolean;
  ipMasq: boolean;
  ipMasqBackend: IPMasqBackend;
  /** 0: leave the kernel's default. */
  mtu: number;
  hairpinMode: boolean;
  promiscMode: boolean;
  /** Access VLAN (PVID, egress untagged); 0 for none. */
  vlan: number;
  /** Tagged trunk VIDs, sorted, without duplicates (and without `vlan`, which stays untagged). */
  vlanTrunk: number[];
  /** Whether the bridge needs VLAN filtering: a vlan or a vlanTrunk key (even an empty one), like upstream. */
  vlanFiltering: boolean;
  preserveDefaultVlan: boolean;
  macSpoofChk: boolean;
  enableDad: boolean;
  disableContainerInterface: boolean;
  portIsolation: boolean;
  /** The container interface's MAC: runtimeConfig.mac, else args.cni.mac, else CNI_ARGS MAC. */
  mac?: string;
  /** The ipam.type; undefined for a layer-2-only attachment. */
  ipamType?: string;
  /** The config's own DNS when it sets anything (it then replaces IPAM's). */
  dns?: DNS;
  /** GC's cni.dev/valid-attachments, when present. */
  validAttachments?: GCAttachment[];
}

function invalid(msg: string): CniError {
  return new CniError(ErrCode.InvalidNetworkConfig, msg);
}

/** Interface names as the kernel takes them (the bridge name comes from the config: code 7). */
function validateBridgeName(name: string): void {
  const bytes = new TextEncoder().encode(name).byteLength;
  if (bytes === 0 || bytes > 15 || name === "." || name === ".." || /[/:\s]/.test(name)) {
    throw invalid(`bridge: invalid interface name ${JSON.stringify(name)}`);
  }
}

function vid(v: number, what: string): number {
  if (v <= 0 || v > 4094) throw invalid(`incorrect trunk ${what} parameter`);
  return v;
}

/** vlanTrunk entries ({id} or {minID, maxID}) → sorted unique VIDs, with upstream's validation. */
export function collectVlanTrunk(list: unknown[]): number[] {
  const vids = new Set<number>();
  list.forEach((item, i) => {
    const path = `vlanTrunk[${i}]`;
    if (item === null) return;
    if (!isObject(item)) {
      throw new CniError(ErrCode.DecodingFailure, `${path}: expected object, got ${typeof item}`);
    }
    const minID = getInt(item, "minID", path);
    const maxID = getInt(item, "maxID", path);
    const id = getInt(item, "id", path);
    if (minID !== undefined && maxID !== undefined) {
      vid(minID, "minID");
      vid(maxID, "maxID");
      if (maxID < minID) throw invalid("minID is greater than maxID in trunk parameter");
      for (let v = minID; v <= maxID; v++) vids.add(v);
    } else if (maxID !== undefined) {
      throw invalid("minID and maxID should be configured simultaneously, minID is missing");
    } else if (minID !== undefined) {
      throw invalid("minID and maxID should be configured simultaneously, maxID is missing");
    }
    if (id !== undefined) vids.add(vid(id, "id"));
  });
  return [...vids].sort((a, b) => a - b);
}

export interface LoadOptions {
  /**
   * DEL must not fail on what only ADD acts on (upstream checks these in cmdAdd): a runtime retries a
   * failing DEL forever. With `forDel` the hairpin/promisc and IPAM/disableContainerInterface
   * combinations and a malformed container MAC are not errors.
   */
  forDel?: boolean;
}

/** Parses and validates the bridge configuration (stdin) plus CNI_ARGS. */
export function loadBridgeConf(
  stdin: Uint8Array | string,
  cniArgs: string,
  opts: LoadOptions = {},
): BridgeConf {
  const conf = parseJSONObject(stdin, "network configuration");
  const name = getString(conf, "name") ?? "";
  validateNetworkName(name);
  const bridge = getString(conf, "bridge") || DEFAULT_BRIDGE;
  validateBridgeName(bridge);

  const mtu = getInt(conf, "mtu") ?? 0;
  if (mtu !== 0 && (mtu < 68 || mtu > 65535)) throw invalid(`mtu: invalid MTU ${mtu} (must be 68-65535)`);
  const vlan = getInt(conf, "vlan") ?? 0;
  if (vlan < 0 || vlan > 4094) throw invalid(`invalid VLAN ID ${vlan} (must be between 0 and 4094)`);
  const trunkList = getArray(conf, "vlanTrunk");
  // The access VLAN is the trunk's native VLAN: it stays untagged, so it is not also a tagged member.
  const vlanTrunk = collectVlanTrunk(trunkList ?? []).filter((v) => v !== vlan);

  const isDefaultGateway = getBool(conf, "isDefaultGateway") ?? false;
  const hairpinMode = getBool(conf, "hairpinMode") ?? false;
  const promiscMode = getBool(conf, "promiscMode") ?? false;
  if (hairpinMode && promiscMode && !opts.forDel) {
    throw invalid("cannot set hairpin mode and promiscuous mode at the same time");
  }
  const ipam = getObject(conf, "ipam");
  const ipamType = (ipam && getString(ipam, "type", "ipam")) || undefined;
  const disableContainerInterface = getBool(conf, "disableContainerInterface") ?? false;
  if (disableContainerInterface && ipamType && !opts.forDel) {
    throw invalid("cannot use IPAM when disableContainerInterface is set");
  }

  const out: BridgeConf = {
    name,
    cniVersion: getString(conf, "cniVersion") ?? "",
    bridge,
    isGateway: (getBool(conf, "isGateway") ?? false) || isDefaultGateway,
    isDefaultGateway,
    forceAddress: getBool(conf, "forceAddress") ?? false,
    ipMasq: getBool(conf, "ipMasq") ?? false,
    ipMasqBackend: parseIPMasqBackend(conf),
    mtu,
    hairpinMode,
    promiscMode,
    vlan,
    vlanTrunk,
    vlanFiltering: vlan !== 0 || trunkList !== undefined,
    preserveDefaultVlan: getBool(conf, "preserveDefaultVlan") ?? true,
    macSpoofChk: getBool(conf, "macspoofchk") ?? false,
    enableDad: getBool(conf, "enabledad") ?? false,
    disableContainerInterface,
    portIsolation: getBool(conf, "portIsolation") ?? false,
  };
  if (!opts.forDel) {
    const mac = linkMac(conf, cniArgs, { argsCni: true });
    if (mac) out.mac = mac;
  }
  if (ipamType) out.ipamType = ipamType;
  const dns = parseConfDNS(conf);
  if (dns) out.dns = dns;
  const valid = parseValidAttachments(conf);
  if (valid) out.validAttachments = valid;
  return out;
}
