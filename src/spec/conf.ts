/**
 * Network configurations: a single plugin's config (.conf) and a network configuration list (.conflist),
 * parsed like upstream libcni (ConfFromBytes, NetworkConfFromBytes, ConfListFromConf), and the JSON
 * object libcni sends to one plugin of a list (buildOneConfig + injectRuntimeConfig).
 */
import { CniError, ErrCode } from "./errors.ts";
import {
  field,
  getArray,
  getBoolMap,
  getObject,
  getString,
  getStringArray,
  hasField,
  isObject,
  type JSONObject,
  jsonType,
  parseJSONObject,
} from "./json.ts";
import { convertResult } from "./result.ts";
import {
  CURRENT_VERSION,
  type DNS,
  type GCAttachment,
  type NetConf,
  type NetConfList,
  type Result,
} from "./types.ts";
import { validateNetworkName } from "./validate.ts";
import { compareVersions, parseVersion } from "./version.ts";

/** A config without cniVersion is a 0.1.0 config (upstream DecodeVersion). */
export const DEFAULT_CONF_VERSION = "0.1.0";

function configError(msg: string): CniError {
  return new CniError(ErrCode.InvalidNetworkConfig, msg);
}

function errorText(err: unknown): string {
  return err instanceof CniError ? err.msg : err instanceof Error ? err.message : String(err);
}

/**
 * Checks the keys upstream decodes into its NetConf struct (Go rules: case-insensitive keys, a wrong
 * type is a decoding error, code 6) and returns the object with canonical `cniVersion`, `name` and
 * `type`; every other key is kept as is.
 */
function decodeNetConf(raw: JSONObject, path: string): NetConf {
  const cniVersion = getString(raw, "cniVersion", path) || DEFAULT_CONF_VERSION;
  const name = getString(raw, "name", path) ?? "";
  const type = getString(raw, "type", path) ?? "";
  getBoolMap(raw, "capabilities", path);
  const ipam = getObject(raw, "ipam", path);
  if (ipam) getString(ipam, "type", path ? `${path}.ipam` : "ipam");
  const dns = getObject(raw, "dns", path);
  if (dns) {
    const p = path ? `${path}.dns` : "dns";
    getStringArray(dns, "nameservers", p);
    getString(dns, "domain", p);
    getStringArray(dns, "search", p);
    getStringArray(dns, "options", p);
  }
  const prev = field(raw, "prevResult");
  if (prev !== undefined && prev !== null && !isObject(prev)) {
    throw new CniError(
      ErrCode.DecodingFailure,
      `${path ? `${path}.` : ""}prevResult: expected object, got ${jsonType(prev)}`,
    );
  }
  return { ...raw, cniVersion, name, type };
}

/**
 * Parses a single plugin's network configuration: `type` is required (code 7), `name` is validated
 * when present, a missing `cniVersion` means 0.1.0. Unknown keys are kept.
 */
export function parseNetConf(bytes: Uint8Array | string): NetConf {
  return netConfFromObject(parseJSONObject(bytes, "network config"));
}

/** parseNetConf of an already-decoded object. */
export function netConfFromObject(raw: JSONObject): NetConf {
  const conf = decodeNetConf(raw, "");
  if (conf.type === "") throw configError("error parsing configuration: missing 'type'");
  if (conf.name !== "") validateNetworkName(conf.name);
  return conf;
}

/**
 * What skel checks before dispatching (upstream skel validateConfig + DecodeVersion): the config is a
 * JSON object with a valid `name`; returns it with its cniVersion (default 0.1.0).
 */
export function parsePluginStdin(bytes: Uint8Array | string): NetConf {
  const conf = decodeNetConf(parseJSONObject(bytes, "network config"), "");
  if (conf.name === "") throw configError("missing network name");
  validateNetworkName(conf.name);
  return conf;
}

/** libcni's readBool: a boolean, or the strings "true"/"false" in any case; anything else is code 7. */
function readListBool(raw: JSONObject, key: string): boolean {
  const v = raw[key];
  if (v === undefined) return false;
  if (typeof v === "boolean") return v;
  if (typeof v !== "string") {
    throw configError(`error parsing configuration list: invalid type ${jsonType(v)} for ${key}`);
  }
  const s = v.toLowerCase();
  if (s === "true") return true;
  if (s === "false") return false;
  throw configError(`error parsing configuration list: invalid value ${JSON.stringify(v)} for ${key}`);
}

/**
 * The list's version: the highest of cniVersions and cniVersion that this implementation does not
 * consider newer than itself (upstream skips newer entries rather than failing).
 */
