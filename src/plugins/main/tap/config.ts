/**
 * The tap plugin's configuration (upstream plugins/main/tap NetConf, v1.9): multiQueue, mtu, mac (with
 * CNI_ARGS MAC and runtimeConfig.mac), owner, group, selinuxContext, bridge, ipam, dns.
 */
import { linkMac } from "../../../ip/mac.ts";
import { parseConfDNS } from "../../../spec/conf.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import { getBool, getInt, getObject, getString, parseJSONObject } from "../../../spec/json.ts";
import { parsePrevResult } from "../../../spec/result.ts";
import type { DNS, NetConf, Result } from "../../../spec/types.ts";
import { validateNetworkName } from "../../../spec/validate.ts";

export interface TapConf {
  name: string;
  cniVersion: string;
  multiQueue: boolean;
  /** 0: the kernel's default. */
  mtu: number;
  mac?: string;
  /** uid / gid allowed to open the tap; undefined: anyone with CAP_NET_ADMIN only. */
  owner?: number;
  group?: number;
  selinuxContext?: string;
  /** A bridge in the container netns the tap becomes a port of. */
  bridge?: string;
  ipamType?: string;
  dns?: DNS;
  prevResult?: Result;
}

function invalid(msg: string): CniError {
  return new CniError(ErrCode.InvalidNetworkConfig, msg);
}

function id(conf: Record<string, unknown>, key: string): number | undefined {
  const v = getInt(conf, key);
  if (v === undefined) return undefined;
  if (v < 0 || v > 0xfffffffe) throw invalid(`${key}: ${v} is not a valid id (0-4294967294)`);
  return v;
}

export function loadTapConf(stdin: Uint8Array, cniArgs: string, opts: { forDel?: boolean } = {}): TapConf {
  const conf = parseJSONObject(stdin, "network configuration");
  const name = getString(conf, "name") ?? "";
  validateNetworkName(name);
  const mtu = getInt(conf, "mtu") ?? 0;
  if (mtu !== 0 && (mtu < 68 || mtu > 65535) && !opts.forDel) {
    throw invalid(`mtu: invalid MTU ${mtu} (must be 68-65535)`);
  }
  const bridge = getString(conf, "bridge") || undefined;
  if (bridge !== undefined && (new TextEncoder().encode(bridge).byteLength > 15 || /[/:\s]/.test(bridge))) {
    throw invalid(`bridge: invalid interface name ${JSON.stringify(bridge)}`);
  }
  const out: TapConf = {
    name,
    cniVersion: getString(conf, "cniVersion") ?? "",
    multiQueue: getBool(conf, "multiQueue") ?? false,
    mtu,
  };
  if (!opts.forDel) {
    const mac = linkMac(conf, cniArgs, { configKey: true });
    if (mac) out.mac = mac;
    const prev = parsePrevResult(conf as NetConf);
    if (prev) out.prevResult = prev;
    const owner = id(conf, "owner");
    if (owner !== undefined) out.owner = owner;
    const group = id(conf, "group");
    if (group !== undefined) out.group = group;
  }
  const selinux = getString(conf, "selinuxContext") || undefined;
  if (selinux) out.selinuxContext = selinux;
  if (bridge) out.bridge = bridge;
  const ipam = getObject(conf, "ipam");
  const ipamType = (ipam && getString(ipam, "type", "ipam")) || undefined;
  if (ipamType) out.ipamType = ipamType;
  const dns = parseConfDNS(conf);
  if (dns) out.dns = dns;
  return out;
}
