import { describe, expect, test } from "bun:test";
import { collectVlanTrunk, loadBridgeConf } from "../../../src/plugins/main/bridge/config.ts";
import { CniError } from "../../../src/spec/errors.ts";

function load(extra: Record<string, unknown> = {}, cniArgs = "") {
  return loadBridgeConf(
    JSON.stringify({ cniVersion: "1.1.0", name: "net", type: "bridge", ...extra }),
    cniArgs,
  );
}

function code(fn: () => unknown): number | string {
  try {
    fn();
  } catch (err) {
    return err instanceof CniError ? err.code : String(err);
  }
  return "no error";
}

function msg(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
  return "no error";
}

describe("bridge config", () => {
  test("defaults like upstream", () => {
    const c = load();
    expect(c.bridge).toBe("cni0");
    expect(c.preserveDefaultVlan).toBe(true);
    expect(c.ipMasqBackend).toBe("nftables");
    expect(c.isGateway).toBe(false);
    expect(c.vlanFiltering).toBe(false);
    expect(c.mtu).toBe(0);
    expect(c.ipamType).toBeUndefined();
    expect(c.mac).toBeUndefined();
    expect(c.dns).toBeUndefined();
  });

  test("isDefaultGateway implies isGateway", () => {
    const c = load({ isDefaultGateway: true });
    expect(c.isGateway).toBe(true);
    expect(c.isDefaultGateway).toBe(true);
  });

  test("keys decode case-insensitively like Go", () => {
    const c = load({ Bridge: "br9", HAIRPINMODE: true, IpMasq: true });
    expect(c.bridge).toBe("br9");
    expect(c.hairpinMode).toBe(true);
    expect(c.ipMasq).toBe(true);
  });

  test("wrong types are decoding errors (6), bad values config errors (7)", () => {
    expect(code(() => load({ mtu: "1500" }))).toBe(6);
    expect(code(() => load({ isGateway: "yes" }))).toBe(6);
    expect(code(() => load({ vlan: 4095 }))).toBe(7);
    expect(code(() => load({ vlan: -1 }))).toBe(7);
    expect(code(() => load({ mtu: 20 }))).toBe(7);
    expect(code(() => load({ bridge: "a-very-long-bridge-name" }))).toBe(7);
    expect(code(() => load({ bridge: "br/0" }))).toBe(7);
    expect(code(() => load({ ipMasqBackend: "ebtables" }))).toBe(7);
    expect(msg(() => load({ ipMasqBackend: "ebtables" }))).toContain("ipMasqBackend");
  });

  test("hairpin and promiscuous mode exclude each other", () => {
    expect(msg(() => load({ hairpinMode: true, promiscMode: true }))).toContain(
      "cannot set hairpin mode and promiscuous mode at the same time",
    );
  });

  test("disableContainerInterface cannot be combined with IPAM", () => {
    expect(code(() => load({ disableContainerInterface: true, ipam: { type: "host-local" } }))).toBe(7);
    expect(load({ disableContainerInterface: true }).disableContainerInterface).toBe(true);
  });

  test("vlanTrunk: ids and ranges, sorted and unique", () => {
    expect(collectVlanTrunk([{ id: 5 }, { minID: 3, maxID: 6 }, { id: 4 }])).toEqual([3, 4, 5, 6]);
    expect(collectVlanTrunk([])).toEqual([]);
  });

  test("vlanTrunk validation like upstream", () => {
    expect(msg(() => collectVlanTrunk([{ id: 0 }]))).toContain("incorrect trunk id parameter");
    expect(msg(() => collectVlanTrunk([{ id: 4095 }]))).toContain("incorrect trunk id parameter");
    expect(msg(() => collectVlanTrunk([{ minID: 0, maxID: 3 }]))).toContain(
      "incorrect trunk minID parameter",
    );
    expect(msg(() => collectVlanTrunk([{ minID: 1, maxID: 5000 }]))).toContain(
      "incorrect trunk maxID parameter",
    );
    expect(msg(() => collectVlanTrunk([{ minID: 9, maxID: 3 }]))).toContain("minID is greater than maxID");
    expect(msg(() => collectVlanTrunk([{ maxID: 3 }]))).toContain("minID is missing");
    expect(msg(() => collectVlanTrunk([{ minID: 3 }]))).toContain("maxID is missing");
    expect(code(() => load({ vlanTrunk: [{ id: 0 }] }))).toBe(7);
  });

  test("vlan filtering: on for vlan, for any vlanTrunk key; the access vlan is not a tagged member", () => {
    expect(load({ vlan: 10 }).vlanFiltering).toBe(true);
    expect(load({ vlanTrunk: [] }).vlanFiltering).toBe(true);
    const c = load({ vlan: 10, vlanTrunk: [{ minID: 9, maxID: 11 }] });
    expect(c.vlan).toBe(10);
    expect(c.vlanTrunk).toEqual([9, 11]);
  });

  test("MAC precedence: runtimeConfig over args.cni over CNI_ARGS", () => {
    const env = "IgnoreUnknown=1;MAC=0a:00:00:00:00:01";
    expect(load({}, env).mac).toBe("0a:00:00:00:00:01");
    expect(load({ args: { cni: { mac: "0A-00-00-00-00-02" } } }, env).mac).toBe("0a:00:00:00:00:02");
    expect(
      load({ args: { cni: { mac: "0a:00:00:00:00:02" } }, runtimeConfig: { mac: "0a00.0000.0003" } }, env)
        .mac,
    ).toBe("0a:00:00:00:00:03");
  });

  test("bad MACs: CNI_ARGS → 4, config → 7; unknown CNI_ARGS need IgnoreUnknown", () => {
    expect(code(() => load({}, "MAC=nope"))).toBe(4);
    expect(code(() => load({ runtimeConfig: { mac: "nope" } }))).toBe(7);
    expect(code(() => load({}, "K8S_POD_NAME=x"))).toBe(4);
    expect(load({}, "IgnoreUnknown=true;K8S_POD_NAME=x").mac).toBeUndefined();
  });

  test("dns of the config counts when anything is set", () => {
    expect(load({ dns: { nameservers: ["10.0.0.53"] } }).dns).toEqual({ nameservers: ["10.0.0.53"] });
    expect(load({ dns: {} }).dns).toBeUndefined();
  });

  test("GC valid attachments", () => {
    const c = load({ "cni.dev/valid-attachments": [{ containerID: "a", ifname: "eth0" }] });
    expect(c.validAttachments).toEqual([{ containerID: "a", ifname: "eth0" }]);
  });
});