function listVersion(raw: JSONObject): { cniVersion: string; cniVersions?: string[] } {
  let cniVersion = "";
  const rawVersion = raw["cniVersion"];
  if (rawVersion !== undefined) {
    if (typeof rawVersion !== "string") {
      throw configError(`error parsing configuration list: invalid cniVersion type ${jsonType(rawVersion)}`);
    }
    cniVersion = rawVersion;
  }
  const rawVersions = raw["cniVersions"];
  if (rawVersions === undefined) return { cniVersion: cniVersion || DEFAULT_CONF_VERSION };
  if (!Array.isArray(rawVersions)) {
    throw configError(
      `error parsing configuration list: invalid type for cniVersions: ${jsonType(rawVersions)}`,
    );
  }
  const cniVersions: string[] = [];
  const candidates: string[] = [];
  rawVersions.forEach((v, i) => {
    if (typeof v !== "string") {
      throw configError(
        `error parsing configuration list: invalid type for cniVersions index ${i}: ${jsonType(v)}`,
      );
    }
    try {
      parseVersion(v);
    } catch (err) {
      throw configError(
        `error parsing configuration list: invalid cniVersions entry ${v} at index ${i}: ${errorText(err)}`,
      );
    }
    cniVersions.push(v);
    if (compareVersions(v, CURRENT_VERSION) <= 0) candidates.push(v);
  });
  if (cniVersion !== "") {
    try {
      if (compareVersions(cniVersion, CURRENT_VERSION) <= 0) candidates.push(cniVersion);
    } catch (err) {
      throw configError(
        `error parsing configuration list: invalid cniVersion ${cniVersion}: ${errorText(err)}`,
      );
    }
  }
  let best = cniVersion;
  if (candidates.length > 0) {
    best = candidates[0]!;
    for (const c of candidates) if (compareVersions(c, best) > 0) best = c;
  }
  return { cniVersion: best || DEFAULT_CONF_VERSION, cniVersions };
}

export interface ParseConfListOptions {
  /**
   * Accept a list without a `plugins` key (upstream 1.2 then loads the plugins from files in a directory
   * named after the network, unless loadOnlyInlinedPlugins). Default false: such a list is an error.
   */
  allowNoPlugins?: boolean;
}

/**
 * Parses a network configuration list. `name` is required and validated; `cniVersions` picks the highest
 * version not newer than this implementation (overriding `cniVersion`); disableCheck/disableGC/
 * loadOnlyInlinedPlugins accept booleans or "true"/"false"; every plugin needs a `type` and inherits the
 * list's name and cniVersion. Structural problems are code 7, bad JSON and wrong field types code 6.
 */
export function parseConfList(bytes: Uint8Array | string, opts: ParseConfListOptions = {}): NetConfList {
  return confListFromObject(parseJSONObject(bytes, "network configuration list"), opts);
}

/** parseConfList of an already-decoded object. */
export function confListFromObject(raw: JSONObject, opts: ParseConfListOptions = {}): NetConfList {
  // The list itself is read from a generic map upstream, so its keys are exact.
  const rawName = raw["name"];
  if (rawName === undefined) throw configError("error parsing configuration list: no name");
  if (typeof rawName !== "string") {
    throw configError(`error parsing configuration list: invalid name type ${jsonType(rawName)}`);
  }
  validateNetworkName(rawName);
  const { cniVersion, cniVersions } = listVersion(raw);
  const disableCheck = readListBool(raw, "disableCheck");
  const disableGC = readListBool(raw, "disableGC");
  const loadOnlyInlinedPlugins = readListBool(raw, "loadOnlyInlinedPlugins");

  const list: NetConfList = {
    cniVersion,
    name: rawName,
    disableCheck,
    disableGC,
    loadOnlyInlinedPlugins,
    plugins: [],
    raw,
  };
  if (cniVersions) list.cniVersions = cniVersions;

  const rawPlugins = raw["plugins"];
  if (rawPlugins === undefined) {
    if (loadOnlyInlinedPlugins) {
      throw configError(
        "error parsing configuration list: `loadOnlyInlinedPlugins` is true, and no 'plugins' key",
      );
    }
    if (opts.allowNoPlugins) return list;
    throw configError("error parsing configuration list: no 'plugins' key");
  }
  if (!Array.isArray(rawPlugins)) {
    throw configError(`error parsing configuration list: invalid 'plugins' type ${jsonType(rawPlugins)}`);
  }
  if (rawPlugins.length === 0) throw configError("error parsing configuration list: no plugins in list");
  list.plugins = rawPlugins.map((p, i) => pluginInList(list, p, i));
  return list;
}

