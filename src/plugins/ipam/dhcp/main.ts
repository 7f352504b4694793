/** The dhcp plugin (and, run as `main.ts daemon …`, its daemon) as a standalone executable. */
import { pluginMain } from "../../../skel/skel.ts";
import { load } from "./index.ts";

process.exit(await pluginMain(await load()));
