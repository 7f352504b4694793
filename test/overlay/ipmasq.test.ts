/**
 * flanneld's --ip-masq rules (src/overlay/ipmasq.ts) in a throwaway netns, both backends, read back
 * with `nft -j list ruleset` and `iptables-save`: set up, replaced for a new lease, removed.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { hasTool } from "../../src/firewall/exec.ts";
import { removeMasq, setupMasq } from "../../src/overlay/ipmasq.ts";
import { cleanupAll, makeNetns } from "../helpers/netns.ts";

afterAll(() => cleanupAll());

const V4 = { network: "10.244.0.0/16", subnet: "10.244.3.0/24" };
const V6 = { network: "fd00:10::/56", subnet: "fd00:10:0:3::/64" };

describe("flannel ip masquerade", () => {
  test("nftables: ip flannel-ipv4 and ip6 flannel-ipv6, replaced on a new lease, removed", async () => {
    const n = makeNetns("fm");
    const tables = () =>
      (
        JSON.parse(n.run(["nft", "-j", "list", "ruleset"]).stdout).nftables as Record<
          string,
          { family: string; name: string; chain?: string }
        >[]
      ).flatMap((o) => (o.table ? [`${o.table.family} ${o.table.name}`] : []));
    const rules = (fam: string, t: string) =>
      (
        JSON.parse(n.run(["nft", "-j", "list", "chain", fam, t, "postrtg"]).stdout).nftables as {
          rule?: unknown;
        }[]
      ).filter((o) => o.rule);
    await setupMasq({ v4: V4, v6: V6, netnsPath: n.path });
    expect(tables().sort()).toEqual(["ip flannel-ipv4", "ip6 flannel-ipv6"]);
    expect(rules("ip", "flannel-ipv4")).toHaveLength(6);
    expect(rules("ip6", "flannel-ipv6")).toHaveLength(6);
    await setupMasq({ v4: { ...V4, subnet: "10.244.9.0/24" }, netnsPath: n.path });
    expect(rules("ip", "flannel-ipv4")).toHaveLength(6);
    const text = n.run(["nft", "list", "chain", "ip", "flannel-ipv4", "postrtg"]).stdout;
    expect(text).toContain("ip saddr 10.244.9.0/24 ip daddr 10.244.0.0/16 return");
    expect(text).not.toContain("10.244.3.0/24");
    await removeMasq({ netnsPath: n.path });
    expect(tables()).toEqual([]);
    await removeMasq({ netnsPath: n.path }); // nothing there: still fine
  });

  test.skipIf(!hasTool("iptables-restore"))(
    "iptables: nat FLANNEL-POSTRTG with flanneld's rules, one jump, removed",
    async () => {
      const n = makeNetns("fm");
      const save = () => n.run(["iptables-save", "-t", "nat"]).stdout;
      await setupMasq({ backend: "iptables", v4: V4, netnsPath: n.path });
      await setupMasq({ backend: "iptables", v4: V4, netnsPath: n.path, fullyRandomDisable: true });
      const s = save();
      expect(s.match(/-A POSTROUTING .*-j FLANNEL-POSTRTG/g)).toHaveLength(1);
      expect(s).toContain(
        '-A FLANNEL-POSTRTG -s 10.244.3.0/24 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j RETURN',
      );
      expect(s).toContain(
        '-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE\n',
      );
      expect(s.match(/-A FLANNEL-POSTRTG/g)).toHaveLength(6);
      await removeMasq({ backend: "iptables", netnsPath: n.path });
      expect(save()).not.toContain("FLANNEL");
    },
  );
});
