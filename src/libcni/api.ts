/**
 * CNIConfig: the runtime's entry point (upstream libcni api.go, with GC/STATUS of cni 1.2).
 * Runs a network list's plugins for ADD/CHECK/DEL/GC/STATUS, chains results, keeps the result cache.
 */
import { buildPluginConfig } from "../spec/conf.ts";
import { CniError, ErrCode } from "../spec/errors.ts";
import { parseResult } from "../spec/result.ts";
import type { GCAttachment, NetConf, NetConfList, Result } from "../spec/types.ts";
import { supportsCheck, supportsGCStatus } from "../spec/version.ts";
import {
  type CachedAttachment,
  decodeCachedInfo,
  deleteCachedAttachment,
  listCachedAttachments,
  readCachedResultJSON,
  readCacheFile,
  writeCachedAttachment,
} from "./cache.ts";
import { defaultExec, type Exec } from "./exec.ts";
import {
  type CniCommand,
  execWithoutResult,
  execWithResult,
  getVersionInfo,
  type InvokeArgs,
  type PluginInfo,
} from "./invoke.ts";
import {
  cacheableResult,
  capabilities,
  describe,
  fromConf,
  fromList,
  key,
  type Network,
  type RuntimeConf,
  throwAll,
  validateRuntime,
} from "./network.ts";

export type { RuntimeConf } from "./network.ts";

export const DEFAULT_CACHE_DIR = "/var/lib/cni";

export interface CNIConfigOptions {
  /** Directories searched for plugin executables (CNI_PATH). */
  path: string[];
  cacheDir?: string;
  exec?: Exec;
}

export interface GCArgs {
  /** Attachments the runtime still uses; cached attachments of the network not listed here are deleted. */
  validAttachments?: GCAttachment[];
}

/** A cached attachment's config and the runtime arguments recorded with it. */
export interface CachedConfig {
  config: Uint8Array;
  rt: RuntimeConf;
}

export class CNIConfig {
  readonly path: string[];
  readonly cacheDir: string | undefined;
  readonly exec: Exec;

  constructor(opts: CNIConfigOptions) {
    this.path = opts.path;
    this.cacheDir = opts.cacheDir;
    this.exec = opts.exec ?? defaultExec;
  }

  // ---- network lists ----

  /** Runs ADD through every plugin, each getting the previous one's result, and caches the last result. */
  addNetworkList(list: NetConfList, rt: RuntimeConf, signal?: AbortSignal): Promise<Result> {
    return this.add(fromList(list), rt, signal);
  }

  /** Runs CHECK through every plugin with the cached result (spec ≥ 0.4.0; no-op with disableCheck). */
  checkNetworkList(list: NetConfList, rt: RuntimeConf, signal?: AbortSignal): Promise<void> {
    return this.check(fromList(list), rt, signal);
  }

  /** Runs DEL through the plugins in reverse order, then forgets the cached result. */
  delNetworkList(list: NetConfList, rt: RuntimeConf, signal?: AbortSignal): Promise<void> {
    return this.del(fromList(list), rt, signal);
  }

  /**
   * Deletes this network's cached attachments that are not in `validAttachments`, then (spec ≥ 1.1.0)
   * sends GC to every plugin with the valid attachments (upstream GCNetworkList). No-op with disableGC.
   * Failures are collected, so one stale attachment does not stop the others.
   */
  async gcNetworkList(list: NetConfList, args: GCArgs = {}, signal?: AbortSignal): Promise<void> {
    if (list.disableGC) return;
    const valid = new Set((args.validAttachments ?? []).map((a) => `${a.containerID}\u0000${a.ifname}`));
    const errors: CniError[] = [];
    for (const a of await listCachedAttachments(this.cacheDirFor())) {
      if (a.networkName !== list.name || valid.has(`${a.containerID}\u0000${a.ifName}`)) continue;
      const rt: RuntimeConf = {
        containerID: a.containerID,
        netNS: a.netns,
        ifName: a.ifName,
        args: a.cniArgs,
        capabilityArgs: a.capabilityArgs,
      };
      try {
        await this.delNetworkList(list, rt, signal);
      } catch (err) {
        errors.push(CniError.from(err, `deleting stale attachment ${a.containerID} ${a.ifName}`));
      }
    }
    if (supportsGCStatus(list.cniVersion)) {
      const attachments = args.validAttachments ?? [];
      for (const plugin of list.plugins) {
        try {
          const config = {
            ...buildPluginConfig(list, plugin, {}),
            "cni.dev/valid-attachments": attachments,
            // The 1.1.0 spec text used this name; upstream sends both.
            "cni.dev/attachments": attachments,
          };
          await this.run("GC", plugin, config, {}, signal);
        } catch (err) {
          errors.push(CniError.from(err, `GC of plugin ${describe(plugin)}`));
        }
      }
    }
    throwAll(errors, `GC of network "${list.name}"`);
  }

