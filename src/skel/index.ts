/** The plugin side of CNI: pluginMain and its contract types. */
export * from "./inprocess.ts";
export * from "./skel.ts";
export type * from "./types.ts";
