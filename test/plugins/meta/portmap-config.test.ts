/** portmap's config parsing and the rules/elements it renders (pure; no kernel). */
import { describe, expect, test } from "bun:test";
import { parseConfig } from "../../../src/plugins/meta/portmap/config.ts";
import { plugin } from "../../../src/plugins/meta/portmap/index.ts";
import { chainName, containerRules } from "../../../src/plugins/meta/portmap/iptables.ts";
import { desiredElems, ownerID } from "../../../src/plugins/meta/portmap/nft.ts";
import type { CmdArgs } from "../../../src/skel/types.ts";
import { failure } from "../../helpers/errors.ts";

const prevResult = {
  cniVersion: "1.0.0",
  interfaces: [{ name: "br0" }, { name: "veth1" }, { name: "eth0", sandbox: "/var/run/netns/x" }],
  ips: [
    { address: "10.0.0.5/24", interface: 2, gateway: "10.0.0.1" },
    { address: "10.0.0.6/24", interface: 2 },
    { address: "fd00::5/64", interface: 2 },
  ],
};

const mappings = [
  { hostPort: 8080, containerPort: 80, protocol: "tcp" },
  { hostPort: 8081, containerPort: 81, protocol: "udp", hostIP: "192.168.1.1" },
  { hostPort: 8082, containerPort: 82, protocol: "sctp" },
  { hostPort: 8083, containerPort: 83, protocol: "tcp", hostIP: "fd00:1::1" },
];

function conf(extra: Record<string, unknown> = {}, pm: unknown = mappings): string {
  return JSON.stringify({
    cniVersion: "1.0.0",
    name: "mynet",
    type: "portmap",
    runtimeConfig: { portMappings: pm },
    prevResult,
    ...extra,
  });
}

describe("parseConfig", () => {
  test("defaults and the container's first address per family on CNI_IFNAME", () => {
    const c = parseConfig(conf(), "eth0");
    expect(c).toMatchObject({ backend: "nftables", snat: true, masqAll: false, markMasqBit: 13 });
    expect(c.addrs).toEqual([
      { family: 4, ip: "10.0.0.5", prefix: 24, subnet: "10.0.0.0/24" },
      { family: 6, ip: "fd00::5", prefix: 64, subnet: "fd00::/64" },
    ]);
    // Another ifname: the addresses belong to eth0's interface entry, so none are ours.
    expect(parseConfig(conf(), "net1").addrs).toEqual([]);
  });

  test("Go-like keys: any case, protocol lower-cased (default tcp), empty hostIP, IPv4-mapped hostIP", () => {
    const pm = [
      { HostPort: 8080, ContainerPort: 80, Protocol: "UDP", HostIP: "" },
      { hostPort: 8081, containerPort: 81 },
      { hostPort: 8082, containerPort: 82, hostIP: "::ffff:1.2.3.4" },
    ];
    expect(parseConfig(conf({}, pm), "eth0").portMappings).toEqual([
      { hostPort: 8080, containerPort: 80, protocol: "udp" },
      { hostPort: 8081, containerPort: 81, protocol: "tcp" },
      { hostPort: 8082, containerPort: 82, protocol: "tcp", hostIP: "1.2.3.4" },
    ]);
  });

  test("a repeated (hostIP, protocol, hostPort) keeps the first mapping, as iptables would", () => {
    const pm = [
      { hostPort: 8080, containerPort: 80, protocol: "tcp" },
      { hostPort: 8080, containerPort: 81, protocol: "tcp" },
    ];
    expect(parseConfig(conf({}, pm), "eth0").portMappings).toEqual([
      { hostPort: 8080, containerPort: 80, protocol: "tcp" },
    ]);
  });

  test("backend: iptables-only options select iptables, like upstream's detection", () => {
    expect(parseConfig(conf({ conditionsV4: ["-s", "1.2.3.4"] }), "eth0").backend).toBe("iptables");
    expect(parseConfig(conf({ conditionsV6: ["!", "-d", "::1"] }), "eth0").backend).toBe("iptables");
    expect(parseConfig(conf({ externalSetMarkChain: "KUBE-MARK-MASQ" }), "eth0").backend).toBe("iptables");
    expect(parseConfig(conf({ conditionsV4: ["ip", "saddr", "1.2.3.4"] }), "eth0").backend).toBe("nftables");
  });

  const bad: [string, Record<string, unknown>, string][] = [
    [
      "externalSetMarkChain with nftables",
      { backend: "nftables", externalSetMarkChain: "X" },
      "externalSetMarkChain",
    ],
    [
      "nft conditions with iptables",
      { backend: "iptables", conditionsV4: ["ip", "saddr", "1.2.3.4"] },
      "conditionsV4",
    ],
    ["markMasqBit with externalSetMarkChain", { markMasqBit: 3, externalSetMarkChain: "X" }, "markMasqBit"],
    ["markMasqBit 32", { markMasqBit: 32 }, "markMasqBit"],
    [
      "a second nft command in a condition",
      { conditionsV4: ["ip saddr 1.2.3.4; flush ruleset"] },
      "conditionsV4[0]",
    ],
    ["a bad chain name", { externalSetMarkChain: "A B" }, "externalSetMarkChain"],
    ["unknown backend", { backend: "pf" }, "backend"],
  ];
  for (const [name, extra, field] of bad) {
    test(`code 7: ${name}`, () => {
      const err = failure(() => parseConfig(conf(extra), "eth0"));
      expect(err.code).toBe(7);
      expect(err.msg).toContain(field);
    });
  }

  test("code 7 for a bad protocol and port, naming the mapping", () => {
    const p = failure(() =>
      parseConfig(conf({}, [{ hostPort: 1, containerPort: 1, protocol: "icmp" }]), "eth0"),
    );
    expect([p.code, p.msg]).toEqual([7, expect.stringContaining("runtimeConfig.portMappings[0].protocol")]);
    const q = failure(() => parseConfig(conf({}, [{ hostPort: 65536, containerPort: 1 }]), "eth0"));
    expect([q.code, q.msg]).toEqual([7, expect.stringContaining("runtimeConfig.portMappings[0].hostPort")]);
  });
});

