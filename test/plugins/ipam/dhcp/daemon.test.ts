import { afterAll, describe, expect, test } from "bun:test";
import { cleanupAll } from "../../../helpers/netns.ts";
import { addContainer, ipamConf, runDhcp, startDaemon, startServer } from "./fixture.ts";

afterAll(cleanupAll);

describe("dhcp plugin + daemon against dnsmasq", () => {
  test("ADD gets a lease with address, router, routes and DNS; DEL releases it", async () => {
    const srv = await startServer({
      extra: [
        "--dhcp-option=option:router,10.$N.0.1",
        "--dhcp-option=option:dns-server,10.$N.0.53,10.$N.0.54",
        "--dhcp-option=option:domain-name,example.test",
      ],
    });
    const d = await startDaemon();
    const c = addContainer(srv);
    try {
      const conf = ipamConf(d.socket);
      const add = await runDhcp({ command: "ADD", containerID: "ctr1", netns: c.path, config: conf });
      expect(add.stderr).toBe("");
      expect(add.code).toBe(0);
      const r = add.json;
      expect(r.cniVersion).toBe("1.0.0");
      expect(r.ips).toHaveLength(1);
      expect(r.ips[0].address).toMatch(new RegExp(`^10\\.${srv.gw.split(".")[1]}\\.0\\.1\\d\\d/24$`));
      expect(r.ips[0].gateway).toBe(srv.gw);
      expect(r.routes).toEqual([{ dst: "0.0.0.0/0", gw: srv.gw }]);
      expect(r.dns.nameservers).toEqual([srv.gw.replace(/1$/, "53"), srv.gw.replace(/1$/, "54")]);
      expect(r.dns.domain).toBe("example.test");
      const ip = r.ips[0].address.split("/")[0];
      const lease = srv.leases().find((l) => l[2] === ip);
      expect(lease?.[1]).toBe(c.mac);
      // client id: 0, then containerID/net/ifname (dnsmasq prints it as hex bytes)
      const cid = [0, ...new TextEncoder().encode("ctr1/dhcptest/eth0")]
        .map((b) => b.toString(16).padStart(2, "0"))
        .join(":");
      expect(lease?.[4]).toBe(cid);
      // a second ADD returns the same lease
      const again = await runDhcp({ command: "ADD", containerID: "ctr1", netns: c.path, config: conf });
      expect(again.json.ips[0].address).toBe(r.ips[0].address);

      const del = await runDhcp({ command: "DEL", containerID: "ctr1", netns: c.path, config: conf });
      expect(del.code).toBe(0);
      const deadline = Date.now() + 5000;
      while (srv.leases().some((l) => l[2] === ip) && Date.now() < deadline) await Bun.sleep(50);
      expect(srv.leases().some((l) => l[2] === ip)).toBe(false);
      expect(srv.log()).toContain(`DHCPRELEASE(br0) ${ip} ${c.mac}`);
      // DEL again: idempotent
      expect((await runDhcp({ command: "DEL", containerID: "ctr1", netns: c.path, config: conf })).code).toBe(
        0,
      );
    } finally {
      await d.stop();
      c.cleanup();
      srv.stop();
    }
  }, 60_000);
});
