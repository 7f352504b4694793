/**
 * Loading network configurations from a directory (upstream libcni conf.go, plus cni 1.3's
 * per-network plugin directory `<dir>/<network>/*.conf`).
 */
import type { Dirent } from "node:fs";
import { readdir, readFile, stat } from "node:fs/promises";
import { dirname, extname, join } from "node:path";
import { netConfFromObject, parseConfList, parseNetConf, upconvertConfToList } from "../spec/conf.ts";
import { CniError, ErrCode } from "../spec/errors.ts";
import { type JSONObject, parseJSONObject } from "../spec/json.ts";
import type { NetConf, NetConfList } from "../spec/types.ts";
import { validateNetworkName } from "../spec/validate.ts";

/** No configuration in `dir` has network name `name` (upstream NotFoundError). */
export class NotFoundError extends CniError {
  readonly dir: string;
  readonly networkName: string;
  constructor(
    dir: string,
    networkName: string,
    msg = `no net configuration with name "${networkName}" in ${dir}`,
  ) {
    super(ErrCode.InvalidNetworkConfig, msg);
    this.name = "NotFoundError";
    this.dir = dir;
    this.networkName = networkName;
  }
}

/** `dir` holds no configuration files at all (upstream NoConfigsFoundError). */
export class NoConfigsFoundError extends NotFoundError {
  constructor(dir: string, name: string) {
    super(dir, name, `no net configurations found in ${dir} (looking for network "${name}")`);
  }
}

export const DEFAULT_CONF_EXTENSIONS = [".conf", ".conflist", ".json"] as const;

/** Regular files in `dir` whose extension is one of `exts`, as full paths sorted lexically; [] if no dir. */
export async function confFiles(
  dir: string,
  exts: readonly string[] = DEFAULT_CONF_EXTENSIONS,
): Promise<string[]> {
  let entries: Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw CniError.from(err, `reading config dir ${dir}`, ErrCode.IOFailure);
  }
  const out: string[] = [];
  for (const e of entries) {
    if (!exts.includes(extname(e.name))) continue;
    const path = join(dir, e.name);
    // Symlinked configs are common (config management); follow them, but only to regular files.
    if (e.isFile() || (e.isSymbolicLink() && (await isRegularFile(path)))) out.push(path);
  }
  return out.sort();
}

async function isRegularFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

/**
 * Parses a file as a network list: a `.conflist` as is, anything else as a single plugin config
 * upconverted to a one-plugin list; then appends the `<dir>/<name>/*.conf` plugin files unless the
 * list sets loadOnlyInlinedPlugins.
 */
export async function loadConfListFile(path: string): Promise<NetConfList> {
  const bytes = await readBytes(path);
  let list: NetConfList;
  try {
    list =
      extname(path) === ".conflist"
        ? parseConfList(bytes, { allowNoPlugins: true })
        : upconvertConfToList(parseNetConf(bytes));
  } catch (err) {
    throw CniError.from(err, `loading ${path}`, ErrCode.InvalidNetworkConfig);
  }
  if (!list.loadOnlyInlinedPlugins) {
    await appendPluginFiles(list, dirname(path));
  }
  if (list.plugins.length === 0) {
    throw new CniError(
      ErrCode.InvalidNetworkConfig,
      `loading ${path}: network "${list.name}" has no plugins`,
    );
  }
  return list;
}

/**
 * The network list named `name` in `dir` (upstream LoadConfList): `.conflist` files first, then
 * `.conf`/`.json` files upconverted to lists, each group in lexical order; the first match wins.
 */
export async function loadConfList(dir: string, name: string): Promise<NetConfList> {
  const lists = await confFiles(dir, [".conflist"]);
  const singles = await confFiles(dir, [".conf", ".json"]);
  if (lists.length === 0 && singles.length === 0) throw new NoConfigsFoundError(dir, name);
  for (const file of [...lists, ...singles]) {
    const list = await loadConfListFile(file);
    if (list.name === name) return list;
  }
  throw new NotFoundError(dir, name);
}

/** Appends `<dir>/<list.name>/*.conf`, lexically, to list.plugins (and to list.raw.plugins, which is cached). */
async function appendPluginFiles(list: NetConfList, dir: string): Promise<void> {
  // The name comes from a file's contents and becomes a path component.
  validateNetworkName(list.name);
  const files = await confFiles(join(dir, list.name), [".conf"]);
  if (files.length === 0) return;
  const confs: NetConf[] = [];
  const raws: JSONObject[] = [];
  for (const file of files) {
    try {
      const raw = parseJSONObject(await readBytes(file), `plugin config ${file}`);
      // Like inlined plugins, they belong to the list: its name and version.
      confs.push({ ...netConfFromObject(raw), name: list.name, cniVersion: list.cniVersion });
      raws.push(raw);
    } catch (err) {
      throw CniError.from(err, `loading plugin config ${file}`, ErrCode.InvalidNetworkConfig);
    }
  }
  list.plugins = [...list.plugins, ...confs];
  const inlined = Array.isArray(list.raw.plugins) ? list.raw.plugins : [];
  list.raw = { ...list.raw, plugins: [...inlined, ...raws] };
}

async function readBytes(path: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(path));
  } catch (err) {
    throw CniError.from(err, `reading ${path}`, ErrCode.IOFailure);
  }
}
