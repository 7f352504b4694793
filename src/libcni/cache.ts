/**
 * The result cache, byte-compatible with upstream libcni: one JSON file per attachment at
 * `<cacheDir>/results/<network>-<containerID>-<ifName>`, so runtimes built on upstream libcni and on
 * this one read each other's entries (e.g. a DEL after an upgrade finds the ADD's result).
 */
import { Buffer } from "node:buffer";
import { mkdir, open, readdir, readFile, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { CniError, ErrCode } from "../spec/errors.ts";

export const CACHE_KIND_V1 = "cniCacheV1";

/** The on-disk JSON, keys and order as upstream's `cachedInfo` (empty optional keys omitted). */
export interface CachedInfoJSON {
  kind: string;
  containerId: string;
  /** base64 of the network config bytes (Go marshals []byte this way). */
  config: string;
  ifName: string;
  networkName: string;
  netns?: string;
  cniArgs?: [string, string][];
  capabilityArgs?: Record<string, unknown>;
  result?: Record<string, unknown>;
}

/** Which attachment a cache entry belongs to. */
export interface AttachmentKey {
  networkName: string;
  containerID: string;
  ifName: string;
}

/** A decoded cache entry (upstream NetworkAttachment plus the result). */
export interface CachedAttachment extends AttachmentKey {
  /** The network config (list) bytes the attachment was added with. */
  config: Uint8Array;
  netns: string;
  cniArgs: [string, string][];
  capabilityArgs: Record<string, unknown>;
  /** The raw result JSON as cached (any version); undefined if none was cached. */
  result?: Record<string, unknown>;
}

export function resultsDir(cacheDir: string): string {
  return join(cacheDir, "results");
}

export function cacheFilePath(cacheDir: string, key: AttachmentKey): string {
  if (key.networkName === "" || key.containerID === "" || key.ifName === "") {
    throw new CniError(
      ErrCode.InvalidEnvironmentVariables,
      `cache file path requires network name ("${key.networkName}"), container ID ("${key.containerID}"), and interface name ("${key.ifName}")`,
    );
  }
  return join(resultsDir(cacheDir), `${key.networkName}-${key.containerID}-${key.ifName}`);
}

export function encodeCachedInfo(a: CachedAttachment): CachedInfoJSON {
  const out: CachedInfoJSON = {
    kind: CACHE_KIND_V1,
    containerId: a.containerID,
    config: Buffer.from(a.config).toString("base64"),
    ifName: a.ifName,
    networkName: a.networkName,
  };
  if (a.netns !== "") out.netns = a.netns;
  if (a.cniArgs.length > 0) out.cniArgs = a.cniArgs;
  if (Object.keys(a.capabilityArgs).length > 0) out.capabilityArgs = a.capabilityArgs;
  if (a.result && Object.keys(a.result).length > 0) out.result = a.result;
  return out;
}

/** Decodes a cniCacheV1 file; undefined when it is not one (corrupt, truncated, legacy or foreign). */
export function decodeCachedInfo(bytes: Uint8Array): CachedAttachment | undefined {
  const o = parseObject(bytes);
  if (!o || o.kind !== CACHE_KIND_V1) return undefined;
  const { containerId, config, ifName, networkName } = o;
  if (typeof containerId !== "string" || typeof ifName !== "string" || typeof networkName !== "string")
    return undefined;
  if (config !== null && config !== undefined && typeof config !== "string") return undefined;
  const cniArgs = Array.isArray(o.cniArgs)
    ? o.cniArgs.filter(
        (p): p is [string, string] =>
          Array.isArray(p) && p.length === 2 && p.every((s) => typeof s === "string"),
      )
    : [];
  const out: CachedAttachment = {
    networkName,
    containerID: containerId,
    ifName,
    config: typeof config === "string" ? new Uint8Array(Buffer.from(config, "base64")) : new Uint8Array(),
    netns: typeof o.netns === "string" ? o.netns : "",
    cniArgs,
    capabilityArgs: isObject(o.capabilityArgs) ? o.capabilityArgs : {},
  };
  if (isObject(o.result)) out.result = o.result;
  return out;
}

/**
 * Writes the entry atomically (temp file, rename): a killed runtime never leaves half a file behind.
 * No fsync (upstream writes in place with none): it cost 1–100 ms per ADD on a busy disk, and what a
 * power loss can leave — an empty, old or missing entry — is what every reader already survives
 * (CHECK reports it, GC skips it, DEL falls back to the config; test/fault/torn-cache.test.ts).
 */
export async function writeCachedAttachment(cacheDir: string, a: CachedAttachment): Promise<void> {
  const path = cacheFilePath(cacheDir, a);
  const dir = resultsDir(cacheDir);
  const data = JSON.stringify(encodeCachedInfo(a));
  const tmp = join(dir, `.${a.networkName}-${a.containerID}-${a.ifName}.${randomHex(6)}.tmp`);
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const fh = await open(tmp, "wx", 0o600);
    try {
      await fh.writeFile(data);
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true }).catch(() => {});
    throw CniError.from(err, `writing cached result ${path}`, ErrCode.IOFailure);
  }
}