function pluginInList(list: NetConfList, raw: unknown, index: number): NetConf {
  const path = `plugins[${index}]`;
  try {
    if (!isObject(raw)) {
      throw new CniError(ErrCode.DecodingFailure, `${path}: expected object, got ${jsonType(raw)}`);
    }
    const conf = decodeNetConf(raw, path);
    if (conf.type === "") throw configError("error parsing configuration: missing 'type'");
    return { ...conf, name: list.name, cniVersion: list.cniVersion };
  } catch (err) {
    throw CniError.from(err, `failed to parse plugin config ${index}`);
  }
}

/** Upstream ConfListFromConf: a single .conf becomes a list with that one plugin. */
export function upconvertConfToList(conf: NetConf): NetConfList {
  return confListFromObject({ name: conf.name, cniVersion: conf.cniVersion, plugins: [conf] });
}

export interface PluginConfigInputs {
  /** The runtime's capability arguments (portMappings, bandwidth, …), keyed by capability name. */
  runtimeConfig?: Record<string, unknown>;
  /** The previous plugin's result; it is sent converted to the list's cniVersion. */
  prevResult?: Result;
}

/**
 * The JSON object sent on stdin to one plugin of a list: the plugin's own keys with the list's `name` and
 * `cniVersion`, `prevResult` when given, and `runtimeConfig` holding exactly the capability arguments the
 * plugin declared in `capabilities` (a static runtimeConfig stays unless one is injected, as upstream).
 */
export function buildPluginConfig(
  list: NetConfList,
  plugin: NetConf,
  inputs: PluginConfigInputs = {},
): JSONObject {
  const out: JSONObject = { ...plugin, name: list.name, cniVersion: list.cniVersion };
  if (inputs.prevResult) out["prevResult"] = convertResult(inputs.prevResult, list.cniVersion);
  const rc = filterCapabilityArgs(plugin, inputs.runtimeConfig ?? {});
  if (Object.keys(rc).length > 0) out["runtimeConfig"] = rc;
  return out;
}

/** The capability arguments a plugin asked for with `"capabilities": {"<name>": true}`. */
export function filterCapabilityArgs(
  plugin: NetConf,
  args: Record<string, unknown>,
): Record<string, unknown> {
  const caps = getBoolMap(plugin, "capabilities") ?? {};
  const rc: Record<string, unknown> = {};
  for (const [cap, enabled] of Object.entries(caps)) {
    if (enabled && Object.hasOwn(args, cap) && args[cap] !== undefined) rc[cap] = args[cap];
  }
  return rc;
}

/** The GC keys libcni sends; the 1.1.0 spec text named it `cni.dev/attachments`, upstream sends both. */
export const VALID_ATTACHMENTS_KEY = "cni.dev/valid-attachments";
const LEGACY_ATTACHMENTS_KEY = "cni.dev/attachments";

/**
 * The attachments a GC call says are still in use (`cni.dev/valid-attachments`, else the legacy
 * `cni.dev/attachments`); undefined when the config carries neither (not a GC config).
 */
export function parseValidAttachments(conf: JSONObject): GCAttachment[] | undefined {
  const key = hasField(conf, VALID_ATTACHMENTS_KEY) ? VALID_ATTACHMENTS_KEY : LEGACY_ATTACHMENTS_KEY;
  const list = getArray(conf, key);
  if (!list) return undefined;
  return list.map((item, i) => {
    const path = `${key}[${i}]`;
    if (!isObject(item))
      throw new CniError(ErrCode.DecodingFailure, `${path}: expected object, got ${jsonType(item)}`);
    return {
      containerID: getString(item, "containerID", path) ?? "",
      ifname: getString(item, "ifname", path) ?? "",
    };
  });
}

/**
 * A plugin config's own `dns` key (bridge, ptp…), with upstream's dnsConfSet rule: any list present
 * (even empty) or a domain counts as set; undefined when none is.
 */
export function parseConfDNS(conf: JSONObject): DNS | undefined {
  const d = getObject(conf, "dns");
  if (!d) return undefined;
  const nameservers = getStringArray(d, "nameservers", "dns");
  const domain = getString(d, "domain", "dns");
  const search = getStringArray(d, "search", "dns");
  const options = getStringArray(d, "options", "dns");
  if (!nameservers && !domain && !search && !options) return undefined;
  const out: DNS = {};
  if (nameservers) out.nameservers = nameservers;
  if (domain) out.domain = domain;
  if (search) out.search = search;
  if (options) out.options = options;
  return out;
}
