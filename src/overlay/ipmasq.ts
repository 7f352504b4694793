/**
 * flanneld's `--ip-masq` (flannel-io/flannel pkg/trafficmngr): traffic from the cluster network leaving
 * it is masqueraded, pod-to-pod traffic (this node's subnet ↔ the cluster network) is not. The rules,
 * for each family with a network (IPv6 with ip6 / ff00::/8):
 *
 *   nftables (default): table ip flannel-ipv4 { chain postrtg { type nat hook postrouting priority srcnat;
 *       meta mark 0x4000 return                                   # kube-proxy's mark: no double NAT
 *       ip saddr <subnet> ip daddr <network> return                # pod → pod
 *       ip saddr <network> ip daddr <subnet> return
 *       ip saddr != <subnet> ip daddr <network> return             # external traffic for a pod: as is
 *       ip saddr <network> ip daddr != 224.0.0.0/4 masquerade fully-random   # pod → outside
 *       ip saddr != <network> ip daddr <network> masquerade fully-random } } # host → a pod elsewhere
 *   iptables: nat FLANNEL-POSTRTG with the same rules (comment "flanneld masq"), jumped to from POSTROUTING.
 *
 * Table, chain and rule text are flanneld's, so a node moved between flanneld and node-net finds its own
 * rules and replaces them. Every change is one transaction: one `nft -f -` for both families (the chain
 * is flushed and refilled in it), or one iptables-restore per family. Unlike flanneld, a clean stop
 * removes them (removeMasq); a killed daemon leaves them, and the next start replaces them.
 */
import { iptablesTransact, splitRule } from "../firewall/iptables.ts";
import { nftApply } from "../firewall/nft.ts";
import { parseNetwork } from "../ipam-common/ipmath.ts";

export type MasqBackend = "nftables" | "iptables";

export interface MasqFamily {
  /** The cluster network ("10.244.0.0/16") and this node's subnet ("10.244.1.0/24"). */
  network: string;
  subnet: string;
}

export interface MasqOptions {
  backend?: MasqBackend;
  v4?: MasqFamily;
  v6?: MasqFamily;
  /** flanneld's --ip-masq-fully-random-disable. */
  fullyRandomDisable?: boolean;
  /** Run the tools inside this netns (tests). */
  netnsPath?: string;
}

export const NFT_TABLES = { 4: "flannel-ipv4", 6: "flannel-ipv6" } as const;
const NFT_FAMILY = { 4: "ip", 6: "ip6" } as const;
const MULTICAST = { 4: "224.0.0.0/4", 6: "ff00::/8" } as const;
export const IPT_CHAIN = "FLANNEL-POSTRTG";
const COMMENT = "flanneld masq";

function checked(f: MasqFamily, family: 4 | 6): MasqFamily {
  for (const cidr of [f.network, f.subnet]) {
    if (parseNetwork(cidr)?.net.ip.family !== family)
      throw new Error(`ip masquerade: ${JSON.stringify(cidr)} is not an IPv${family} CIDR`);
  }
  return f;
}

function families(o: MasqOptions): [4 | 6, MasqFamily][] {
  const out: [4 | 6, MasqFamily][] = [];
  if (o.v4) out.push([4, checked(o.v4, 4)]);
  if (o.v6) out.push([6, checked(o.v6, 6)]);
  return out;
}

/** The nft script that makes (or remakes) the tables of the given families. */
export function nftMasqScript(o: MasqOptions): string {
  const masq = o.fullyRandomDisable ? "masquerade" : "masquerade fully-random";
  const lines: string[] = [];
  for (const [family, { network, subnet }] of families(o)) {
    const t = `${NFT_FAMILY[family]} ${NFT_TABLES[family]}`;
    const a = NFT_FAMILY[family];
    lines.push(
      `add table ${t} { comment "rules for ${NFT_TABLES[family]}"; }`,
      `add chain ${t} postrtg { type nat hook postrouting priority srcnat; comment "chain to manage traffic masquerading by flannel"; }`,
      `flush chain ${t} postrtg`,
      `add rule ${t} postrtg meta mark 0x4000 return`,
      `add rule ${t} postrtg ${a} saddr ${subnet} ${a} daddr ${network} return`,
      `add rule ${t} postrtg ${a} saddr ${network} ${a} daddr ${subnet} return`,
      `add rule ${t} postrtg ${a} saddr != ${subnet} ${a} daddr ${network} return`,
      `add rule ${t} postrtg ${a} saddr ${network} ${a} daddr != ${MULTICAST[family]} ${masq}`,
      `add rule ${t} postrtg ${a} saddr != ${network} ${a} daddr ${network} ${masq}`,
    );
  }
  return `${lines.join("\n")}\n`;
}

