/** A tiny plugin run as a real process by process.test.ts: ADD echoes a fixed result, DEL fails. */
import { pluginMain } from "../../src/skel/skel.ts";
import { CniError } from "../../src/spec/errors.ts";

const code = await pluginMain({
  supportedVersions: ["0.4.0", "1.0.0", "1.1.0"],
  about: "fixture plugin",
  add: () => ({ cniVersion: "1.1.0", ips: [{ address: "10.0.0.2/24" }] }),
  del: () => {
    throw new CniError(11, "busy");
  },
});
process.exit(code);
