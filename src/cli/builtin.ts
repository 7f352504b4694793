/**
 * Networks tscni knows without a file in /etc: the demo's. `tscni add|del|check <net>` falls back to
 * these when NETCONFPATH has no network of that name, so `tscni del tscni-demo <netns>` cleans up
 * what `tscni demo --keep` left.
 */
import { join } from "node:path";
import { parseConfList } from "../spec/conf.ts";
import type { NetConfList } from "../spec/types.ts";

export const DEMO_NETWORK = "tscni-demo";
export const DEMO_LOOPBACK = "tscni-demo-lo";
export const DEMO_BRIDGE = "tscni0";
export const DEMO_SUBNET = "10.99.99.0/24";
export const DEMO_GATEWAY = "10.99.99.1";
/** Where the demo keeps its cache and host-local store unless --state-dir says otherwise. */
export const DEFAULT_STATE_DIR = "/var/lib/cni";
/** Links to this executable named after the plugins, used as CNI_PATH when none is set. */
export const BUILTIN_BIN_DIR = "/run/tscni/bin";

export function builtinNetwork(name: string, stateDir = DEFAULT_STATE_DIR): NetConfList | undefined {
  const list = builtinNetworks(stateDir)[name];
  return list ? parseConfList(new TextEncoder().encode(JSON.stringify(list))) : undefined;
}

function builtinNetworks(stateDir: string): Record<string, object> {
  return {
    [DEMO_LOOPBACK]: {
      cniVersion: "1.1.0",
      name: DEMO_LOOPBACK,
      plugins: [{ type: "loopback" }],
    },
    [DEMO_NETWORK]: {
      cniVersion: "1.1.0",
      name: DEMO_NETWORK,
      plugins: [
        {
          type: "bridge",
          bridge: DEMO_BRIDGE,
          isGateway: true,
          ipMasq: true,
          ipam: {
            type: "host-local",
            ranges: [[{ subnet: DEMO_SUBNET, gateway: DEMO_GATEWAY }]],
            routes: [{ dst: "0.0.0.0/0" }],
            dataDir: join(stateDir, "networks"),
          },
        },
      ],
    },
  };
}
