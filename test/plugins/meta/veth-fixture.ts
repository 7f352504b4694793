/**
 * The setup chained meta plugins (tuning, bandwidth) run against, made with `ip` rather than with a
 * main plugin: a throwaway host netns, and per container a throwaway netns holding `eth0`, the peer of
 * a host veth, with addresses 10.<subnet>.<n>.1/24 (host) and .2/24 (container).
 *
 *   const host = makeNetns("bwh");
 *   const c = addContainer(host, 0);      → {ns, hostVeth, hostIP, contIP, prevResult(version)}
 */
import type { TempNetns } from "../../helpers/netns.ts";
import { makeNetns } from "../../helpers/netns.ts";

export interface Container {
  ns: TempNetns;
  hostVeth: string;
  hostIP: string;
  contIP: string;
  /** What a main plugin (ptp) would hand on: the host veth without sandbox, eth0 in the container. */
  prevResult(cniVersion?: string): Record<string, unknown>;
}

function sh(cmd: string[]): void {
  const p = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`${cmd.join(" ")} failed: ${p.stderr.toString().trim()}`);
}

/** A container netns wired to `host` by veth `vh<n>` ↔ `eth0`, both up and addressed. */
export function addContainer(host: TempNetns, n: number, subnet = 77): Container {
  const ns = makeNetns("ctr");
  const hostVeth = `vh${n}`;
  const hostIP = `10.${subnet}.${n}.1`;
  const contIP = `10.${subnet}.${n}.2`;
  sh([
    "ip",
    "-n",
    host.name,
    "link",
    "add",
    hostVeth,
    "type",
    "veth",
    "peer",
    "name",
    "eth0",
    "netns",
    ns.name,
  ]);
  sh(["ip", "-n", host.name, "addr", "add", `${hostIP}/24`, "dev", hostVeth]);
  sh(["ip", "-n", host.name, "link", "set", hostVeth, "up"]);
  sh(["ip", "-n", ns.name, "addr", "add", `${contIP}/24`, "dev", "eth0"]);
  sh(["ip", "-n", ns.name, "link", "set", "eth0", "up"]);
  sh(["ip", "-n", ns.name, "link", "set", "lo", "up"]);
  return {
    ns,
    hostVeth,
    hostIP,
    contIP,
    prevResult: (cniVersion = "1.1.0") => ({
      cniVersion,
      interfaces: [{ name: hostVeth }, { name: "eth0", sandbox: ns.path }],
      ips: [{ address: `${contIP}/24`, gateway: hostIP, interface: 1 }],
    }),
  };
}

/** CNI_* for one attachment of `c`. */
export function cniEnv(
  command: string,
  c: Container | undefined,
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    CNI_COMMAND: command,
    CNI_CONTAINERID: "ctr0",
    CNI_NETNS: c?.ns.path ?? "",
    CNI_IFNAME: "eth0",
    CNI_PATH: "/usr/lib/cni",
    ...extra,
  };
}