  /** Asks every plugin for STATUS (spec ≥ 1.1.0, else nothing to ask); the first failure is returned as is. */
  async getStatusNetworkList(list: NetConfList, signal?: AbortSignal): Promise<void> {
    if (!supportsGCStatus(list.cniVersion)) return;
    for (const plugin of list.plugins) {
      // Unwrapped, so the runtime sees the plugin's own code (e.g. 50, plugin not available).
      await this.run("STATUS", plugin, buildPluginConfig(list, plugin, {}), {}, signal);
    }
  }

  /**
   * Checks every plugin exists and supports the list's version (asking each with VERSION).
   * Returns the capabilities the list's plugins enable, sorted (upstream ValidateNetworkList).
   */
  async validateNetworkList(list: NetConfList, signal?: AbortSignal): Promise<string[]> {
    const errors: CniError[] = [];
    for (const plugin of list.plugins) {
      try {
        await this.validatePlugin(plugin.type, list.cniVersion, signal);
      } catch (err) {
        errors.push(CniError.from(err));
      }
    }
    throwAll(errors, `validating network "${list.name}"`);
    return capabilities(list.plugins);
  }

  getNetworkListCachedResult(list: NetConfList, rt: RuntimeConf): Promise<Result | undefined> {
    return this.cachedResult(list.name, rt);
  }

  getNetworkListCachedConfig(list: NetConfList, rt: RuntimeConf): Promise<CachedConfig | undefined> {
    return this.cachedConfig(list.name, rt);
  }

  /** Attachments recorded in the cache, optionally of one container (upstream GetCachedAttachments). */
  getCachedAttachments(containerID?: string): Promise<CachedAttachment[]> {
    return listCachedAttachments(this.cacheDirFor(), containerID);
  }

  /** The VERSION answer of plugin `pluginType`. */
  async getVersionInfo(pluginType: string, signal?: AbortSignal): Promise<PluginInfo> {
    return getVersionInfo(this.exec, await this.exec.findInPath(pluginType, this.path), signal);
  }

  // ---- single networks ----

  addNetwork(net: NetConf, rt: RuntimeConf, signal?: AbortSignal): Promise<Result> {
    return this.add(fromConf(net), rt, signal);
  }

  checkNetwork(net: NetConf, rt: RuntimeConf, signal?: AbortSignal): Promise<void> {
    return this.check(fromConf(net), rt, signal);
  }

  delNetwork(net: NetConf, rt: RuntimeConf, signal?: AbortSignal): Promise<void> {
    return this.del(fromConf(net), rt, signal);
  }

  /** Checks the plugin exists and supports the config's version; returns its enabled capabilities. */
  async validateNetwork(net: NetConf, signal?: AbortSignal): Promise<string[]> {
    await this.validatePlugin(net.type, net.cniVersion, signal);
    return capabilities([net]);
  }

  getNetworkCachedResult(net: NetConf, rt: RuntimeConf): Promise<Result | undefined> {
    return this.cachedResult(net.name, rt);
  }

  getNetworkCachedConfig(net: NetConf, rt: RuntimeConf): Promise<CachedConfig | undefined> {
    return this.cachedConfig(net.name, rt);
  }

  // ---- the verbs ----

  private async add(net: Network, rt: RuntimeConf, signal?: AbortSignal): Promise<Result> {
    validateRuntime(net.name, rt);
    let result: Result | undefined;
    for (const plugin of net.plugins) {
      try {
        const config = this.pluginConfig(net, plugin, rt, result);
        const path = await this.exec.findInPath(plugin.type, this.path);
        result = await execWithResult(this.exec, path, config, this.invokeArgs("ADD", rt), signal);
      } catch (err) {
        throw CniError.from(err, `plugin ${describe(plugin)} failed (add)`);
      }
    }
    const final = result ?? { cniVersion: net.cniVersion };
    try {
      await writeCachedAttachment(this.cacheDirFor(rt), {
        ...key(net.name, rt),
        config: net.configBytes,
        netns: rt.netNS,
        cniArgs: rt.args ?? [],
        capabilityArgs: rt.capabilityArgs ?? {},
        result: cacheableResult(final),
      });
    } catch (err) {
      throw CniError.from(err, `failed to set network "${net.name}" cached result`);
    }
    return final;
  }

  private async check(net: Network, rt: RuntimeConf, signal?: AbortSignal): Promise<void> {
    if (!supportsCheck(net.cniVersion)) {
      throw new CniError(
        ErrCode.IncompatibleVersion,
        `configuration version "${net.cniVersion}" does not support the CHECK command`,
      );
    }
    if (net.disableCheck) return;
    validateRuntime(net.name, rt);
    let cached: Result | undefined;
    try {
      cached = await this.cachedResult(net.name, rt);
    } catch (err) {
      throw CniError.from(err, `failed to get network "${net.name}" cached result`);
    }
    if (!cached) {
      throw new CniError(
        ErrCode.InvalidNetworkConfig,
        `no cached result for network "${net.name}" (container ${rt.containerID}, interface ${rt.ifName}): CHECK needs a prior ADD`,
      );
    }
    for (const plugin of net.plugins) {
      try {
        const path = await this.exec.findInPath(plugin.type, this.path);
        const config = this.pluginConfig(net, plugin, rt, cached);
        await execWithoutResult(this.exec, path, config, this.invokeArgs("CHECK", rt), signal);
      } catch (err) {
        throw CniError.from(err, `plugin ${describe(plugin)} failed (check)`);
      }
    }
  }

