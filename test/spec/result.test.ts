import { describe, expect, test } from "bun:test";
import {
  convertResult,
  formatResult,
  parsePrevResult,
  parseResult,
  parseResultBytes,
  resultIPsByFamily,
} from "../../src/spec/result.ts";
import type { NetConf, Result } from "../../src/spec/types.ts";
import { failure } from "../helpers/errors.ts";

// Printed by upstream's Go host-local (cni 1.1.2) for the same allocation in three versions.
const GO_020 = `{
    "cniVersion": "0.2.0",
    "ip4": {
        "ip": "10.9.0.2/24",
        "gateway": "10.9.0.1",
        "routes": [
            {
                "dst": "0.0.0.0/0"
            }
        ]
    },
    "ip6": {
        "ip": "2001:db8::2/64",
        "gateway": "2001:db8::1",
        "routes": [
            {
                "dst": "::/0",
                "gw": "2001:db8::fe"
            }
        ]
    },
    "dns": {}
}`;
const GO_040 = `{
    "cniVersion": "0.4.0",
    "ips": [
        {
            "version": "4",
            "address": "10.9.0.2/24",
            "gateway": "10.9.0.1"
        },
        {
            "version": "6",
            "address": "2001:db8::2/64",
            "gateway": "2001:db8::1"
        }
    ],
    "routes": [
        {
            "dst": "0.0.0.0/0"
        },
        {
            "dst": "::/0",
            "gw": "2001:db8::fe"
        }
    ],
    "dns": {}
}`;
const GO_100 = `{
    "cniVersion": "1.0.0",
    "ips": [
        {
            "address": "10.9.0.2/24",
            "gateway": "10.9.0.1"
        },
        {
            "address": "2001:db8::2/64",
            "gateway": "2001:db8::1"
        }
    ],
    "routes": [
        {
            "dst": "0.0.0.0/0"
        },
        {
            "dst": "::/0",
            "gw": "2001:db8::fe"
        }
    ],
    "dns": {}
}`;

const RICH: Result = {
  cniVersion: "1.1.0",
  interfaces: [
    { name: "cni0", mac: "02:00:00:00:00:01" },
    {
      name: "eth0",
      mac: "02:00:00:00:00:02",
      mtu: 1400,
      sandbox: "/var/run/netns/x",
      socketPath: "/run/vhost.sock",
      pciID: "0000:04:00.5",
    },
  ],
  ips: [
    { interface: 1, address: "10.1.0.5/16", gateway: "10.1.0.1" },
    { interface: 1, address: "10.2.0.5/16" },
    { interface: 1, address: "fd00::5/64", gateway: "fd00::1" },
    { interface: 1, address: "fd01::5/64" },
  ],
  routes: [
    { dst: "0.0.0.0/0", gw: "10.1.0.1", mtu: 1300, advmss: 1260, priority: 10, table: 100, scope: 0 },
    { dst: "::/0", gw: "fd00::1" },
    { dst: "192.168.0.0/16" },
  ],
  dns: { nameservers: ["10.1.0.10"], search: ["svc.local"] },
};

describe("round trips against upstream's printed results", () => {
  for (const [version, text] of [
    ["0.2.0", GO_020],
    ["0.4.0", GO_040],
    ["1.0.0", GO_100],
  ] as const) {
    test(`${version} prints byte-for-byte like Go`, () => {
      const r = parseResultBytes(text);
      expect(r.cniVersion).toBe(version);
      expect(formatResult(r, version)).toBe(text);
    });
  }
  test("every version of the same allocation parses to the same canonical result", () => {
    const a = parseResultBytes(GO_020);
    const b = parseResultBytes(GO_040);
    const c = parseResultBytes(GO_100);
    expect({ ...a, cniVersion: "" }).toEqual({ ...b, cniVersion: "" });
    expect({ ...b, cniVersion: "" }).toEqual({ ...c, cniVersion: "" });
  });
  test("0.2.0 → 0.4.0 and 1.0.0 print like Go's up-conversions", () => {
    const r = parseResultBytes(GO_020);
    expect(formatResult(r, "0.4.0")).toBe(GO_040);
    expect(formatResult(r, "1.0.0")).toBe(GO_100);
  });
});

