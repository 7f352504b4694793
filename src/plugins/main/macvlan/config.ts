/**
 * The macvlan plugin's configuration (upstream plugins/main/macvlan NetConf, v1.9): master, mode, mtu,
 * mac (with CNI_ARGS MAC and runtimeConfig.mac), linkInContainer, bcqueuelen, ipam, dns. What needs
 * the kernel (the default master, the master's MTU bound) is resolved by the ADD/CHECK steps.
 */
import { linkMac } from "../../../ip/mac.ts";
import type { MacvlanMode } from "../../../netlink/link-kinds.ts";
import { parseConfDNS } from "../../../spec/conf.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import { getBool, getInt, getObject, getString, parseJSONObject } from "../../../spec/json.ts";
import { parsePrevResult } from "../../../spec/result.ts";
import type { DNS, NetConf, Result } from "../../../spec/types.ts";
import { validateNetworkName } from "../../../spec/validate.ts";

export const MODES: readonly MacvlanMode[] = ["bridge", "private", "vepa", "passthru", "source"];

export interface MacvlanConf {
  name: string;
  cniVersion: string;
  /** The lower device; "" means the interface of the default route (found at ADD). */
  master: string;
  mode: MacvlanMode;
  /** 0: the kernel's default (the master's MTU). Bounded by the master's MTU at ADD. */
  mtu: number;
  mac?: string;
  /** The master lives in the container netns (and the macvlan is made there). */
  linkInContainer: boolean;
  /** Broadcast queue length; 0: the kernel's default. */
  bcQueueLen: number;
  /** The ipam.type; undefined for a layer-2-only interface. */
  ipamType?: string;
  dns?: DNS;
  prevResult?: Result;
}

function invalid(msg: string): CniError {
  return new CniError(ErrCode.InvalidNetworkConfig, msg);
}

export interface LoadOptions {
  /** DEL reads only what it acts on: a malformed MAC or mode must not make DEL fail forever. */
  forDel?: boolean;
}

export function loadMacvlanConf(stdin: Uint8Array, cniArgs: string, opts: LoadOptions = {}): MacvlanConf {
  const conf = parseJSONObject(stdin, "network configuration");
  const name = getString(conf, "name") ?? "";
  validateNetworkName(name);
  const master = getString(conf, "master") ?? "";
  if (master !== "" && (new TextEncoder().encode(master).byteLength > 15 || /[/:\s]/.test(master))) {
    throw invalid(`master: invalid interface name ${JSON.stringify(master)}`);
  }
  const modeText = getString(conf, "mode") || "bridge";
  if (!(MODES as readonly string[]).includes(modeText) && !opts.forDel) {
    throw invalid(`unknown macvlan mode: ${JSON.stringify(modeText)}`);
  }
  const mtu = getInt(conf, "mtu") ?? 0;
  if (mtu < 0 && !opts.forDel) throw invalid(`invalid MTU ${mtu}, must be [0, master MTU]`);
  const bcQueueLen = getInt(conf, "bcqueuelen") ?? 0;
  if ((bcQueueLen < 0 || bcQueueLen > 0xffffffff) && !opts.forDel) {
    throw invalid(`bcqueuelen: ${bcQueueLen} is not a 32-bit unsigned integer`);
  }
  const ipam = getObject(conf, "ipam");
  const ipamType = (ipam && getString(ipam, "type", "ipam")) || undefined;
  const out: MacvlanConf = {
    name,
    cniVersion: getString(conf, "cniVersion") ?? "",
    master,
    mode: modeText as MacvlanMode,
    mtu,
    linkInContainer: getBool(conf, "linkInContainer") ?? false,
    bcQueueLen,
  };
  if (!opts.forDel) {
    const mac = linkMac(conf, cniArgs, { configKey: true });
    if (mac) out.mac = mac;
    const prev = parsePrevResult(conf as NetConf);
    if (prev) out.prevResult = prev;
  }
  if (ipamType) out.ipamType = ipamType;
  const dns = parseConfDNS(conf);
  if (dns) out.dns = dns;
  return out;
}
