import { describe, expect, test } from "bun:test";
import { formatAddr } from "../../../../src/ipam-common/ipmath.ts";
import { loadHostLocalConf } from "../../../../src/plugins/ipam/host-local/config.ts";
import { rangeSetString } from "../../../../src/plugins/ipam/host-local/range.ts";
import { failure } from "../../../helpers/errors.ts";

function load(obj: Record<string, unknown>, env = "") {
  return loadHostLocalConf(JSON.stringify({ cniVersion: "1.0.0", name: "net1", ...obj }), env);
}

describe("host-local config", () => {
  test("range set order: ipRanges capability, legacy range, ranges", () => {
    const c = load({
      runtimeConfig: { ipRanges: [[{ subnet: "10.9.0.0/24" }]] },
      ipam: {
        type: "host-local",
        subnet: "10.1.0.0/24",
        rangeStart: "10.1.0.10",
        ranges: [[{ subnet: "fd00::/64" }]],
      },
    });
    expect(c.ranges.map(rangeSetString)).toEqual([
      "10.9.0.1-10.9.0.254",
      "10.1.0.10-10.1.0.254",
      "fd00::1-fd00::ffff:ffff:ffff:ffff",
    ]);
    expect(c.dataDir).toBe("/var/lib/cni/networks");
    expect(c.routes).toEqual([]);
  });

  test("keys match case-insensitively like Go, routes are canonicalized", () => {
    const c = load({
      IPAM: {
        type: "host-local",
        Ranges: [[{ Subnet: "10.1.0.0/24", RangeEnd: "10.1.0.20" }]],
        DataDir: "/tmp/x",
        routes: [{ dst: "0.0.0.0/0", gw: "10.1.0.1" }, { dst: "FD00::/8" }],
      },
    });
    expect(rangeSetString(c.ranges[0]!)).toBe("10.1.0.1-10.1.0.20");
    expect(c.dataDir).toBe("/tmp/x");
    expect(c.routes).toEqual([{ dst: "0.0.0.0/0", gw: "10.1.0.1" }, { dst: "fd00::/8" }]);
  });

  test("requested IPs from CNI_ARGS (comma list), args.cni.ips and runtimeConfig.ips", () => {
    const c = load(
      {
        args: { cni: { ips: ["10.1.0.7/24"] } },
        runtimeConfig: { ips: ["fd00::9", "10.1.0.5"] },
        ipam: { type: "host-local", ranges: [[{ subnet: "10.1.0.0/24" }]] },
      },
      "IgnoreUnknown=1;K8S_POD_NAME=p;IP=10.1.0.5,10.1.0.6",
    );
    expect(c.requestedIPs.map(formatAddr)).toEqual(["10.1.0.5", "10.1.0.6", "10.1.0.7", "fd00::9"]);
  });

  test("rejections name the problem", () => {
    const ipam = { type: "host-local", ranges: [[{ subnet: "10.1.0.0/24" }]] };
    expect(failure(() => load({})).msg).toBe("IPAM config missing 'ipam' key");
    expect(failure(() => load({ ipam: { type: "host-local" } })).msg).toBe("no IP ranges specified");
    expect(failure(() => load({ name: "../etc", ipam })).code).toBe(7);
    expect(failure(() => load({ ipam }, "IP=10.1.0.300")).code).toBe(4);
    expect(failure(() => load({ ipam }, "FOO=bar")).msg).toContain("unknown args");
    const bad = failure(() =>
      load({
        ipam: { type: "host-local", ranges: [[{ subnet: "10.1.0.0/24" }], [{ subnet: "10.2.0.1/24" }]] },
      }),
    );
    expect(bad.code).toBe(7);
    expect(bad.msg).toStartWith("invalid range set 1: Network has host bits set");
    const overlap = failure(() =>
      load({
        ipam: { type: "host-local", ranges: [[{ subnet: "10.1.0.0/16" }], [{ subnet: "10.1.5.0/24" }]] },
      }),
    );
    expect(overlap.msg).toBe("range set 0 overlaps with 1");
    const old = failure(() =>
      load({
        cniVersion: "0.2.0",
        ipam: { type: "host-local", ranges: [[{ subnet: "10.1.0.0/24" }], [{ subnet: "10.2.0.0/24" }]] },
      }),
    );
    expect(old.msg).toBe("CNI version 0.2.0 does not support more than 1 address per family");
    expect(failure(() => load({ ipam: { ...ipam, routes: [{ dst: "nope" }] } })).msg).toContain(
      "routes[0].dst",
    );
  });

  test("valid attachments for GC", () => {
    const c = load({
      "cni.dev/valid-attachments": [{ containerID: "a", ifname: "eth0" }],
      ipam: { type: "host-local", ranges: [[{ subnet: "10.1.0.0/24" }]] },
    });
    expect(c.validAttachments).toEqual([{ containerID: "a", ifname: "eth0" }]);
  });
});
