/**
 * upstream's plugins/sample on tscni's skel: a chained plugin that requires `anotherAwesomeArg` in its
 * config and passes the previous result through unchanged. Build it from an install of the package:
 *
 *   npm install tscni            # or the packed tarball
 *   bun build index.ts --target=node --outfile sample.mjs   # (or tsc) → run with node, in CNI_PATH
 */
import { type CmdArgs, type Plugin, pluginMain } from "tscni/skel";
import { CniError, ErrCode, parseResult } from "tscni/spec";

interface SampleConf {
  cniVersion: string;
  anotherAwesomeArg: string;
  prevResult?: unknown;
}

function parse(args: CmdArgs): SampleConf {
  const conf = JSON.parse(new TextDecoder().decode(args.stdinData)) as Partial<SampleConf>;
  if (typeof conf.anotherAwesomeArg !== "string" || conf.anotherAwesomeArg === "") {
    throw new CniError(ErrCode.InvalidNetworkConfig, "anotherAwesomeArg must be specified");
  }
  return conf as SampleConf;
}

const plugin: Plugin = {
  supportedVersions: ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"],
  about: "sample: a chained plugin on tscni's skel",
  add(args) {
    const conf = parse(args);
    if (!conf.prevResult)
      throw new CniError(ErrCode.InvalidNetworkConfig, "must be called as chained plugin");
    return parseResult(conf.prevResult, conf.cniVersion);
  },
  del(args) {
    parse(args);
  },
  check(args) {
    parse(args);
  },
};

process.exit(await pluginMain(plugin));
