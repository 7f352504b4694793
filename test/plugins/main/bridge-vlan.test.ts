/**
 * Bridge VLAN options on the real kernel. Kernels without CONFIG_BRIDGE_VLAN_FILTERING skip the VLAN
 * tests and instead check that the options fail with a clear error and leave nothing behind.
 */
import { afterEach, describe, expect, test } from "bun:test";
import {
  cleanupAll,
  makeNetns,
  skipLabel,
  skipUnlessBridgeVlan,
  type TempNetns,
} from "../../helpers/netns.ts";
import {
  add,
  addrOf,
  bridgeConf,
  call,
  globalAddrs,
  linkNames,
  makeWorld,
  ping,
  portsOf,
  reservations,
  subnet,
} from "./bridge-helpers.ts";

afterEach(() => cleanupAll());

const T = 30_000;
const why = skipUnlessBridgeVlan();

/** vid → flags ("PVID", "Egress Untagged") of a bridge port, from `bridge -j vlan show`. */
function vlansOf(host: TempNetns, dev: string): Record<number, string[]> {
  const out: Record<number, string[]> = {};
  for (const v of host.bridge("vlan", "show", "dev", dev)[0]?.vlans ?? []) out[v.vlan] = v.flags ?? [];
  return out;
}

describe("bridge VLANs", () => {
  test.skipIf(!!why)(
    skipLabel("vlan: filtering on, the port is an access port of the vlan; other vlans are unreachable", why),
    async () => {
      const w = makeWorld();
      const [c1, c2, c3] = [makeNetns("c"), makeNetns("c"), makeNetns("c")];
      const net = subnet();
      const ranges = [[{ subnet: net.cidr }]];
      const r1 = await add(w, c1, bridgeConf(w, { vlan: 100 }, ranges), { containerID: "a" });
      await add(w, c2, bridgeConf(w, { vlan: 100 }, ranges), { containerID: "b" });
      await add(w, c3, bridgeConf(w, { vlan: 200 }, ranges), { containerID: "c" });
      expect(w.host.ip("-d", "link", "show", "br0")[0].linkinfo.info_data.vlan_filtering).toBe(1);
      const v = vlansOf(w.host, r1.interfaces[1].name);
      expect(v[100]).toEqual(expect.arrayContaining(["PVID", "Egress Untagged"]));
      // preserveDefaultVlan defaults to true: the bridge's default vlan stays, no longer as PVID.
      expect(v[1]).toBeDefined();
      expect(v[1]).not.toContain("PVID");
      expect(ping(c1, addrOf(c2, 4))).toBe(true);
      expect(ping(c1, addrOf(c3, 4))).toBe(false);
    },
    T,
  );

  test.skipIf(!!why)(
    skipLabel("preserveDefaultVlan false removes the default vlan from the port", why),
    async () => {
      const w = makeWorld();
      const c1 = makeNetns("c");
      const r = await add(w, c1, bridgeConf(w, { vlan: 100, preserveDefaultVlan: false }));
      expect(Object.keys(vlansOf(w.host, r.interfaces[1].name))).toEqual(["100"]);
    },
    T,
  );

  test.skipIf(!!why)(
    skipLabel("vlanTrunk: tagged ids and ranges; native vlan is the default one or `vlan`", why),
    async () => {
      const w = makeWorld();
      const [c1, c2, c3] = [makeNetns("c"), makeNetns("c"), makeNetns("c")];
      const trunk = [{ id: 10 }, { minID: 20, maxID: 22 }];
      const r1 = await add(w, c1, bridgeConf(w, { vlanTrunk: trunk }), { containerID: "a" });
      const v1 = vlansOf(w.host, r1.interfaces[1].name);
      expect(Object.keys(v1).map(Number)).toEqual([1, 10, 20, 21, 22]);
      expect(v1[10]).toEqual([]);
      expect(v1[1]).toEqual(expect.arrayContaining(["PVID", "Egress Untagged"]));

      const r2 = await add(w, c2, bridgeConf(w, { vlanTrunk: trunk, preserveDefaultVlan: false }), {
        containerID: "b",
      });
      expect(Object.keys(vlansOf(w.host, r2.interfaces[1].name)).map(Number)).toEqual([10, 20, 21, 22]);

      const r3 = await add(w, c3, bridgeConf(w, { vlan: 20, vlanTrunk: trunk, preserveDefaultVlan: false }), {
        containerID: "c",
      });
      const v3 = vlansOf(w.host, r3.interfaces[1].name);
      expect(Object.keys(v3).map(Number)).toEqual([10, 20, 21, 22]);
      expect(v3[20]).toEqual(expect.arrayContaining(["PVID", "Egress Untagged"]));
    },
    T,
  );

  test.skipIf(!!why)(
    skipLabel("vlan + isGateway: the gateway lives on <bridge>.<vlan>, reachable from the vlan", why),
    async () => {
      const w = makeWorld();
      const c1 = makeNetns("c");
      const net = subnet();
      const r = await add(w, c1, bridgeConf(w, { vlan: 100, isGateway: true }, [[{ subnet: net.cidr }]]));
      expect(r.interfaces[3].name).toBe("br0.100");
      const gw = globalAddrs(w.host, "br0.100", 4).map((a) => a.local);
      expect(gw).toEqual([`${net.prefix}.1`]);
      expect(ping(c1, `${net.prefix}.1`)).toBe(true);
    },
    T,
  );

  test.skipIf(!why)(
    skipLabel(
      "without kernel VLAN filtering, vlan options fail clearly and leave nothing behind",
      why ? undefined : "the kernel has VLAN filtering",
    ),
    async () => {
      const w = makeWorld();
      const c1 = makeNetns("c");
      for (const extra of [{ vlan: 100 }, { vlanTrunk: [{ id: 10 }] }]) {
        const r = await call(w, "ADD", c1, bridgeConf(w, extra));
        expect(r.code).toBe(1);
        expect(r.json.code).toBe(7);
        expect(r.json.msg).toContain("kernel lacks bridge VLAN filtering");
        expect(reservations(w)).toEqual([]);
        expect(portsOf(w.host)).toEqual([]);
        expect(linkNames(c1)).toEqual(["lo"]);
      }
    },
    T,
  );
});
