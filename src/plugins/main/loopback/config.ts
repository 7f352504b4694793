/**
 * loopback's configuration: only the common keys; a prevResult (loopback chained after another plugin)
 * is passed through untouched, as upstream does.
 */
import { parseNetConf } from "../../../spec/conf.ts";
import { parsePrevResult } from "../../../spec/result.ts";
import type { Result } from "../../../spec/types.ts";

export interface LoopbackConf {
  cniVersion: string;
  prevResult?: Result;
}

export function loadLoopbackConf(stdin: Uint8Array): LoopbackConf {
  const conf = parseNetConf(stdin);
  const prevResult = parsePrevResult(conf);
  return prevResult ? { cniVersion: conf.cniVersion, prevResult } : { cniVersion: conf.cniVersion };
}