describe("convertResult", () => {
  test("1.1.0 keeps its additions and omits an empty dns", () => {
    const out = convertResult(RICH, "1.1.0");
    expect(out["interfaces"]).toEqual(RICH.interfaces);
    expect(out["routes"]).toEqual(RICH.routes);
    expect(convertResult({ ...RICH, dns: {} }, "1.1.0")).not.toHaveProperty("dns");
  });
  test("1.1 → 1.0 drops the 1.1 fields", () => {
    const out = convertResult(RICH, "1.0.0");
    expect(out["interfaces"]).toEqual([
      { name: "cni0", mac: "02:00:00:00:00:01" },
      { name: "eth0", mac: "02:00:00:00:00:02", sandbox: "/var/run/netns/x" },
    ]);
    expect((out["routes"] as unknown[])[0]).toEqual({ dst: "0.0.0.0/0", gw: "10.1.0.1" });
    expect((out["ips"] as unknown[])[0]).toEqual({
      interface: 1,
      address: "10.1.0.5/16",
      gateway: "10.1.0.1",
    });
  });
  test("1.1 → 0.4.0/0.3.x adds ips[].version", () => {
    for (const v of ["0.4.0", "0.3.1", "0.3.0"]) {
      const out = convertResult(RICH, v);
      expect(out["cniVersion"]).toBe(v);
      expect((out["ips"] as { version: string }[]).map((i) => i.version)).toEqual(["4", "4", "6", "6"]);
      expect(Object.keys((out["ips"] as object[])[0]!)).toEqual([
        "version",
        "interface",
        "address",
        "gateway",
      ]);
      expect(out["dns"]).toEqual({ nameservers: ["10.1.0.10"], search: ["svc.local"] });
    }
  });
  test("→ 0.2.0/0.1.0 keeps the first IPv4 and IPv6 and files routes by family", () => {
    for (const v of ["0.2.0", "0.1.0"]) {
      expect(convertResult(RICH, v)).toEqual({
        cniVersion: v,
        ip4: {
          ip: "10.1.0.5/16",
          gateway: "10.1.0.1",
          routes: [{ dst: "0.0.0.0/0", gw: "10.1.0.1" }, { dst: "192.168.0.0/16" }],
        },
        ip6: { ip: "fd00::5/64", gateway: "fd00::1", routes: [{ dst: "::/0", gw: "fd00::1" }] },
        dns: { nameservers: ["10.1.0.10"], search: ["svc.local"] },
      });
    }
    expect(convertResult(RICH, "")["cniVersion"]).toBe("0.1.0");
  });
  test("routes of a family without an address are dropped going to 0.2.0", () => {
    const only4: Result = {
      cniVersion: "1.0.0",
      ips: [{ address: "10.0.0.2/24" }],
      routes: [{ dst: "::/0" }],
    };
    expect(convertResult(only4, "0.2.0")).toEqual({
      cniVersion: "0.2.0",
      ip4: { ip: "10.0.0.2/24" },
      dns: {},
    });
  });
  test("no address cannot become 0.2.0 (code 999 like upstream)", () => {
    const e = failure(() => convertResult({ cniVersion: "1.0.0", interfaces: [{ name: "lo" }] }, "0.2.0"));
    expect(e.code).toBe(999);
    expect(e.msg).toBe("cannot convert: no valid IP addresses");
  });
  test("an unknown target version is code 1", () => {
    expect(failure(() => convertResult(RICH, "0.5.0")).code).toBe(1);
  });
  test("round trip 1.1 → 0.4.0 → 1.1 loses only the 1.1 fields", () => {
    const back = parseResult(convertResult(RICH, "0.4.0"));
    expect(back.ips).toEqual(RICH.ips);
    expect(back.interfaces?.[1]).toEqual({
      name: "eth0",
      mac: "02:00:00:00:00:02",
      sandbox: "/var/run/netns/x",
    });
    expect(back.routes?.[0]).toEqual({ dst: "0.0.0.0/0", gw: "10.1.0.1" });
    expect(parseResult(convertResult(RICH, "1.1.0"))).toEqual(RICH);
  });
  test("formatResult indents with four spaces and has no trailing newline", () => {
    const text = formatResult({ cniVersion: "1.1.0", ips: [{ address: "10.0.0.2/24" }] }, "1.1.0");
    expect(text).toBe(
      '{\n    "cniVersion": "1.1.0",\n    "ips": [\n        {\n            "address": "10.0.0.2/24"\n        }\n    ]\n}',
    );
  });
});

