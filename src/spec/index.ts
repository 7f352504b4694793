/** The CNI spec layer: wire types, parsing, validation, result conversions, errors. Pure and Node-safe. */
export * from "./args.ts";
export * from "./conf.ts";
export * from "./errors.ts";
export * from "./ipaddr.ts";
export * from "./json.ts";
export * from "./result.ts";
export * from "./types.ts";
export * from "./validate.ts";
export * from "./version.ts";
