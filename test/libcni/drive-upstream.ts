/**
 * Test driver for upstream.test.ts, run inside a throwaway "host" netns (`ip netns exec`), because the
 * bridge plugin makes its bridge in the netns of the process that runs it.
 * Usage: bun drive-upstream.ts <add|check|del> '<json Options>'. Prints {ok, result?|error?} as JSON.
 */
import { CNIConfig } from "../../src/libcni/index.ts";
import { parseConfList } from "../../src/spec/conf.ts";
import { CniError } from "../../src/spec/errors.ts";

interface Options {
  cacheDir: string;
  dataDir: string;
  bridge: string;
  subnet: string;
  netns: string;
  containerID: string;
}

const [verb, raw] = process.argv.slice(2);
const opts = JSON.parse(raw ?? "{}") as Options;

const list = parseConfList(
  JSON.stringify({
    cniVersion: "1.0.0",
    name: "tscni-upstream",
    plugins: [
      {
        type: "bridge",
        bridge: opts.bridge,
        isGateway: true,
        ipMasq: false,
        ipam: { type: "host-local", dataDir: opts.dataDir, ranges: [[{ subnet: opts.subnet }]] },
      },
    ],
  }),
);
const lo = parseConfList(
  JSON.stringify({ cniVersion: "1.0.0", name: "tscni-lo", plugins: [{ type: "loopback" }] }),
);

const cni = new CNIConfig({ path: ["/usr/lib/cni"], cacheDir: opts.cacheDir });
const rt = { containerID: opts.containerID, netNS: opts.netns, ifName: "eth0" };
const rtLo = { ...rt, ifName: "lo" };

try {
  let result: unknown;
  if (verb === "add") {
    result = await cni.addNetworkList(list, rt);
    await cni.addNetworkList(lo, rtLo);
  } else if (verb === "check") {
    await cni.checkNetworkList(list, rt);
  } else if (verb === "del") {
    await cni.delNetworkList(list, rt);
    await cni.delNetworkList(lo, rtLo);
  } else {
    throw new Error(`unknown verb ${verb}`);
  }
  console.log(JSON.stringify({ ok: true, result }));
} catch (err) {
  const e = CniError.from(err);
  console.log(JSON.stringify({ ok: false, error: { code: e.code, msg: e.msg, details: e.details } }));
}
