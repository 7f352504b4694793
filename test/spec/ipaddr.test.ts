import { describe, expect, test } from "bun:test";
import { canonicalCIDR, canonicalIP, ipFamily, parseIP } from "../../src/spec/ipaddr.ts";

describe("IP parsing like Go's net package", () => {
  test("IPv4", () => {
    expect(canonicalIP("10.0.0.1")).toBe("10.0.0.1");
    expect(canonicalIP("255.255.255.255")).toBe("255.255.255.255");
    for (const bad of ["010.0.0.1", "256.0.0.1", "1.2.3", "1.2.3.4.5", "", "a.b.c.d", "1.2.3.4 "]) {
      expect(canonicalIP(bad)).toBeUndefined();
    }
  });
  test("IPv6 prints in RFC 5952 form", () => {
    expect(canonicalIP("2001:DB8:0:0:0:0:0:0001")).toBe("2001:db8::1");
    expect(canonicalIP("::")).toBe("::");
    expect(canonicalIP("::1")).toBe("::1");
    expect(canonicalIP("1:0:0:2:0:0:0:3")).toBe("1:0:0:2::3");
    expect(canonicalIP("1:0:0:2:0:0:3:4")).toBe("1::2:0:0:3:4");
    expect(canonicalIP("1:0:2:3:4:5:6:7")).toBe("1:0:2:3:4:5:6:7");
    expect(canonicalIP("1:2:3:4:5:6:7::")).toBe("1:2:3:4:5:6:7:0");
    expect(canonicalIP("::1.2.3.4")).toBe("::102:304");
    for (const bad of [
      "1::2::3",
      "1:2:3:4:5:6:7:8:9",
      "1::2:3:4:5:6:7:8",
      "fe80::1%eth0",
      "12345::",
      "1.2.3.4::",
    ]) {
      expect(canonicalIP(bad)).toBeUndefined();
    }
  });
  test("IPv4-mapped IPv6 is IPv4", () => {
    const ip = parseIP("::ffff:10.1.2.3")!;
    expect(ip.length).toBe(16);
    expect(ipFamily(ip)).toBe(4);
    expect(canonicalIP("::ffff:10.1.2.3")).toBe("10.1.2.3");
    expect(canonicalCIDR("::ffff:10.1.2.3/120")).toBe("10.1.2.3/24");
  });
  test("CIDR keeps the host address and checks the prefix", () => {
    expect(canonicalCIDR("10.1.2.3/24")).toBe("10.1.2.3/24");
    expect(canonicalCIDR("2001:DB8::0001/64")).toBe("2001:db8::1/64");
    for (const bad of ["10.1.2.3", "10.1.2.3/33", "::/129", "10.1.2.3/", "10.1.2.3/-1", "10.0.0.0/8/8"]) {
      expect(canonicalCIDR(bad)).toBeUndefined();
    }
  });
});
