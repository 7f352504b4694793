/** The bridge plugin's DEL, CHECK and STATUS on the real kernel (see bridge.test.ts for ADD). */
import { afterEach, describe, expect, test } from "bun:test";
import { cleanupAll, makeNetns } from "../../helpers/netns.ts";
import {
  add,
  bridgeConf,
  call,
  linkNames,
  makeWorld,
  portsOf,
  reservations,
  subnet,
} from "./bridge-helpers.ts";

afterEach(() => cleanupAll());

const T = 30_000;

describe("bridge DEL / CHECK / STATUS", () => {
  test(
    "DEL removes the veth and releases the address; DEL twice succeeds",
    async () => {
      const w = makeWorld();
      const c1 = makeNetns("c");
      const conf = bridgeConf(w);
      await add(w, c1, conf);
      expect(reservations(w)).toHaveLength(1);
      for (let i = 0; i < 2; i++) {
        const d = await call(w, "DEL", c1, conf);
        expect(d.code).toBe(0);
      }
      expect(portsOf(w.host)).toEqual([]);
      expect(linkNames(c1)).toEqual(["lo"]);
      expect(reservations(w)).toEqual([]);
      // The bridge stays for other containers.
      expect(w.host.ip("link", "show", "br0")).toHaveLength(1);
    },
    T,
  );

  test(
    "DEL with the netns already deleted (or no netns at all) succeeds and releases the address",
    async () => {
      const w = makeWorld();
      const c1 = makeNetns("c");
      const conf = bridgeConf(w);
      await add(w, c1, conf);
      const path = c1.path;
      c1.cleanup();
      expect((await call(w, "DEL", path, conf)).code).toBe(0);
      expect(reservations(w)).toEqual([]);
      expect((await call(w, "DEL", "", conf)).code).toBe(0);
      expect(portsOf(w.host)).toEqual([]);
    },
    T,
  );

  test(
    "CHECK passes on what ADD made and names what differs",
    async () => {
      const w = makeWorld();
      const c1 = makeNetns("c");
      const conf = bridgeConf(w, { isDefaultGateway: true });
      const r = await add(w, c1, conf);
      const ok = await call(w, "CHECK", c1, { ...conf, prevResult: r });
      expect(ok.stdout).toBe("");
      expect(ok.code).toBe(0);

      const wrongMac = structuredClone(r);
      wrongMac.interfaces[2].mac = "0a:00:00:00:00:99";
      const m = await call(w, "CHECK", c1, { ...conf, prevResult: wrongMac });
      expect(m.code).toBe(1);
      expect(m.json.msg).toContain("doesn't match container Mac");

      const promisc = await call(w, "CHECK", c1, { ...conf, promiscMode: true, prevResult: r });
      expect(promisc.json.msg).toContain("Promisc Mode true doesn't match");

      c1.run(["ip", "route", "del", "default"]);
      const noRoute = await call(w, "CHECK", c1, { ...conf, prevResult: r });
      expect(noRoute.code).toBe(1);
      expect(noRoute.json.msg).toContain("Expected Route 0.0.0.0/0");

      c1.run(["ip", "addr", "flush", "dev", "eth0"]);
      const noAddr = await call(w, "CHECK", c1, { ...conf, prevResult: r });
      expect(noAddr.json.msg).toContain(`Failed to match addr ${r.ips[0].address}`);

      w.host.run(["ip", "link", "set", r.interfaces[1].name, "nomaster"]);
      const detached = await call(w, "CHECK", c1, { ...conf, prevResult: r });
      expect(detached.json.msg).toContain("not a port of bridge br0");

      const missing = await call(w, "CHECK", c1, conf);
      expect(missing.json.msg).toContain("Required prevResult missing");
    },
    T,
  );

  test(
    "STATUS forwards to IPAM: available, then not once the range is used up",
    async () => {
      const w = makeWorld();
      const c1 = makeNetns("c");
      const net = subnet();
      const conf = bridgeConf(w, {}, [
        [{ subnet: net.cidr, rangeStart: `${net.prefix}.10`, rangeEnd: `${net.prefix}.10` }],
      ]);
      expect((await call(w, "STATUS", c1, conf)).code).toBe(0);
      await add(w, c1, conf);
      const s = await call(w, "STATUS", c1, conf);
      expect(s.code).toBe(1);
      expect(s.json.code).toBe(50);
    },
    T,
  );
});
