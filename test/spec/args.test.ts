import { describe, expect, test } from "bun:test";
import {
  loadArgs,
  parseAliases,
  parseBandwidth,
  parseCapabilityArgs,
  parseCniArgs,
  parseInfinibandGUID,
  parseIPRanges,
  parseIPs,
  parseMac,
  parsePodAnnotations,
  parsePortMappings,
  parseRuntimeDNS,
  runtimeDNSToDNS,
} from "../../src/spec/args.ts";
import { failure } from "../helpers/errors.ts";

describe("CNI_ARGS", () => {
  test("splits pairs; empty is no args; last duplicate wins", () => {
    expect(parseCniArgs("")).toEqual(new Map());
    expect(parseCniArgs("A=1;B=;C=x")).toEqual(
      new Map([
        ["A", "1"],
        ["B", ""],
        ["C", "x"],
      ]),
    );
    expect(parseCniArgs("A=1;A=2").get("A")).toBe("2");
  });
  test("a pair without exactly one '=' is code 4 naming the pair", () => {
    for (const bad of ["A", "A=1;", "A=b=c", "A=1;;B=2"]) {
      const e = failure(() => parseCniArgs(bad));
      expect(e.code).toBe(4);
      expect(e.msg).toStartWith("ARGS: invalid pair");
    }
    expect(failure(() => parseCniArgs("A=1;junk")).msg).toBe('ARGS: invalid pair "junk"');
  });
  test("loadArgs keeps known keys and rejects unknown ones", () => {
    expect(loadArgs("IP=10.0.0.5", ["IP"]).get("IP")).toBe("10.0.0.5");
    const e = failure(() => loadArgs("IP=10.0.0.5;K8S_POD_NAME=x", ["IP"]));
    expect(e.code).toBe(4);
    expect(e.msg).toBe('ARGS: unknown args ["K8S_POD_NAME=x"]');
  });
  test("IgnoreUnknown=1|true (podman, kubelet) lets unknown keys through", () => {
    const podman = "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=x;IP=10.0.0.5;MAC=02:00:00:00:00:01";
    const args = loadArgs(podman, ["IP", "MAC"]);
    expect(args.get("IP")).toBe("10.0.0.5");
    expect(args.get("MAC")).toBe("02:00:00:00:00:01");
    expect(args.has("K8S_POD_NAME")).toBe(false);
    expect(loadArgs("K=V;IgnoreUnknown=TRUE", []).size).toBe(0);
    expect(failure(() => loadArgs("K=V;IgnoreUnknown=0", [])).code).toBe(4);
    expect(failure(() => loadArgs("IgnoreUnknown=yes", [])).msg).toContain("invalid input yes");
  });
});

