/**
 * IPAM delegation (upstream pkg/ipam): a main plugin hands its whole config to the plugin named by
 * `ipam.type`, found in CNI_PATH, with the same CNI_* environment and the verb changed.
 * The lookup, exec and in-process fast path are delegate.ts's.
 */
import type { CmdArgs } from "../skel/types.ts";
import { CniError, ErrCode } from "../spec/errors.ts";
import { parseJSONObject } from "../spec/json.ts";
import type { Result } from "../spec/types.ts";
import { type DelegateVerb, delegate as delegateTo } from "./delegate.ts";

type Verb = DelegateVerb;

function ipamType(stdin: Uint8Array): { type: string; cniVersion: string } {
  const conf = parseJSONObject(stdin, "network config");
  const ipam = conf.ipam as { type?: unknown } | undefined;
  if (!ipam || typeof ipam.type !== "string" || ipam.type === "") {
    throw new CniError(ErrCode.InvalidNetworkConfig, "IPAM config missing 'type' key");
  }
  return { type: ipam.type, cniVersion: typeof conf.cniVersion === "string" ? conf.cniVersion : "0.1.0" };
}

async function delegate(verb: Verb, args: CmdArgs, stdin: Uint8Array): Promise<Result | undefined> {
  const { type, cniVersion } = ipamType(stdin);
  return delegateTo(verb, type, args, stdin, cniVersion);
}

/** ADD through the IPAM plugin; `stdin` defaults to the main plugin's own config bytes. */
export async function ipamAdd(args: CmdArgs, stdin: Uint8Array = args.stdinData): Promise<Result> {
  const result = await delegate("ADD", args, stdin);
  if (!result) throw new CniError(ErrCode.Internal, "IPAM plugin returned no result");
  return result;
}

export async function ipamDel(args: CmdArgs, stdin: Uint8Array = args.stdinData): Promise<void> {
  await delegate("DEL", args, stdin);
}

export async function ipamCheck(args: CmdArgs, stdin: Uint8Array = args.stdinData): Promise<void> {
  await delegate("CHECK", args, stdin);
}

export async function ipamGC(args: CmdArgs, stdin: Uint8Array = args.stdinData): Promise<void> {
  await delegate("GC", args, stdin);
}

export async function ipamStatus(args: CmdArgs, stdin: Uint8Array = args.stdinData): Promise<void> {
  await delegate("STATUS", args, stdin);
}