describe("rendering", () => {
  const owner = { network: "mynet", containerID: "ctr1", ifName: "eth0" };

  test("nft elements: per family, hostIP mappings only in their family, hairpin and localhost masq", () => {
    const c = parseConfig(conf(), "eth0");
    const tag = String(
      Number.parseInt(new Bun.CryptoHasher("sha512").update(ownerID(owner)).digest("hex").slice(0, 8), 16),
    );
    const elems = desiredElems(owner, c);
    expect(elems.every((e) => e.comment === `${ownerID(owner)} net: mynet, if: eth0, id: ctr1`)).toBe(true);
    expect(elems.map(({ map, key, value }) => [map, key, value])).toEqual([
      ["owners4", "10.0.0.5", tag],
      ["dnat4", "tcp . 8080", "10.0.0.5 . 80"],
      ["hostip_dnat4", "192.168.1.1 . udp . 8081", "10.0.0.5 . 81"],
      ["dnat4", "sctp . 8082", "10.0.0.5 . 82"],
      ["masq4", "10.0.0.0/24 . 10.0.0.5", tag],
      ["masq4", "127.0.0.0/8 . 10.0.0.5", tag],
      ["owners6", "fd00::5", tag],
      ["dnat6", "tcp . 8080", "fd00::5 . 80"],
      ["dnat6", "sctp . 8082", "fd00::5 . 82"],
      ["hostip_dnat6", "fd00:1::1 . tcp . 8083", "fd00::5 . 83"],
      ["masq6", "fd00::/64 . fd00::5", tag],
    ]);
    const noSnat = desiredElems(owner, parseConfig(conf({ snat: false }), "eth0"));
    expect(noSnat.some((e) => e.map.startsWith("masq"))).toBe(false);
    const all = desiredElems(owner, parseConfig(conf({ masqAll: true }), "eth0"));
    expect(all.filter((e) => e.map.startsWith("masq")).map((e) => e.key)).toEqual([
      "0.0.0.0/0 . 10.0.0.5",
      "::/0 . fd00::5",
    ]);
  });

  test("iptables: upstream's chain name and the rules iptables-save prints for upstream's ADD", () => {
    // As printed by iptables-save after /usr/lib/cni/portmap ADD of this config.
    expect(chainName("mynet", "ctr1", "DN-")).toBe("CNI-DN-5145007e2a8415ce07579");
    const c = parseConfig(conf(), "eth0");
    const { entries, rules } = containerRules(c, "ctr1", c.addrs[0]!);
    expect(rules.map((r) => r.join(" "))).toEqual([
      "-s 10.0.0.0/24 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK",
      "-s 127.0.0.1/32 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK",
      "-p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.0.0.5:80",
      "-s 10.0.0.0/24 -d 192.168.1.1/32 -p udp -m udp --dport 8081 -j CNI-HOSTPORT-SETMARK",
      "-s 127.0.0.1/32 -d 192.168.1.1/32 -p udp -m udp --dport 8081 -j CNI-HOSTPORT-SETMARK",
      "-d 192.168.1.1/32 -p udp -m udp --dport 8081 -j DNAT --to-destination 10.0.0.5:81",
      "-s 10.0.0.0/24 -p sctp -m sctp --dport 8082 -j CNI-HOSTPORT-SETMARK",
      "-s 127.0.0.1/32 -p sctp -m sctp --dport 8082 -j CNI-HOSTPORT-SETMARK",
      "-p sctp -m sctp --dport 8082 -j DNAT --to-destination 10.0.0.5:82",
    ]);
    const comment = 'dnat name: "mynet" id: "ctr1"';
    expect(entries).toEqual(
      [
        ["sctp", "8082"],
        ["tcp", "8080,8083"],
        ["udp", "8081"],
      ].map(([p, ports]) => [
        ...["-p", p!, "-m", "comment", "--comment", comment, "-m", "multiport", "--dports", ports!],
        ...["-j", "CNI-DN-5145007e2a8415ce07579"],
      ]),
    );
    const v6 = containerRules(c, "ctr1", c.addrs[1]!).rules.map((r) => r.join(" "));
    expect(v6).toContain("-p tcp -m tcp --dport 8080 -j DNAT --to-destination [fd00::5]:80");
    expect(v6).toContain("-s fd00::/64 -d fd00:1::1/128 -p tcp -m tcp --dport 8083 -j CNI-HOSTPORT-SETMARK");
  });
});

