import { describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { checkIPMasq, gcIPMasq, setupIPMasq, teardownIPMasq } from "../../src/ip/ipmasq.ts";
import { ipmasqChainName } from "../../src/ip/ipmasq-iptables.ts";
import { CniError } from "../../src/spec/errors.ts";
import { natRules, sh, type TestNetns, withNetns } from "./ipmasq-helpers.ts";

// What upstream's bridge (plugins 1.1.1, ipMasq: true) made for network "mynet", container "c1",
// read off iptables-save after a real run; the chain name is FormatChainName("mynet", "c1").
const C1 = "CNI-f0bca4ac77cde1bf2f3da5df";
const C1_COMMENT = '-m comment --comment "name: \\"mynet\\" id: \\"c1\\""';

function upstreamRules(ip4: string, ip6?: string): { v4: string[]; v6: string[] } {
  return {
    v4: [
      `:${C1} - [0:0]`,
      `-A POSTROUTING -s ${ip4}/32 ${C1_COMMENT} -j ${C1}`,
      `-A ${C1} -d 10.22.0.0/16 ${C1_COMMENT} -j ACCEPT`,
      `-A ${C1} ! -d 224.0.0.0/4 ${C1_COMMENT} -j MASQUERADE`,
    ].sort(),
    v6: ip6
      ? [
          `:${C1} - [0:0]`,
          `-A POSTROUTING -s ${ip6}/128 ${C1_COMMENT} -j ${C1}`,
          `-A ${C1} -d fd00::/64 ${C1_COMMENT} -j ACCEPT`,
          `-A ${C1} ! -d ff00::/8 ${C1_COMMENT} -j MASQUERADE`,
        ].sort()
      : [],
  };
}

function opts(ns: TestNetns, containerID: string, ips: string[], network = "mynet") {
  return { backend: "iptables" as const, network, containerID, ifName: "eth0", ips, netnsPath: ns.path };
}

describe("iptables backend", () => {
  test("chain names are upstream's FormatChainName", () => {
    expect(ipmasqChainName("mynet", "c1")).toBe(C1);
    expect(ipmasqChainName("mynet", "c1")).toHaveLength(28);
  });

  test("setup makes upstream's exact rules; teardown of one container keeps the other", () =>
    withNetns(1, async (host) => {
      await teardownIPMasq(opts(host, "c1", []));

      await setupIPMasq(opts(host, "c1", ["10.22.0.5/16", "fd00::5/64"]));
      expect(natRules(host, 4)).toEqual(upstreamRules("10.22.0.5", "fd00::5").v4);
      expect(natRules(host, 6)).toEqual(upstreamRules("10.22.0.5", "fd00::5").v6);
      // Again: same rules, nothing duplicated.
      await setupIPMasq(opts(host, "c1", ["10.22.0.5/16", "fd00::5/64"]));
      expect(natRules(host, 4)).toEqual(upstreamRules("10.22.0.5", "fd00::5").v4);

      await setupIPMasq(opts(host, "c2", ["10.22.0.6/16"]));
      const c2 = ipmasqChainName("mynet", "c2");
      expect(natRules(host, 4).filter((r) => r.includes(c2))).toHaveLength(4);

      await teardownIPMasq(opts(host, "c1", ["10.22.0.5/16", "fd00::5/64"]));
      expect(natRules(host, 4).join("\n")).not.toContain(C1);
      expect(natRules(host, 6)).toEqual([]);
      expect(natRules(host, 4).filter((r) => r.includes(c2))).toHaveLength(4);
      await teardownIPMasq(opts(host, "c1", ["10.22.0.5/16", "fd00::5/64"]));

      // Addresses unknown: found by chain name, in both families.
      await teardownIPMasq({
        backend: "iptables",
        network: "mynet",
        containerID: "c2",
        ifName: "eth0",
        netnsPath: host.path,
      });
      expect(natRules(host, 4)).toEqual([]);
    }));

  test("a repeated ADD with another address moves the POSTROUTING jump", () =>
    withNetns(1, async (host) => {
      await setupIPMasq(opts(host, "c1", ["10.22.0.5/16"]));
      await setupIPMasq(opts(host, "c1", ["10.22.0.8/16"]));
      expect(natRules(host, 4)).toEqual(upstreamRules("10.22.0.8").v4);
    }));

  test("check passes when complete and fails when a rule is missing", () =>
    withNetns(1, async (host) => {
      await expect(checkIPMasq(opts(host, "c1", ["10.22.0.5/16"]))).rejects.toThrow(
        /chain CNI-.* is missing/,
      );
      await setupIPMasq(opts(host, "c1", ["10.22.0.5/16", "fd00::5/64"]));
      await checkIPMasq(opts(host, "c1", ["10.22.0.5/16", "fd00::5/64"]));
      await expect(checkIPMasq(opts(host, "c1", ["10.22.0.9/16"]))).rejects.toThrow(/-s 10\.22\.0\.9\/32/);
      sh(["ip", "netns", "exec", host.name, "ip6tables", "-t", "nat", "-F", C1]);
      const err = await checkIPMasq(opts(host, "c1", ["10.22.0.5/16", "fd00::5/64"])).catch(
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(CniError);
      expect((err as CniError).message).toContain("IPv6 nat rule missing");
    }));

  test("gc removes the chains of stale containers of the network only", () =>
    withNetns(1, async (host) => {
      await setupIPMasq(opts(host, "c1", ["10.22.0.5/16", "fd00::5/64"]));
      await setupIPMasq(opts(host, "c2", ["10.22.0.6/16"]));
      await setupIPMasq(opts(host, "c3", ["10.99.0.5/16"], "othernet"));
      // A chain with a CNI comment that is not an ipmasq chain (e.g. portmap's) is left alone.
      sh(["ip", "netns", "exec", host.name, "iptables-restore", "-w", "--noflush"], {
        input:
          '*nat\n:CNI-DN-x - [0:0]\n-A CNI-DN-x -m comment --comment "name: \\"mynet\\" id: \\"c1\\"" -j RETURN\nCOMMIT\n',
      });
      await gcIPMasq({
        backend: "iptables",
        network: "mynet",
        validAttachments: [{ containerID: "c2", ifname: "eth0" }],
        netnsPath: host.path,
      });
      const v4 = natRules(host, 4).join("\n");
      expect(v4).not.toContain(C1);
      expect(v4).toContain(ipmasqChainName("mynet", "c2"));
      expect(v4).toContain(ipmasqChainName("othernet", "c3"));
      expect(v4).toContain("CNI-DN-x");
      expect(natRules(host, 6)).toEqual([]);
    }));

  test("teardown without a backend clears both iptables and nftables", () =>
    withNetns(1, async (host) => {
      await setupIPMasq(opts(host, "c1", ["10.22.0.5/16"]));
      await setupIPMasq({ ...opts(host, "c1", ["10.22.0.5/16"]), backend: "nftables" });
      await teardownIPMasq({ network: "mynet", containerID: "c1", ifName: "eth0", netnsPath: host.path });
      expect(natRules(host, 4)).toEqual([]);
      const nft = sh(["ip", "netns", "exec", host.name, "nft", "list", "table", "inet", "tscni_masquerade"]);
      expect(nft).not.toContain("10.22.0.5");
    }));
});

describe("interop with upstream's bridge plugin (plugins 1.1.1)", () => {
  const BRIDGE = "/usr/lib/cni/bridge";

  function runBridge(command: "ADD" | "DEL", host: TestNetns, ctr: TestNetns, conf: object): string {
    return sh(["ip", "netns", "exec", host.name, BRIDGE], {
      input: JSON.stringify(conf),
      env: {
        CNI_COMMAND: command,
        CNI_CONTAINERID: "c1",
        CNI_NETNS: ctr.path,
        CNI_IFNAME: "eth0",
        CNI_PATH: "/usr/lib/cni",
      },
    });
  }

  test.skipIf(!existsSync(BRIDGE))("upstream's rules are ours: each side deletes what the other made", () =>
    withNetns(2, async (host, ctr) => {
      const dataDir = mkdtempSync(join(tmpdir(), "tscni-ipmasq-"));
      try {
        const conf = {
          cniVersion: "1.0.0",
          name: "mynet",
          type: "bridge",
          bridge: "tscnibr0",
          isGateway: true,
          ipMasq: true,
          ipam: {
            type: "host-local",
            dataDir,
            ranges: [[{ subnet: "10.22.0.0/16" }], [{ subnet: "fd00::/64" }]],
          },
        };
        const result = JSON.parse(runBridge("ADD", host, ctr, conf)) as { ips: { address: string }[] };
        const ips = result.ips.map((i) => i.address);
        expect(ips).toEqual(["10.22.0.2/16", "fd00::2/64"]);
        const theirs = { v4: natRules(host, 4), v6: natRules(host, 6) };
        expect(theirs).toEqual(upstreamRules("10.22.0.2", "fd00::2"));

        // Upstream ADD → our DEL (addresses unknown, as after a lost cache).
        await teardownIPMasq({
          backend: "iptables",
          network: "mynet",
          containerID: "c1",
          ifName: "eth0",
          netnsPath: host.path,
        });
        expect(natRules(host, 4)).toEqual([]);
        expect(natRules(host, 6)).toEqual([]);

        // Our ADD makes what upstream made …
        await setupIPMasq(opts(host, "c1", ips));
        expect({ v4: natRules(host, 4), v6: natRules(host, 6) }).toEqual(theirs);
        // … and upstream's DEL (which takes the addresses from the container's eth0) removes it all.
        runBridge("DEL", host, ctr, { ...conf, prevResult: result });
        expect(natRules(host, 4)).toEqual([]);
        expect(natRules(host, 6)).toEqual([]);
      } finally {
        rmSync(dataDir, { recursive: true, force: true });
      }
    }),
  );
});