describe("parseResult", () => {
  test("addresses are printed the way Go prints them", () => {
    const r = parseResult({
      cniVersion: "1.0.0",
      ips: [{ address: "2001:DB8::0005/64", gateway: "2001:DB8::1" }, { address: "::ffff:10.0.0.5/120" }],
      routes: [{ dst: "::/0", gw: "" }],
    });
    expect(r.ips).toEqual([
      { address: "2001:db8::5/64", gateway: "2001:db8::1" },
      { address: "10.0.0.5/24" },
    ]);
    expect(r.routes).toEqual([{ dst: "::/0" }]);
    expect(resultIPsByFamily(r).v4.map((i) => i.address)).toEqual(["10.0.0.5/24"]);
  });
  test("the version comes from the result, else the given one, else 0.1.0", () => {
    expect(parseResult({ ips: [{ address: "10.0.0.1/8" }] }, "1.0.0").cniVersion).toBe("1.0.0");
    expect(parseResult({ ip4: { ip: "10.0.0.1/8" } }).cniVersion).toBe("0.1.0");
    expect(parseResult({ cniVersion: "0.3.1", ips: [] }, "1.0.0").cniVersion).toBe("0.3.1");
  });
  test("older versions ignore fields they do not define", () => {
    const r = parseResult({
      cniVersion: "1.0.0",
      interfaces: [{ name: "eth0", mtu: 1500 }],
      routes: [{ dst: "0.0.0.0/0", mtu: 1400 }],
    });
    expect(r.interfaces).toEqual([{ name: "eth0" }]);
    expect(r.routes).toEqual([{ dst: "0.0.0.0/0" }]);
  });
  test("invalid results are code 6 naming the field; unknown versions code 1", () => {
    expect(failure(() => parseResult({ cniVersion: "1.0.0", ips: [{ address: "10.0.0.5" }] })).msg).toBe(
      "ips[0].address: invalid CIDR address: 10.0.0.5",
    );
    expect(failure(() => parseResult({ cniVersion: "1.0.0", ips: [{}] })).msg).toBe(
      "ips[0].address: missing",
    );
    expect(failure(() => parseResult({ cniVersion: "0.2.0", ip4: { ip: "x/8" } })).msg).toContain("ip4.ip");
    expect(
      failure(() => parseResult({ cniVersion: "0.4.0", routes: [{ dst: "0.0.0.0/0", gw: "bad" }] })).msg,
    ).toBe("routes[0].gw: invalid IP address: bad");
    expect(
      failure(() => parseResult({ cniVersion: "1.1.0", routes: [{ dst: "0.0.0.0/0", table: "x" }] })).code,
    ).toBe(6);
    expect(failure(() => parseResult({ cniVersion: "1.0.0", ips: {} })).msg).toBe(
      "ips: expected array, got object",
    );
    expect(failure(() => parseResult("x")).code).toBe(6);
    expect(failure(() => parseResult({ cniVersion: "7.0.0" })).code).toBe(1);
    expect(failure(() => parseResultBytes("{")).code).toBe(6);
  });
  test("prevResult of a config", () => {
    const conf: NetConf = {
      cniVersion: "0.4.0",
      name: "n",
      type: "t",
      prevResult: { ips: [{ version: "4", address: "10.0.0.5/24" }] },
    };
    expect(parsePrevResult(conf)).toEqual({ cniVersion: "0.4.0", ips: [{ address: "10.0.0.5/24" }] });
    expect(parsePrevResult({ cniVersion: "1.0.0", name: "n", type: "t" })).toBeUndefined();
    const e = failure(() => parsePrevResult({ ...conf, prevResult: { ips: [{ address: "bad" }] } }));
    expect(e.msg).toStartWith("could not parse prevResult: ");
  });
});
