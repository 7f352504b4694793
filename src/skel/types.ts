import type { Result } from "../spec/types.ts";

/** What the runtime handed the plugin: the CNI_* environment and stdin (like upstream skel.CmdArgs). */
export interface CmdArgs {
  command: string;
  containerID: string;
  netns: string;
  ifName: string;
  /** CNI_ARGS, unparsed ("K=V;K=V"). */
  args: string;
  /** CNI_PATH split on ":". */
  path: string[];
  /** The network configuration JSON exactly as read from stdin. */
  stdinData: Uint8Array;
}

type MaybePromise<T> = T | Promise<T>;

/**
 * A plugin: each verb receives CmdArgs and parses stdinData itself (parse config → cmdAdd/cmdDel/…).
 * `add` returns the result in the canonical (1.1.0) shape; skel prints it converted to the config's
 * cniVersion. Errors are thrown as CniError (anything else becomes code 999).
 */
export interface Plugin {
  /** The CNI versions this plugin speaks, e.g. ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]. */
  supportedVersions: readonly string[];
  /** Shown by `tscni <plugin> --help`-style output and VERSION about text. */
  about?: string;
  add(args: CmdArgs): MaybePromise<Result>;
  del(args: CmdArgs): MaybePromise<void>;
  check?(args: CmdArgs): MaybePromise<void>;
  gc?(args: CmdArgs): MaybePromise<void>;
  status?(args: CmdArgs): MaybePromise<void>;
}