/**
 * Reads the raw cache file; undefined when absent or unreadable. Read errors are not failures:
 * the cache is an optimisation the runtime must survive losing (upstream ignores them too).
 */
export async function readCacheFile(cacheDir: string, key: AttachmentKey): Promise<Uint8Array | undefined> {
  try {
    return new Uint8Array(await readFile(cacheFilePath(cacheDir, key)));
  } catch {
    return undefined;
  }
}

export async function readCachedAttachment(
  cacheDir: string,
  key: AttachmentKey,
): Promise<CachedAttachment | undefined> {
  const bytes = await readCacheFile(cacheDir, key);
  return bytes ? decodeCachedInfo(bytes) : undefined;
}

/**
 * The cached result JSON for an attachment: the `result` of a cniCacheV1 file, or the whole file
 * when it is a pre-cniCacheV1 (legacy) bare result. Undefined when absent or unparsable.
 */
export async function readCachedResultJSON(
  cacheDir: string,
  key: AttachmentKey,
): Promise<Record<string, unknown> | undefined> {
  const bytes = await readCacheFile(cacheDir, key);
  if (!bytes) return undefined;
  const o = parseObject(bytes);
  if (!o) return undefined;
  if (o.kind === CACHE_KIND_V1) return isObject(o.result) ? o.result : undefined;
  return "kind" in o ? undefined : o;
}

export async function deleteCachedAttachment(cacheDir: string, key: AttachmentKey): Promise<void> {
  try {
    await rm(cacheFilePath(cacheDir, key), { force: true });
  } catch (err) {
    throw CniError.from(err, "removing cached result", ErrCode.IOFailure);
  }
}

/**
 * Every valid cniCacheV1 entry, in file-name order, optionally only those of one container
 * (upstream GetCachedAttachments). Unreadable or foreign files are skipped.
 */
export async function listCachedAttachments(
  cacheDir: string,
  containerID?: string,
): Promise<CachedAttachment[]> {
  const dir = resultsDir(cacheDir);
  let names: string[];
  try {
    names = (await readdir(dir)).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw CniError.from(err, `listing cached attachments in ${dir}`, ErrCode.IOFailure);
  }
  const out: CachedAttachment[] = [];
  for (const name of names) {
    // A temp file left by a crash mid-write is not an attachment.
    if (name.startsWith(".")) continue;
    if (containerID) {
      // Cheap pre-filter on the file name, as upstream; the decoded containerId decides.
      const pos = name.indexOf(`-${containerID}-`);
      if (pos <= 0 || pos + containerID.length + 2 >= name.length) continue;
    }
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(await readFile(join(dir, name)));
    } catch {
      continue;
    }
    const a = decodeCachedInfo(bytes);
    if (!a || a.ifName === "" || a.networkName === "") continue;
    if (containerID && a.containerID !== containerID) continue;
    out.push(a);
  }
  return out;
}

function parseObject(bytes: Uint8Array): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(new TextDecoder().decode(bytes));
    return isObject(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * `n` random bytes in hex, from the global Web Crypto (Node ≥ 19, Bun): importing node:crypto costs a
 * compiled CLI ~6 ms of start-up.
 */
function randomHex(n: number): string {
  const b = crypto.getRandomValues(new Uint8Array(n));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}
