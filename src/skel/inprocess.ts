import type { Plugin } from "./types.ts";

/**
 * How a plugin finds another plugin of this same executable (the IPAM fast path, see src/ipam-common).
 * The CLI's registry installs the resolver at start-up; plugins never import each other directly.
 */
export type PluginResolver = (name: string) => Promise<Plugin | undefined>;

let resolver: PluginResolver | undefined;

export function setInProcessResolver(fn: PluginResolver): void {
  resolver = fn;
}

export function inProcessResolver(): PluginResolver | undefined {
  return resolver;
}
