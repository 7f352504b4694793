/**
 * The netlink layer: codec, socket, and one module per kernel object. A flat list of re-exports
 * (link-consts.ts, the link modules' wire constants, stays internal).
 */
export * from "./addr.ts";
export * from "./codec.ts";
export * from "./link.ts";
export * from "./link-bridge.ts";
export * from "./link-info.ts";
export * from "./link-kinds.ts";
export * from "./link-tuntap.ts";
export * from "./neigh.ts";
export * from "./route.ts";
export * from "./rule.ts";
export * from "./socket.ts";
export * from "./sysctl.ts";
export * from "./tc.ts";
export * from "./tc-filter.ts";
