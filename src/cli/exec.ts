/**
 * How the CLI runs plugins: our own plugins (links to this executable in CNI_PATH) in this process, a
 * whole chain in one process; every other plugin exec'd. TSCNI_IN_PROCESS=0 execs every plugin.
 */
import { defaultExec, type Exec, inProcessExec } from "../libcni/index.ts";
import { setInProcessResolver } from "../skel/inprocess.ts";
import { pluginMain } from "../skel/skel.ts";
import { loadPlugin } from "./registry.ts";

export function cliExec(): Exec {
  if (process.env.TSCNI_IN_PROCESS === "0") return defaultExec;
  // The main plugins' IPAM calls take the same in-process path when their IPAM is ours.
  setInProcessResolver(loadPlugin);
  return inProcessExec({ resolve: loadPlugin, pluginMain });
}