describe("verbs that need no kernel", () => {
  const args = (stdin: string, command = "ADD"): CmdArgs => ({
    command,
    containerID: "ctr1",
    netns: "/var/run/netns/x",
    ifName: "eth0",
    args: "",
    path: [],
    stdinData: new TextEncoder().encode(stdin),
  });
  const without = (key: string, extra: Record<string, unknown> = {}) => {
    const o = JSON.parse(conf(extra)) as Record<string, unknown>;
    delete o[key];
    return JSON.stringify(o);
  };

  test("ADD without prevResult is code 7; without mappings it passes prevResult through", async () => {
    await expect(plugin.add(args(without("prevResult")))).rejects.toMatchObject({ code: 7 });
    const r = await plugin.add(args(conf({}, [])));
    expect(r.ips?.map((i) => i.address)).toEqual(["10.0.0.5/24", "10.0.0.6/24", "fd00::5/64"]);
  });

  test("CHECK without prevResult and GC without valid attachments are code 7; DEL without mappings is a no-op", async () => {
    await expect(Promise.resolve(plugin.check!(args(without("prevResult"), "CHECK")))).rejects.toMatchObject({
      code: 7,
    });
    await expect(Promise.resolve(plugin.gc!(args(conf(), "GC")))).rejects.toMatchObject({ code: 7 });
    await plugin.del(args(conf({}, []), "DEL"));
  });
});
