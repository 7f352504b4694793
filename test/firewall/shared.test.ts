/** The helpers the firewall backends share: ifname elements, owner IDs, iptables rule lines, D-Bus addresses. */
import { describe, expect, test } from "bun:test";
import { systemBusPath } from "../../src/firewall/dbus.ts";
import { jumpsTo, parseSave, quoteArg, ruleLine, rulesOf } from "../../src/firewall/iptables.ts";
import { decodeElem, encodeElem } from "../../src/firewall/nft-elems.ts";
import { iptablesChainName, ownerComment, ownerID, ownerOfComment } from "../../src/firewall/owner.ts";
import { CniError } from "../../src/spec/errors.ts";

describe("nft-elems ifname", () => {
  test("names are NUL-padded to 16 bytes, concatenations too, and come back quoted", () => {
    const one = encodeElem({ key: ["ifname"] }, { key: '"br0"' });
    expect(one.key).toHaveLength(16);
    expect([...one.key.subarray(0, 4)]).toEqual([98, 114, 48, 0]);
    expect(decodeElem({ key: ["ifname"] }, one).key).toBe('"br0"');
    const pair = encodeElem({ key: ["ifname", "ifname"] }, { key: '"br0" . "cni-podman1"' });
    expect(pair.key).toHaveLength(32);
    expect(decodeElem({ key: ["ifname", "ifname"] }, pair).key).toBe('"br0" . "cni-podman1"');
  });

  test("empty and over-long names are refused", () => {
    expect(() => encodeElem({ key: ["ifname"] }, { key: '""' })).toThrow(CniError);
    expect(() => encodeElem({ key: ["ifname"] }, { key: '"0123456789abcdef"' })).toThrow(CniError);
  });
});

describe("owner", () => {
  test("IDs, comments and chain names", () => {
    const o = { network: "net", containerID: "c1", ifName: "eth0" };
    expect(ownerID(o)).toMatch(/^[0-9a-f]{16}-[0-9a-f]{16}$/);
    expect(ownerOfComment(ownerComment(o))).toBe(ownerID(o));
    expect(ownerComment(o)).toEndWith(" net: net, if: eth0, id: c1");
    expect(ownerID({ ...o, ifName: "eth1" })).not.toBe(ownerID(o));
    // upstream's utils.FormatChainName("net", "c1") is "CNI-" + sha512("netc1")[:24]
    expect(iptablesChainName("net", "c1")).toHaveLength(28);
    expect(iptablesChainName("net", "c1", "DN-").startsWith("CNI-DN-")).toBe(true);
  });
});

describe("iptables rule helpers", () => {
  test("rule lines quote like iptables-save and read back", () => {
    const args = ["-m", "comment", "--comment", "CNI firewall plugin rules", "-j", "CNI-FORWARD"];
    const line = ruleLine("-A", "FORWARD", args);
    expect(line).toBe('-A FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD');
    expect(ruleLine("-I", "FORWARD", ["-j", "X"], 1)).toBe("-I FORWARD 1 -j X");
    expect(quoteArg('a"b')).toBe('"a\\"b"');
    const saved = parseSave(`*filter\n:FORWARD ACCEPT [0:0]\n${line}\nCOMMIT\n`, "filter");
    expect(rulesOf(saved, "FORWARD").map((r) => r.args)).toEqual([args]);
    expect(jumpsTo(args, "CNI-FORWARD")).toBe(true);
    expect(jumpsTo(["-g", "Y"], "Y")).toBe(true);
    expect(jumpsTo(["-j", "ACCEPT"], "Y")).toBe(false);
  });
});

describe("dbus", () => {
  test("the system bus comes from DBUS_SYSTEM_BUS_ADDRESS's unix:path entry, else the default", () => {
    const saved = process.env.DBUS_SYSTEM_BUS_ADDRESS;
    try {
      process.env.DBUS_SYSTEM_BUS_ADDRESS = "tcp:host=x;unix:path=/tmp/a%20b,guid=1";
      expect(systemBusPath()).toBe("/tmp/a b");
      delete process.env.DBUS_SYSTEM_BUS_ADDRESS;
      expect(systemBusPath()).toBe("/run/dbus/system_bus_socket");
      process.env.DBUS_SYSTEM_BUS_ADDRESS = "unix:abstract=x";
      expect(() => systemBusPath()).toThrow(CniError);
    } finally {
      if (saved === undefined) delete process.env.DBUS_SYSTEM_BUS_ADDRESS;
      else process.env.DBUS_SYSTEM_BUS_ADDRESS = saved;
    }
  });
});
