/** libcni: the runtime side of CNI (config loading, plugin execution, result cache, CNIConfig). Node-safe. */
export {
  type CachedConfig,
  CNIConfig,
  type CNIConfigOptions,
  DEFAULT_CACHE_DIR,
  type GCArgs,
  type RuntimeConf,
} from "./api.ts";
export {
  type AttachmentKey,
  CACHE_KIND_V1,
  type CachedAttachment,
  type CachedInfoJSON,
  cacheFilePath,
  decodeCachedInfo,
  encodeCachedInfo,
} from "./cache.ts";
export {
  confFiles,
  DEFAULT_CONF_EXTENSIONS,
  loadConfList,
  loadConfListFile,
  NoConfigsFoundError,
  NotFoundError,
} from "./conf.ts";
export { defaultExec, type Exec, type ExecPluginOptions, execPlugin, findInPath } from "./exec.ts";
export {
  type InProcessExecOptions,
  inProcessExec,
  type PluginResolver,
  type PluginRunner,
} from "./inprocess.ts";
export { type CniCommand, cniEnv, type InvokeArgs, type PluginInfo } from "./invoke.ts";
export { PodNetwork, type PodNetworkOptions, type PodRef, type PodStatus, podArgs } from "./pod.ts";
