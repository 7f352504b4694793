/**
 * The kubelet pod flow (kubelet's SetUpPod / TearDownPod, as go-cni and ocicni do it for containerd and
 * CRI-O) over CNIConfig: the loopback network first (ifName "lo"), then the *default* network — the
 * first config in the conf dir in lexical order (.conf, .conflist, .json) — with the K8S_* CNI_ARGS;
 * teardown in reverse order, tolerating a netns that is already gone (plugins then get CNI_NETNS "").
 */
import { stat } from "node:fs/promises";
import { confListFromObject } from "../spec/conf.ts";
import { CniError, ErrCode } from "../spec/errors.ts";
import type { NetConfList, Result } from "../spec/types.ts";
import { CNIConfig, type CNIConfigOptions } from "./api.ts";
import { confFiles, DEFAULT_CONF_EXTENSIONS, loadConfListFile, NoConfigsFoundError } from "./conf.ts";
import type { RuntimeConf } from "./network.ts";

export interface PodRef {
  namespace: string;
  name: string;
  /** The pod sandbox (infra container) id: the attachment's containerID. */
  id: string;
  uid?: string;
}

export interface PodNetworkOptions extends CNIConfigOptions {
  /** Where the default network's config is looked up (kubelet's --cni-conf-dir). */
  confDir: string;
  /** The pod's interface on the default network. Default "eth0". */
  ifName?: string;
  /** The loopback network; default go-cni's `cni-loopback` list with the loopback plugin. */
  loopback?: NetConfList;
}

export interface PodStatus {
  /** The default network's name. */
  network: string;
  /** The pod's addresses on it ("10.1.17.2", no prefix), from the cached result. */
  ips: string[];
  result?: Result;
}

const LOOPBACK_RAW = { cniVersion: "0.3.1", name: "cni-loopback", plugins: [{ type: "loopback" }] };

function loopbackList(): NetConfList {
  return confListFromObject(structuredClone(LOOPBACK_RAW));
}

/** CNI_ARGS kubelet sends: IgnoreUnknown first, so plugins that know none of the K8S_* keys accept them. */
export function podArgs(pod: PodRef): [string, string][] {
  const args: [string, string][] = [
    ["IgnoreUnknown", "1"],
    ["K8S_POD_NAMESPACE", pod.namespace],
    ["K8S_POD_NAME", pod.name],
    ["K8S_POD_INFRA_CONTAINER_ID", pod.id],
  ];
  if (pod.uid) args.push(["K8S_POD_UID", pod.uid]);
  return args;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

export class PodNetwork {
  readonly cni: CNIConfig;
  readonly confDir: string;
  readonly ifName: string;
  readonly loopback: NetConfList;

  constructor(opts: PodNetworkOptions) {
    this.cni = new CNIConfig(opts);
    this.confDir = opts.confDir;
    this.ifName = opts.ifName ?? "eth0";
    this.loopback = opts.loopback ?? loopbackList();
  }

  /** The default network: the first config file in the conf dir, lexically. */
  async defaultNetwork(): Promise<NetConfList> {
    const files = await confFiles(this.confDir, DEFAULT_CONF_EXTENSIONS);
    const first = files[0];
    if (!first) throw new NoConfigsFoundError(this.confDir, "(default network)");
    return loadConfListFile(first);
  }

  private rt(
    pod: PodRef,
    netns: string,
    ifName: string,
    capabilityArgs?: Record<string, unknown>,
  ): RuntimeConf {
    const rt: RuntimeConf = { containerID: pod.id, netNS: netns, ifName, args: podArgs(pod) };
    if (capabilityArgs) rt.capabilityArgs = capabilityArgs;
    return rt;
  }

  /** Loopback, then the default network; a failure on the latter undoes the loopback attachment. */
  async setUp(
    pod: PodRef,
    netns: string,
    capabilityArgs?: Record<string, unknown>,
  ): Promise<{ network: string; result: Result; ips: string[] }> {
    const net = await this.defaultNetwork();
    const lo = this.rt(pod, netns, "lo");
    await this.cni.addNetworkList(this.loopback, lo);
    let result: Result;
    try {
      result = await this.cni.addNetworkList(net, this.rt(pod, netns, this.ifName, capabilityArgs));
    } catch (err) {
      await this.cni.delNetworkList(this.loopback, lo).catch(() => {});
      throw err;
    }
    return { network: net.name, result, ips: ipsOf(result) };
  }

  /** The default network, then loopback; a netns that is gone is passed as "" (plugins' DEL copes). */
  async tearDown(pod: PodRef, netns: string, capabilityArgs?: Record<string, unknown>): Promise<void> {
    const ns = netns !== "" && (await exists(netns)) ? netns : "";
    const net = await this.defaultNetwork();
    const errors: string[] = [];
    for (const [list, rt] of [
      [net, this.rt(pod, ns, this.ifName, capabilityArgs)],
      [this.loopback, this.rt(pod, ns, "lo")],
    ] as const) {
      try {
        await this.cni.delNetworkList(list, rt);
      } catch (err) {
        errors.push(`${list.name}: ${(err as Error).message}`);
      }
    }
    if (errors.length > 0)
      throw new CniError(
        ErrCode.Internal,
        `tearing down pod ${pod.namespace}/${pod.name}: ${errors.join("; ")}`,
      );
  }

  /** The pod's IPs from the cached result; without one, CHECK (which throws when the pod is not attached). */
  async status(pod: PodRef, netns: string): Promise<PodStatus> {
    const net = await this.defaultNetwork();
    const rt = this.rt(pod, netns, this.ifName);
    const result = await this.cni.getNetworkListCachedResult(net, rt);
    if (!result) {
      await this.cni.checkNetworkList(net, rt);
      return { network: net.name, ips: [] };
    }
    return { network: net.name, ips: ipsOf(result), result };
  }
}

function ipsOf(result: Result): string[] {
  return (result.ips ?? []).map((ip) => ip.address.split("/")[0]!);
}
