import { describe, expect, test } from "bun:test";
import {
  addrHex,
  formatAddr,
  hexAddr,
  lastAddr,
  networkAddr,
  nextAddr,
  parseAddr,
  parseNetwork,
  parseSubnet,
  prevAddr,
  subnetContains,
  subnetSize,
} from "../../src/ipam-common/ipmath.ts";

const a = (s: string) => parseAddr(s)!;
const sub = (s: string) => parseSubnet(s)!;

describe("ipmath", () => {
  test("parses and prints like Go's net.IP", () => {
    expect(formatAddr(a("10.0.0.1"))).toBe("10.0.0.1");
    expect(formatAddr(a("FD00:0:0:0:0:0:0:0001"))).toBe("fd00::1");
    expect(formatAddr(a("2001:db8:0:0:1:0:0:1"))).toBe("2001:db8::1:0:0:1");
    expect(a("::ffff:10.1.2.3")).toEqual({ family: 4, value: 0x0a010203n });
    expect(parseAddr("10.0.0.01")).toBeUndefined();
    expect(parseAddr("10.0.0")).toBeUndefined();
  });

  test("next and prev cross octet and group boundaries and wrap", () => {
    expect(formatAddr(nextAddr(a("10.0.0.255")))).toBe("10.0.1.0");
    expect(formatAddr(prevAddr(a("10.0.1.0")))).toBe("10.0.0.255");
    expect(formatAddr(nextAddr(a("fd00::ffff")))).toBe("fd00::1:0");
    expect(formatAddr(nextAddr(a("255.255.255.255")))).toBe("0.0.0.0");
    expect(formatAddr(prevAddr(a("::")))).toBe("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
  });

  test("network, last address and containment", () => {
    const s = sub("10.1.2.3/22");
    expect(formatAddr(networkAddr(s))).toBe("10.1.0.0");
    expect(formatAddr(lastAddr(s))).toBe("10.1.3.255");
    expect(subnetContains({ ip: networkAddr(s), prefix: 22 }, a("10.1.3.7"))).toBe(true);
    expect(subnetContains({ ip: networkAddr(s), prefix: 22 }, a("10.1.4.0"))).toBe(false);
    expect(subnetContains({ ip: networkAddr(s), prefix: 22 }, a("fd00::1"))).toBe(false);
    expect(formatAddr(lastAddr(sub("fd00::/120")))).toBe("fd00::ff");
  });
});

describe("network form and etcd keys", () => {
  test("parseNetwork clears host bits and says whether there were any", () => {
    const n = parseNetwork("10.1.2.3/24");
    expect(n && formatAddr(n.net.ip)).toBe("10.1.2.0");
    expect(n?.hostBits).toBe(true);
    expect(parseNetwork("10.1.2.0/24")?.hostBits).toBe(false);
    // a mapped IPv4 CIDR is IPv4 with the IPv4 prefix
    const m = parseNetwork("::ffff:10.0.0.0/120");
    expect(m?.net.ip.family).toBe(4);
    expect(m?.net.prefix).toBe(24);
    expect(parseNetwork("10.0.0.0/33")).toBeUndefined();
  });

  test("subnetSize and fixed-width hex keys that sort in address order", () => {
    expect(subnetSize({ ip: a("10.0.0.0"), prefix: 26 })).toBe(64n);
    expect(subnetSize({ ip: a("fd00::"), prefix: 64 })).toBe(1n << 64n);
    expect(addrHex(a("10.0.0.10"))).toBe("0a00000a");
    expect(addrHex(a("fd00::1"))).toBe("fd000000000000000000000000000001");
    expect(addrHex(a("9.255.255.255")) < addrHex(a("10.0.0.0"))).toBe(true);
    expect(formatAddr(hexAddr("0a00000a", 4))).toBe("10.0.0.10");
  });
});
