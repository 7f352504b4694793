/**
 * What the CLI's commands share (commands.ts, demo.ts, pod.ts): the usage error, cnitool's container
 * id, the netns argument, the built-in plugin links. A leaf: it imports no command module.
 */
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readlinkSync,
  realpathSync,
  renameSync,
  symlinkSync,
} from "node:fs";
import { join, resolve } from "node:path";
import { sha512hex } from "../ip/hash.ts";
import { BUILTIN_BIN_DIR } from "./builtin.ts";
import { installablePlugins } from "./registry.ts";

export class UsageError extends Error {}

/** Links named after every plugin in BUILTIN_BIN_DIR → this executable (the built-in networks' CNI_PATH). */
export function ensureBuiltinBin(): string {
  if (isBunRuntime(process.execPath)) {
    throw new UsageError(
      "the built-in networks need the compiled executable: run `npm run build` and use dist/tscni",
    );
  }
  install(BUILTIN_BIN_DIR, process.execPath);
  return BUILTIN_BIN_DIR;
}

export function isBunRuntime(exe: string): boolean {
  return /\/bun(-\w+)?$/.test(exe);
}

/** cnitool's container id: "cnitool-" + the first 20 hex digits of sha512(absolute netns path). */
export function cnitoolContainerID(netnsPath: string): string {
  return `cnitool-${sha512hex(netnsPath).slice(0, 20)}`;
}

export function resolveNetnsArg(arg: string): string {
  return arg.includes("/") ? resolve(arg) : `/var/run/netns/${arg}`;
}

/** Links every installable plugin name in `dir` to this executable; idempotent. */
export function install(dir: string, executable: string): string[] {
  const target = realpathSync(executable);
  mkdirSync(dir, { recursive: true });
  const changed: string[] = [];
  for (const name of installablePlugins()) {
    const link = join(dir, name);
    if (existsSync(link) && lstatSync(link).isSymbolicLink() && readlinkSync(link) === target) continue;
    const tmp = join(dir, `.${name}.tscni-${process.pid}`);
    symlinkSync(target, tmp);
    renameSync(tmp, link); // atomic replace: a runtime exec'ing the plugin never sees it missing
    changed.push(name);
  }
  return changed;
}