describe("capability arguments", () => {
  test("containerd's capitalised port mappings with an empty HostIP decode like Go", () => {
    const containerd = [
      { HostPort: 8080, ContainerPort: 80, Protocol: "TCP", HostIP: "" },
      { HostPort: 5353, ContainerPort: 53, Protocol: "udp", HostIP: "127.0.0.1" },
      { hostPort: 9000, containerPort: 9000 },
    ];
    expect(parsePortMappings(containerd)).toEqual([
      { hostPort: 8080, containerPort: 80, protocol: "tcp" },
      { hostPort: 5353, containerPort: 53, protocol: "udp", hostIP: "127.0.0.1" },
      { hostPort: 9000, containerPort: 9000, protocol: "tcp" },
    ]);
    expect(parsePortMappings(null)).toEqual([]);
  });
  test("port mapping errors name the field", () => {
    const wrongType = failure(() => parsePortMappings([{ hostPort: "80", containerPort: 80 }]));
    expect(wrongType.code).toBe(6);
    expect(wrongType.msg).toBe("runtimeConfig.portMappings[0].hostPort: expected number, got string");
    const badPort = failure(() => parsePortMappings([{ hostPort: 80, containerPort: 70000 }]));
    expect(badPort.code).toBe(7);
    expect(badPort.msg).toContain("runtimeConfig.portMappings[0].containerPort");
    expect(failure(() => parsePortMappings([{ hostPort: 80 }])).msg).toContain("containerPort");
    expect(failure(() => parsePortMappings([{ hostPort: 1, containerPort: 1, hostIP: "x" }])).msg).toContain(
      "hostIP: invalid IP address: x",
    );
    expect(failure(() => parsePortMappings({})).msg).toContain("expected array");
  });
  test("bandwidth", () => {
    expect(parseBandwidth({ ingressRate: 1000, IngressBurst: 2000 })).toEqual({
      ingressRate: 1000,
      ingressBurst: 2000,
    });
    expect(parseBandwidth(undefined)).toBeUndefined();
    expect(failure(() => parseBandwidth({ egressRate: -1 })).msg).toContain(
      "runtimeConfig.bandwidth.egressRate",
    );
    expect(failure(() => parseBandwidth({ egressRate: "1" })).code).toBe(6);
  });
  test("ipRanges, ips, mac, infinibandGUID", () => {
    expect(parseIPRanges([[{ subnet: "10.1.0.0/16", rangeStart: "10.1.0.10", gateway: "" }]])).toEqual([
      [{ subnet: "10.1.0.0/16", rangeStart: "10.1.0.10" }],
    ]);
    expect(failure(() => parseIPRanges([[{ subnet: "10.1.0.0" }]])).msg).toBe(
      "runtimeConfig.ipRanges[0][0].subnet: invalid CIDR address: 10.1.0.0",
    );
    expect(failure(() => parseIPRanges([[{}]])).code).toBe(7);
    expect(parseIPs(["10.0.0.5", "2001:db8::5/64"])).toEqual(["10.0.0.5", "2001:db8::5/64"]);
    expect(failure(() => parseIPs(["10.0.0.300"])).msg).toContain("runtimeConfig.ips[0]");
    expect(parseMac("c2:11:22:33:44:55")).toBe("c2:11:22:33:44:55");
    expect(parseMac("C2-11-22-33-44-55")).toBe("C2-11-22-33-44-55");
    expect(failure(() => parseMac("c2:11:22:33:44")).code).toBe(7);
    expect(parseInfinibandGUID("c2:11:22:33:44:55:66:77")).toBe("c2:11:22:33:44:55:66:77");
    expect(failure(() => parseInfinibandGUID("c2:11:22:33:44:55")).code).toBe(7);
  });
  test("dns, aliases, annotations", () => {
    const dns = parseRuntimeDNS({ servers: ["10.0.0.10"], searches: ["svc.local"], options: ["ndots:5"] })!;
    expect(runtimeDNSToDNS(dns)).toEqual({
      nameservers: ["10.0.0.10"],
      search: ["svc.local"],
      options: ["ndots:5"],
    });
    expect(parseAliases({ podman: ["web", "db"] })).toEqual({ podman: ["web", "db"] });
    expect(failure(() => parseAliases({ podman: "web" })).msg).toBe(
      "runtimeConfig.aliases.podman: expected array, got string",
    );
    expect(parsePodAnnotations({ a: "b" })).toEqual({ a: "b" });
    expect(failure(() => parsePodAnnotations({ a: 1 })).code).toBe(6);
  });
  test("parseCapabilityArgs decodes every known key and ignores others", () => {
    const rc = parseCapabilityArgs({
      portMappings: [{ hostPort: 80, containerPort: 8080, protocol: "tcp" }],
      bandwidth: { ingressRate: 1 },
      ips: ["10.0.0.2"],
      mac: "02:00:00:00:00:02",
      deviceID: "0000:04:00.5",
      cgroupPath: "/kubepods",
      "io.kubernetes.cri.pod-annotations": { k: "v" },
      somethingElse: 1,
    });
    expect(rc).toEqual({
      portMappings: [{ hostPort: 80, containerPort: 8080, protocol: "tcp" }],
      bandwidth: { ingressRate: 1 },
      ips: ["10.0.0.2"],
      mac: "02:00:00:00:00:02",
      deviceID: "0000:04:00.5",
      cgroupPath: "/kubepods",
      "io.kubernetes.cri.pod-annotations": { k: "v" },
    });
    expect(parseCapabilityArgs(undefined)).toEqual({});
    expect(failure(() => parseCapabilityArgs({ portMappings: [{ hostPort: true }] })).msg).toStartWith(
      "runtimeConfig.portMappings[0].hostPort",
    );
  });
});
