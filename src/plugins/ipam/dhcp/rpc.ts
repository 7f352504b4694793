/**
 * The plugin ↔ daemon protocol over the daemon's Unix stream socket: one JSON request line, one JSON
 * answer, then the daemon closes the connection. (Upstream speaks Go's net/rpc over HTTP; nothing
 * else talks to this socket, so ours is simpler: docs/differences.md.)
 */
import type { Result } from "../../../spec/types.ts";

export type Method = "add" | "del" | "check" | "gc" | "status";

export interface Request {
  method: Method;
  containerID: string;
  netns: string;
  ifName: string;
  /** CNI_ARGS. */
  args: string;
  /** The network configuration as the plugin read it. */
  stdin: string;
}

export type Answer =
  | { ok: true; result?: Result }
  | { ok: false; code: number; msg: string; details?: string };

export function encodeRequest(r: Request): Uint8Array {
  return new TextEncoder().encode(`${JSON.stringify(r)}\n`);
}
