/**
 * `tscni pod up|down|status <namespace>/<name> <netns> [--id ID] [--uid UID]`: kubelet's pod flow
 * (libcni PodNetwork): loopback, then the default network of NETCONFPATH, with the K8S_* CNI_ARGS.
 * The sandbox id defaults to cnitool's id of the netns path.
 */
import { PodNetwork, type PodRef } from "../libcni/pod.ts";
import { CniError, ErrCode } from "../spec/errors.ts";
import { formatResult } from "../spec/result.ts";
import { cliExec } from "./exec.ts";
import { print } from "./out.ts";
import { cnitoolContainerID, resolveNetnsArg, UsageError } from "./shared.ts";

export const POD_USAGE = "tscni pod up|down|status <namespace>/<name> <netns> [--id ID] [--uid UID]";

interface PodEnv {
  confDir: string;
  cniPath: string[];
  cacheDir: string;
}

function parse(argv: string[]): { verb: string; pod: PodRef; netns: string } {
  const pos: string[] = [];
  let id: string | undefined;
  let uid: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--id") id = argv[++i];
    else if (a.startsWith("--id=")) id = a.slice(5);
    else if (a === "--uid") uid = argv[++i];
    else if (a.startsWith("--uid=")) uid = a.slice(6);
    else pos.push(a);
  }
  const [verb, ref, netnsArg] = pos;
  if (!verb || !ref || !netnsArg || pos.length > 3) throw new UsageError(`usage: ${POD_USAGE}`);
  const slash = ref.indexOf("/");
  if (slash <= 0 || slash === ref.length - 1)
    throw new UsageError(`pod must be <namespace>/<name>, got "${ref}"`);
  const netns = resolveNetnsArg(netnsArg);
  const pod: PodRef = {
    namespace: ref.slice(0, slash),
    name: ref.slice(slash + 1),
    id: id || cnitoolContainerID(netns),
  };
  if (uid) pod.uid = uid;
  return { verb, pod, netns };
}

function capabilityArgs(): Record<string, unknown> | undefined {
  if (!process.env.CAP_ARGS) return undefined;
  try {
    return JSON.parse(process.env.CAP_ARGS);
  } catch (err) {
    throw new CniError(ErrCode.DecodingFailure, `parsing CAP_ARGS: ${(err as Error).message}`);
  }
}

export async function podCmd(argv: string[], e: PodEnv): Promise<void> {
  const { verb, pod, netns } = parse(argv);
  const net = new PodNetwork({
    confDir: e.confDir,
    path: e.cniPath,
    cacheDir: e.cacheDir,
    ifName: process.env.CNI_IFNAME || "eth0",
    exec: cliExec(),
  });
  switch (verb) {
    case "up": {
      const r = await net.setUp(pod, netns, capabilityArgs());
      await print(`${formatResult(r.result, r.result.cniVersion)}\n`);
      return;
    }
    case "down":
      return net.tearDown(pod, netns, capabilityArgs());
    case "status": {
      const s = await net.status(pod, netns);
      await print(`${JSON.stringify({ network: s.network, ips: s.ips })}\n`);
      return;
    }
    default:
      throw new UsageError(`unknown pod verb "${verb}": ${POD_USAGE}`);
  }
}
