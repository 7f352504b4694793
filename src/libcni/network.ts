/**
 * What libcni's verbs work on: a Network (a list, or a single config seen as a one-plugin list) and the
 * runtime arguments, plus the small rules shared by the verbs (name validation, error collection).
 */
import { upconvertConfToList } from "../spec/conf.ts";
import { CniError } from "../spec/errors.ts";
import { convertResult } from "../spec/result.ts";
import type { NetConf, NetConfList, Result } from "../spec/types.ts";
import { validateContainerID, validateInterfaceName, validateNetworkName } from "../spec/validate.ts";
import type { AttachmentKey } from "./cache.ts";
import { encodeJSON } from "./invoke.ts";

/** The arguments of one attachment, besides the network config (upstream RuntimeConf). */
export interface RuntimeConf {
  containerID: string;
  netNS: string;
  ifName: string;
  /** CNI_ARGS as key/value pairs, sent as "K=V;K=V". */
  args?: [string, string][];
  /** Capability arguments; each plugin gets the ones its `capabilities` enable, in runtimeConfig. */
  capabilityArgs?: Record<string, unknown>;
  /** Used when the CNIConfig has no cacheDir of its own (deprecated upstream, kept for parity). */
  cacheDir?: string;
}

/** One network as libcni runs it: a list of plugins, or a single plugin (its own config bytes cached). */
export interface Network {
  name: string;
  cniVersion: string;
  plugins: NetConf[];
  /** The config bytes recorded in the cache (upstream: the list's or the single config's bytes). */
  configBytes: Uint8Array;
  disableCheck: boolean;
  /** The list these plugins' configs are built from (name, version, raw). */
  list: NetConfList;
}

export function fromList(list: NetConfList): Network {
  return {
    name: list.name,
    cniVersion: list.cniVersion,
    plugins: list.plugins,
    configBytes: encodeJSON(list.raw),
    disableCheck: list.disableCheck,
    list,
  };
}

export function fromConf(net: NetConf): Network {
  const list = upconvertConfToList(net);
  return { ...fromList(list), configBytes: encodeJSON(net), disableCheck: false };
}

/**
 * The result as upstream caches it: in the version the last plugin answered in. An address-less
 * 0.1.0/0.2.0 result cannot be printed; the entry is then cached without one (it still records the
 * attachment for GC).
 */
export function cacheableResult(result: Result): Record<string, unknown> | undefined {
  try {
    return convertResult(result, result.cniVersion);
  } catch {
    return undefined;
  }
}

export function key(networkName: string, rt: RuntimeConf): AttachmentKey {
  return { networkName, containerID: rt.containerID, ifName: rt.ifName };
}

/** Names become cache file names and kernel names: refuse bad ones before anything is touched. */
export function validateRuntime(networkName: string, rt: RuntimeConf): void {
  validateContainerID(rt.containerID);
  validateNetworkName(networkName);
  validateInterfaceName(rt.ifName);
}

export function describe(plugin: NetConf): string {
  return plugin.name ? `type="${plugin.type}" name="${plugin.name}"` : `type="${plugin.type}"`;
}

export function capabilities(plugins: readonly NetConf[]): string[] {
  const caps = new Set<string>();
  for (const p of plugins) {
    for (const [cap, on] of Object.entries(p.capabilities ?? {})) if (on) caps.add(cap);
  }
  return [...caps].sort();
}

/** Throws nothing for no errors, the error itself for one, a combined error (first one's code) for more. */
export function throwAll(errors: CniError[], what: string): void {
  const [first] = errors;
  if (!first) return;
  if (errors.length === 1) throw first;
  throw new CniError(first.code, `${what}: ${errors.map((e) => e.message).join("; ")}`);
}