  private async del(net: Network, rt: RuntimeConf, signal?: AbortSignal): Promise<void> {
    validateRuntime(net.name, rt);
    const cacheDir = this.cacheDirFor(rt);
    // Before 0.4.0, DEL got no prevResult. A cache entry that cannot be used is dropped rather than
    // allowed to block the DEL (cni 1.2 behaviour).
    let cached: Result | undefined;
    if (supportsCheck(net.cniVersion)) {
      try {
        cached = await this.cachedResult(net.name, rt);
      } catch {
        await deleteCachedAttachment(cacheDir, key(net.name, rt)).catch(() => {});
      }
    }
    for (const plugin of [...net.plugins].reverse()) {
      try {
        const path = await this.exec.findInPath(plugin.type, this.path);
        const config = this.pluginConfig(net, plugin, rt, cached);
        await execWithoutResult(this.exec, path, config, this.invokeArgs("DEL", rt), signal);
      } catch (err) {
        throw CniError.from(err, `plugin ${describe(plugin)} failed (delete)`);
      }
    }
    await deleteCachedAttachment(cacheDir, key(net.name, rt)).catch(() => {});
  }

  // ---- helpers ----

  private pluginConfig(net: Network, plugin: NetConf, rt: RuntimeConf, prev: Result | undefined) {
    const opts: { runtimeConfig?: Record<string, unknown>; prevResult?: Result } = {};
    if (rt.capabilityArgs) opts.runtimeConfig = rt.capabilityArgs;
    if (prev) opts.prevResult = prev;
    return buildPluginConfig(net.list, plugin, opts);
  }

  /** GC and STATUS: no container, only the command and the path. */
  private async run(
    command: CniCommand,
    plugin: NetConf,
    config: Record<string, unknown>,
    rt: Partial<RuntimeConf>,
    signal?: AbortSignal,
  ): Promise<void> {
    const path = await this.exec.findInPath(plugin.type, this.path);
    await execWithoutResult(this.exec, path, config, this.invokeArgs(command, rt), signal);
  }

  private invokeArgs(command: CniCommand, rt: Partial<RuntimeConf>): InvokeArgs {
    return {
      command,
      containerID: rt.containerID ?? "",
      netNS: rt.netNS ?? "",
      ifName: rt.ifName ?? "",
      args: rt.args ?? [],
      path: this.path,
    };
  }

  private async validatePlugin(type: string, version: string, signal?: AbortSignal): Promise<void> {
    const info = await this.getVersionInfo(type, signal);
    const want = version === "" ? "0.1.0" : version;
    if (!info.supportedVersions.includes(want)) {
      throw new CniError(
        ErrCode.IncompatibleVersion,
        `plugin ${type} does not support config version "${want}"`,
      );
    }
  }

  private cacheDirFor(rt?: RuntimeConf): string {
    return this.cacheDir ?? rt?.cacheDir ?? DEFAULT_CACHE_DIR;
  }

  /** The cached result, canonical; undefined when absent or unreadable. Throws if it cannot be decoded. */
  private async cachedResult(name: string, rt: RuntimeConf): Promise<Result | undefined> {
    validateRuntime(name, rt);
    const raw = await readCachedResultJSON(this.cacheDirFor(rt), key(name, rt));
    if (!raw) return undefined;
    const version = typeof raw.cniVersion === "string" ? raw.cniVersion : "";
    try {
      return parseResult(raw, version);
    } catch (err) {
      throw CniError.from(err, `decoding cached result of network "${name}"`, ErrCode.DecodingFailure);
    }
  }

  /** Like upstream getCachedConfig: undefined if no file; an error if the file is not a cniCacheV1 entry. */
  private async cachedConfig(name: string, rt: RuntimeConf): Promise<CachedConfig | undefined> {
    validateRuntime(name, rt);
    const bytes = await readCacheFile(this.cacheDirFor(rt), key(name, rt));
    if (!bytes) return undefined;
    const a = decodeCachedInfo(bytes);
    if (!a) {
      throw new CniError(
        ErrCode.DecodingFailure,
        `cached network "${name}" config is not a cniCacheV1 entry`,
      );
    }
    return {
      config: a.config,
      rt: {
        ...rt,
        args: a.cniArgs.length > 0 ? a.cniArgs : (rt.args ?? []),
        capabilityArgs: a.capabilityArgs,
      },
    };
  }
}
