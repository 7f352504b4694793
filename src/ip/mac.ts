/**
 * The container interface's MAC as the plugins take it from their inputs, with upstream's precedence
 * (later wins): the config's `mac` (macvlan, tap), CNI_ARGS `MAC`, `args.cni.mac` (bridge), and
 * `runtimeConfig.mac`. A malformed one is code 7 (config) or 4 (CNI_ARGS).
 */
import { isHardwareAddr, loadArgs, parseMac } from "../spec/args.ts";
import { CniError, ErrCode } from "../spec/errors.ts";
import { field, getObject, getString, type JSONObject } from "../spec/json.ts";

/** Which inputs beyond CNI_ARGS and runtimeConfig a plugin reads its MAC from. */
export interface MacSources {
  /** The config's own `mac` key (macvlan, tap). */
  configKey?: boolean;
  /** `args.cni.mac` (bridge). */
  argsCni?: boolean;
}

/** "0A-58-0A-00-00-01" or "0a58.0a00.0001" → "0a:58:0a:00:00:01" (the kernel's form). */
export function normalizeMac(mac: string): string {
  const hex = mac.toLowerCase().replace(/[-:.]/g, "");
  return hex.match(/../g)?.join(":") ?? mac;
}

export function linkMac(conf: JSONObject, cniArgs: string, from: MacSources): string | undefined {
  let mac: string | undefined;
  if (from.configKey) {
    mac = getString(conf, "mac") || undefined;
    if (mac !== undefined && !isHardwareAddr(mac, 6)) {
      throw new CniError(ErrCode.InvalidNetworkConfig, `invalid MAC address ${JSON.stringify(mac)} in "mac"`);
    }
  }
  if (cniArgs !== "") {
    const fromEnv = loadArgs(cniArgs, ["MAC"]).get("MAC");
    if (fromEnv) {
      if (!isHardwareAddr(fromEnv, 6)) {
        throw new CniError(
          ErrCode.InvalidEnvironmentVariables,
          `ARGS: invalid MAC address ${JSON.stringify(fromEnv)}`,
        );
      }
      mac = fromEnv;
    }
  }
  if (from.argsCni) {
    const cni = getObject(getObject(conf, "args") ?? {}, "cni", "args");
    const fromArgs = cni ? parseMac(field(cni, "mac"), "args.cni.mac") : undefined;
    if (fromArgs) mac = fromArgs;
  }
  const rc = getObject(conf, "runtimeConfig");
  const fromRuntime = rc ? parseMac(field(rc, "mac"), "runtimeConfig.mac") : undefined;
  if (fromRuntime) mac = fromRuntime;
  return mac === undefined ? undefined : normalizeMac(mac);
}
