/**
 * The plugins this executable can be. Each entry imports its plugin lazily, so starting one plugin
 * does not load (or pay for) the others. The only place in tscni that imports plugins.
 */
import type { Plugin } from "../skel/types.ts";

type Loader = () => Promise<Plugin>;

/** Installed by `tscni install` (name → loader). */
export const PLUGINS: Record<string, Loader> = {
  bridge: async () => (await import("../plugins/main/bridge/index.ts")).plugin,
  dummy: async () => (await import("../plugins/main/dummy/index.ts")).plugin,
  ipvlan: async () => (await import("../plugins/main/ipvlan/index.ts")).plugin,
  loopback: async () => (await import("../plugins/main/loopback/index.ts")).plugin,
  ptp: async () => (await import("../plugins/main/ptp/index.ts")).plugin,
  vlan: async () => (await import("../plugins/main/vlan/index.ts")).plugin,
  macvlan: async () => (await import("../plugins/main/macvlan/index.ts")).plugin,
  "host-device": async () => (await import("../plugins/main/host-device/index.ts")).plugin,
  tap: async () => (await import("../plugins/main/tap/index.ts")).plugin,
  portmap: async () => (await import("../plugins/meta/portmap/index.ts")).plugin,
  tuning: async () => (await import("../plugins/meta/tuning/index.ts")).plugin,
  bandwidth: async () => (await import("../plugins/meta/bandwidth/index.ts")).plugin,
  flannel: async () => (await import("../plugins/meta/flannel/index.ts")).plugin,
  vrf: async () => (await import("../plugins/meta/vrf/index.ts")).plugin,
  firewall: async () => (await import("../plugins/meta/firewall/index.ts")).plugin,
  sbr: async () => (await import("../plugins/meta/sbr/index.ts")).plugin,
  "host-local": async () => (await import("../plugins/ipam/host-local/index.ts")).plugin,
  static: async () => (await import("../plugins/ipam/static/index.ts")).plugin,
  dhcp: async () => (await import("../plugins/ipam/dhcp/index.ts")).load(),
  whereabouts: async () => (await import("../plugins/ipam/whereabouts/index.ts")).plugin,
};

const ALL = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] as const;

/**
 * Each plugin's supportedVersions, so VERSION is answered without loading the plugin (src/cli/main.ts).
 * test/cli/registry.test.ts checks every entry against the loaded plugin; a plugin missing here is
 * loaded for VERSION as for any verb (correct, only slower).
 */
export const PLUGIN_VERSIONS: Record<string, readonly string[]> = {
  bandwidth: ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"],
  bridge: ALL,
  dhcp: ALL,
  dummy: ALL,
  firewall: ["0.4.0", "1.0.0", "1.1.0"],
  flannel: ALL,
  "host-device": ALL,
  "host-local": ALL,
  ipvlan: ALL,
  loopback: ALL,
  macvlan: ALL,
  portmap: ALL,
  ptp: ALL,
  sbr: ALL,
  static: ALL,
  tap: ALL,
  tuning: ALL,
  vlan: ALL,
  vrf: ["0.3.1", "0.4.0", "1.0.0", "1.1.0"],
  whereabouts: ALL,
};

/** Runnable by name but never installed: test doubles. */
const TEST_PLUGINS: Record<string, Loader> = {
  noop: async () => (await import("../plugins/test/noop.ts")).makeNoop(),
};

export function isPluginName(name: string): boolean {
  return Object.hasOwn(PLUGINS, name) || Object.hasOwn(TEST_PLUGINS, name);
}

export async function loadPlugin(name: string): Promise<Plugin | undefined> {
  const load = Object.hasOwn(PLUGINS, name) ? PLUGINS[name] : TEST_PLUGINS[name];
  return load ? load() : undefined;
}

export function installablePlugins(): string[] {
  return Object.keys(PLUGINS).sort();
}
