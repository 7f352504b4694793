/** The whereabouts plugin as a standalone executable (the multicall CLI dispatches through index.ts). */
import { pluginMain } from "../../../skel/skel.ts";
import { plugin } from "./index.ts";

process.exit(await pluginMain(plugin));
