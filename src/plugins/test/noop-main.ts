/**
 * Runs the noop test plugin as an executable: `bun src/plugins/test/noop-main.ts`.
 * NOOP_SUPPORTED_VERSIONS (comma-separated) narrows what it speaks, to stand in for old plugins.
 */
import { pluginMain } from "../../skel/index.ts";
import { makeNoop } from "./noop.ts";

const only = process.env.NOOP_SUPPORTED_VERSIONS;
process.exitCode = await pluginMain(makeNoop(only ? only.split(",") : undefined));
