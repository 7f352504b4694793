/**
 * flannel (upstream flannel-io/cni-plugin): a meta plugin that reads flanneld's subnet.env, derives a
 * config for another plugin (bridge by default, config.ts) and delegates to it. The derived config is
 * saved as `<dataDir>/<containerID>` (Go's sorted-key JSON, same file as upstream's), and DEL runs the
 * delegate with that saved config and then removes it, so DEL works after subnet.env is gone or changed.
 */
import { delegateAdd, delegateCheck, delegateDel } from "../../../ipam-common/delegate.ts";
import type { CmdArgs, Plugin } from "../../../skel/types.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import { isObject, type JSONObject } from "../../../spec/json.ts";
import { CNI_VERSIONS, type Result } from "../../../spec/types.ts";
import { joinPath, mkdir, readFile, rename, unlink, writeFile } from "../../../sys/fs.ts";
import { deriveDelegate, goMarshal, parseConfig } from "./config.ts";
import { loadSubnetEnv } from "./subnet-env.ts";

const encoder = new TextEncoder();

function savedPath(dataDir: string, containerID: string): string {
  return joinPath(dataDir, containerID);
}

/** Written before the delegate runs (upstream's saveScratchNetConf), atomically (temp file + rename). */
function save(dataDir: string, containerID: string, text: string): void {
  const path = savedPath(dataDir, containerID);
  const tmp = `${path}.tmp`;
  try {
    mkdir(dataDir, { recursive: true, mode: 0o700 });
    writeFile(tmp, text, { mode: 0o600 });
    rename(tmp, path);
  } catch (err) {
    unlink(tmp, { force: true });
    throw CniError.from(err, `saving the delegate config ${path}`, ErrCode.IOFailure);
  }
}

/** The saved delegate config, or undefined when there is none. */
function load(dataDir: string, containerID: string): Uint8Array | undefined {
  const path = savedPath(dataDir, containerID);
  try {
    return readFile(path);
  } catch (err) {
    if ((err as { code?: string }).code === "ENOENT") return undefined;
    throw CniError.from(err, `reading the saved delegate config ${path}`, ErrCode.IOFailure);
  }
}

function remove(dataDir: string, containerID: string): void {
  try {
    unlink(savedPath(dataDir, containerID), { force: true });
  } catch {
    // Like upstream: a leftover file is harmless, DEL must not fail on it.
  }
}

function savedType(bytes: Uint8Array): { type: string; cniVersion: string } | undefined {
  try {
    const v: unknown = JSON.parse(new TextDecoder().decode(bytes));
    if (!isObject(v) || typeof v.type !== "string" || v.type === "") return undefined;
    return { type: v.type, cniVersion: typeof v.cniVersion === "string" ? v.cniVersion : "0.1.0" };
  } catch {
    return undefined;
  }
}

async function cmdAdd(args: CmdArgs): Promise<Result> {
  const conf = parseConfig(args.stdinData);
  const env = loadSubnetEnv(conf.subnetFile);
  const delegate: JSONObject = deriveDelegate(conf, env);
  const text = goMarshal(delegate);
  const type = delegate.type as string;
  const version = (delegate.cniVersion as string | undefined) ?? "0.1.0";
  save(conf.dataDir, args.containerID, text);
  try {
    return await delegateAdd(type, args, encoder.encode(text), version);
  } catch (err) {
    // Nothing half-made: undo what the delegate may have left, then forget the attachment.
    try {
      await delegateDel(type, args, encoder.encode(text), version);
      remove(conf.dataDir, args.containerID);
    } catch {
      // The saved config stays for the runtime's DEL.
    }
    throw CniError.from(err, "failed to delegate add");
  }
}

async function cmdDel(args: CmdArgs): Promise<void> {
  const conf = parseConfig(args.stdinData);
  const saved = load(conf.dataDir, args.containerID);
  if (!saved) return; // never added, or already deleted
  const t = savedType(saved);
  if (!t) {
    // Upstream: an undecodable file is reported and DEL succeeds (the file stays).
    process.stderr.write(
      `flannel: failed to parse the saved netconf ${savedPath(conf.dataDir, args.containerID)}\n`,
    );
    return;
  }
  await delegateDel(t.type, args, saved, t.cniVersion);
  remove(conf.dataDir, args.containerID);
}

/** Ours (upstream's CHECK does nothing): CHECK of the delegate with the saved config and prevResult. */
async function cmdCheck(args: CmdArgs): Promise<void> {
  const conf = parseConfig(args.stdinData);
  const saved = load(conf.dataDir, args.containerID);
  const path = savedPath(conf.dataDir, args.containerID);
  if (!saved) throw new CniError(ErrCode.UnknownContainer, `flannel: no saved delegate config ${path}`);
  const t = savedType(saved);
  if (!t)
    throw new CniError(ErrCode.DecodingFailure, `flannel: cannot decode the saved delegate config ${path}`);
  const own = JSON.parse(new TextDecoder().decode(args.stdinData)) as JSONObject;
  const d = JSON.parse(new TextDecoder().decode(saved)) as JSONObject;
  if (own.prevResult !== undefined) d.prevResult = own.prevResult;
  await delegateCheck(t.type, args, encoder.encode(JSON.stringify(d)), t.cniVersion);
}

export const plugin: Plugin = {
  supportedVersions: CNI_VERSIONS,
  about:
    "flannel: derives a delegate config from flanneld's subnet.env and runs that plugin (bridge by default)",
  add: cmdAdd,
  del: cmdDel,
  check: cmdCheck,
};