/** flanneld's masqRules as iptables-restore lines ("-A CHAIN …"), POSTROUTING's jump first. */
export function iptablesMasqRules(family: 4 | 6, f: MasqFamily, fullyRandomDisable = false): string[] {
  const c = `-m comment --comment "${COMMENT}"`;
  const masq = `-j MASQUERADE${fullyRandomDisable ? "" : " --random-fully"}`;
  const { network, subnet } = f;
  return [
    `-A POSTROUTING ${c} -j ${IPT_CHAIN}`,
    `-A ${IPT_CHAIN} -m mark --mark 0x4000/0x4000 ${c} -j RETURN`,
    `-A ${IPT_CHAIN} -s ${subnet} -d ${network} ${c} -j RETURN`,
    `-A ${IPT_CHAIN} -s ${network} -d ${subnet} ${c} -j RETURN`,
    `-A ${IPT_CHAIN} ! -s ${network} -d ${subnet} ${c} -j RETURN`,
    `-A ${IPT_CHAIN} -s ${network} ! -d ${MULTICAST[family]} ${c} ${masq}`,
    `-A ${IPT_CHAIN} ! -s ${network} -d ${network} ${c} ${masq}`,
  ];
}

/** POSTROUTING rules jumping to FLANNEL-POSTRTG, as "-D …" lines. */
function dropJumps(rules: readonly string[]): string[] {
  return rules
    .filter((r) => {
      const a = splitRule(r);
      return a[1] === "POSTROUTING" && a.at(-1) === IPT_CHAIN && a.at(-2) === "-j";
    })
    .map((r) => `-D ${r.slice(3)}`);
}

/** Installs (or replaces) the masquerade rules for this node's lease. */
export async function setupMasq(o: MasqOptions): Promise<void> {
  const fams = families(o);
  if (fams.length === 0) return;
  if ((o.backend ?? "nftables") === "nftables") {
    await nftApply(nftMasqScript(o), { netnsPath: o.netnsPath, what: "setting up flannel's ip masquerade" });
    return;
  }
  for (const [family, f] of fams) {
    const [jump, ...chainRules] = iptablesMasqRules(family, f, o.fullyRandomDisable);
    await iptablesTransact(
      family,
      "nat",
      (state) => [...dropJumps(state.rules), `:${IPT_CHAIN} - [0:0]`, ...chainRules, jump as string],
      { netnsPath: o.netnsPath, what: `setting up flannel's IPv${family} ip masquerade` },
    );
  }
}

/** Removes the rules of both families (what is not there counts as removed). */
export async function removeMasq(o: Pick<MasqOptions, "backend" | "netnsPath">): Promise<void> {
  if ((o.backend ?? "nftables") === "nftables") {
    // "add" first makes the delete of an absent table a no-op, in the same transaction
    const script = ([4, 6] as const)
      .flatMap((f) => {
        const t = `${NFT_FAMILY[f]} ${NFT_TABLES[f]}`;
        return [`add table ${t}`, `delete table ${t}`];
      })
      .join("\n");
    await nftApply(`${script}\n`, { netnsPath: o.netnsPath, what: "removing flannel's ip masquerade" });
    return;
  }
  for (const family of [4, 6] as const) {
    await iptablesTransact(
      family,
      "nat",
      (state) =>
        state.chains.has(IPT_CHAIN)
          ? [...dropJumps(state.rules), `-F ${IPT_CHAIN}`, `-X ${IPT_CHAIN}`]
          : dropJumps(state.rules),
      { netnsPath: o.netnsPath, what: `removing flannel's IPv${family} ip masquerade` },
    );
  }
}
