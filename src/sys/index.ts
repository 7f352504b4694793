export * from "./errno.ts";
export * from "./libc.ts";
