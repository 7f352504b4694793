import type { Plugin } from "./types.ts";

/**
 * How a plugin finds another plugin of this same executable (the IPAM fast path, see src/ipam-common).
 * The CLI's registry installs the resolver at start-up; plugins never import each other directly.
 */
export type PluginResolver = (name: string) => Promise<Plugin | undefined>;

let resolver: PluginResolver | undefined;
let selfExecutable: string | undefined;

/**
 * `self` is the multicall executable whose links count as "this executable" (default: the running
 * one, process.execPath); a runtime that runs plugins in-process from source names the compiled one.
 */
export function setInProcessResolver(fn: PluginResolver, self?: string): void {
  resolver = fn;
  selfExecutable = self;
}

export function inProcessResolver(): PluginResolver | undefined {
  return resolver;
}

export function inProcessSelf(): string {
  return selfExecutable ?? process.execPath;
}
