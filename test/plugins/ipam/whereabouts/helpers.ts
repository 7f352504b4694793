/** Runs our whereabouts plugin as a process inside the etcd cluster's netns (where the members listen). */
import { join } from "node:path";
import type { EtcdCluster } from "../../../helpers/etcd.ts";

const MAIN = join(import.meta.dir, "../../../../src/plugins/ipam/whereabouts/main.ts");

export interface IpamCall {
  command: "ADD" | "DEL" | "CHECK" | "GC" | "STATUS";
  containerID?: string;
  ifName?: string;
  args?: string;
}

export interface IpamOut {
  code: number;
  stdout: string;
  stderr: string;
  // biome-ignore lint/suspicious/noExplicitAny: the plugin's JSON
  json: any;
}

export function netconf(c: EtcdCluster, ipam: object, extra: object = {}): object {
  return {
    cniVersion: "1.1.0",
    name: "wnet",
    type: "macvlan",
    ...extra,
    ipam: { type: "whereabouts", etcd_host: c.endpoints.join(","), etcd_timeout_ms: 1500, ...ipam },
  };
}

export async function ipam(c: EtcdCluster, call: IpamCall, conf: object): Promise<IpamOut> {
  const r = await c.runBun(MAIN, [], {
    stdin: JSON.stringify(conf),
    env: {
      CNI_COMMAND: call.command,
      CNI_CONTAINERID: call.containerID ?? "ctr",
      CNI_NETNS: c.netns.path,
      CNI_IFNAME: call.ifName ?? "eth0",
      CNI_ARGS: call.args ?? "",
      CNI_PATH: "/nonexistent",
    },
    timeoutMs: 90_000,
  });
  let json: unknown;
  try {
    json = r.stdout.trim() ? JSON.parse(r.stdout) : undefined;
  } catch {
    json = undefined;
  }
  return { ...r, json };
}

/** Every key under the IPAM prefix (curl to the gateway inside the netns): key → value. */
export async function dump(
  c: EtcdCluster,
  prefix = "/tscni/ipam/",
  member = 0,
): Promise<Map<string, string>> {
  const b64 = (s: string) => Buffer.from(s).toString("base64");
  const end = prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
  const r = await c.exec(
    [
      "curl",
      "-s",
      "-m",
      "5",
      "-XPOST",
      `${c.endpoints[member]}/v3/kv/range`,
      "-d",
      JSON.stringify({ key: b64(prefix), range_end: b64(end) }),
    ],
    { timeoutMs: 10_000 },
  );
  if (r.code !== 0) throw new Error(`curl range failed: ${r.stderr}`);
  const body = JSON.parse(r.stdout) as { kvs?: { key: string; value: string }[] };
  const from = (s: string) => Buffer.from(s, "base64").toString();
  return new Map((body.kvs ?? []).map((kv) => [from(kv.key), from(kv.value ?? "")]));
}
