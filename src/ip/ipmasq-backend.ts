/**
 * The `ipMasqBackend` key of bridge and ptp, kept apart from ipmasq.ts so parsing a config does not
 * load the firewall code.
 */
import { CniError, ErrCode } from "../spec/errors.ts";
import { getString, type JSONObject } from "../spec/json.ts";

export type IPMasqBackend = "nftables" | "iptables";

/** nftables unless the config says iptables (upstream ≥1.5 picks by what is installed; we default). */
export function parseIPMasqBackend(conf: JSONObject): IPMasqBackend {
  const b = getString(conf, "ipMasqBackend");
  if (b === undefined || b === "") return "nftables";
  if (b !== "nftables" && b !== "iptables") {
    throw new CniError(
      ErrCode.InvalidNetworkConfig,
      `ipMasqBackend: must be "nftables" or "iptables", got ${JSON.stringify(b)}`,
    );
  }
  return b;
}
