import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { cleanupAll, tempDir } from "../../../helpers/netns.ts";
import { BUN } from "../../_run.ts";
import { addContainer, ipamConf, MAIN, runDhcp, startDaemon, startServer, withDhcpBed } from "./fixture.ts";

afterAll(cleanupAll);

describe("dhcp plugin + daemon against dnsmasq", () => {
  test("ADD gets a lease with address, router, routes and DNS; DEL releases it", async () => {
    await withDhcpBed(
      {
        server: {
          extra: [
            "--dhcp-option=option:router,10.$N.0.1",
            "--dhcp-option=option:dns-server,10.$N.0.53,10.$N.0.54",
            "--dhcp-option=option:domain-name,example.test",
          ],
        },
      },
      async ({ srv, d, c }) => {
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
        expect(
          (await runDhcp({ command: "DEL", containerID: "ctr1", netns: c.path, config: conf })).code,
        ).toBe(0);
      },
    );
  }, 60_000);
});

async function until(what: string, cond: () => boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(50);
  }
}

describe("options", () => {
  test("option 121 replaces router and option 33; request/provide; priority", async () => {
    await withDhcpBed(
      {
        server: {
          extra: [
            "--dhcp-option=option:router,10.$N.0.1",
            "--dhcp-option=option:classless-static-route,10.200.0.0/16,10.$N.0.254,0.0.0.0/0,10.$N.0.1",
            "--dhcp-option=option:dns-server,10.$N.0.53",
            "--dhcp-option=option:domain-search,eng.example.test,example.test",
          ],
        },
      },
      async ({ srv, d, c }) => {
        const conf = ipamConf(
          d.socket,
          { provide: [{ option: "host-name", fromArg: "K8S_POD_NAME" }], priority: 7 },
          "dhcptest",
          "1.1.0",
        );
        const add = await runDhcp({
          command: "ADD",
          containerID: "ctr121",
          netns: c.path,
          config: conf,
          args: "IgnoreUnknown=1;K8S_POD_NAME=web-0",
        });
        expect(add.code).toBe(0);
        const gw = srv.gw;
        const p = gw.split(".")[1];
        expect(add.json.routes).toEqual([
          { dst: "10.200.0.0/16", gw: `10.${p}.0.254`, priority: 7 },
          { dst: "0.0.0.0/0", gw, priority: 7 },
        ]);
        expect(add.json.dns.search).toEqual(["eng.example.test", "example.test"]);
        const ip = add.json.ips[0].address.split("/")[0];
        // the hostname we provided is in dnsmasq's lease file
        expect(srv.leases().find((l) => l[2] === ip)?.[3]).toBe("web-0");

        // skipDefault with only the subnet mask: no router, no DNS in the answer
        const c2 = addContainer(srv);
        const bare = await runDhcp({
          command: "ADD",
          containerID: "ctrbare",
          netns: c2.path,
          config: ipamConf(d.socket, { request: [{ skipDefault: true }, { option: "subnet-mask" }] }),
        });
        expect(bare.code).toBe(0);
        expect(bare.json.ips[0].gateway).toBeUndefined();
        expect(bare.json.dns ?? {}).toEqual({});
        expect(bare.json.routes ?? []).toEqual([]);
        c2.cleanup();

        const badOpt = await runDhcp({
          command: "ADD",
          containerID: "ctrbad",
          netns: c.path,
          config: ipamConf(d.socket, { request: [{ option: "no-such-option" }] }),
        });
        expect(badOpt.code).toBe(1);
        expect(badOpt.json.code).toBe(7);
        expect(badOpt.json.msg).toContain("no-such-option");
      },
    );
  }, 60_000);
});

describe("address conflicts", () => {
  test("-arpcheck: an address another host answers for is DECLINEd and another one leased", async () => {
    const hex = [0, ...new TextEncoder().encode("decl/dhcptest/eth0")].map((b) =>
      b.toString(16).padStart(2, "0"),
    );
    // dnsmasq wants to give this client .150 — which a squatter already uses (dnsmasq runs with --no-ping)
    const srv = await startServer({
      extra: ["--dhcp-option=option:router,10.$N.0.1", `--dhcp-host=id:${hex.join(":")},10.$N.0.150`],
    });
    const taken = srv.gw.replace(/1$/, "150");
    const d = await startDaemon({ extra: ["-arpcheck", "300ms"] });
    const sq = addContainer(srv);
    const c = addContainer(srv);
    try {
      sq.ip("addr", "add", `${taken}/24`, "dev", "eth0");
      sq.ip("link", "set", "eth0", "up");
      await until("the squatter's link", () => sq.ip("link", "show", "eth0")[0].operstate === "UP", 5000);
      const add = await runDhcp({
        command: "ADD",
        containerID: "decl",
        netns: c.path,
        config: ipamConf(d.socket),
      });
      expect(add.code).toBe(0);
      const got = add.json.ips[0].address.split("/")[0];
      expect(got).not.toBe(taken);
      expect(srv.log()).toContain(`DHCPDECLINE(br0) ${taken} ${c.mac}`);
      expect(d.output()).toContain(`${taken} is in use by ${sq.mac}: declined`);
      expect(srv.leases().map((l) => l[2])).toEqual([got]);
    } finally {
      await d.stop();
      sq.cleanup();
      c.cleanup();
      srv.stop();
    }
  }, 60_000);
});

describe("lease upkeep", () => {
  // dnsmasq's shortest lease is 2 min and it never sends T1 below 1 min: this test waits ~1 min.
  test("kill -9 of the daemon: the restarted daemon renews the lease at T1 and DEL releases it", async () => {
    await withDhcpBed(
      { server: { leaseTime: "2m", extra: ["--dhcp-option=option:router,10.$N.0.1"] } },
      async (b) => {
        const { srv, c, dir, restart } = b;
        let { d } = b;
        const conf = ipamConf(d.socket);
        const add = await runDhcp({ command: "ADD", containerID: "ctrrenew", netns: c.path, config: conf });
        expect(add.code).toBe(0);
        const ip = add.json.ips[0].address.split("/")[0];
        const expiry = () => Number(srv.leases().find((l) => l[2] === ip)?.[0] ?? 0);
        const first = expiry();
        expect(first).toBeGreaterThan(0);
        expect(readdirSync(join(dir, "state"))).toHaveLength(1);
        // the container uses the address (as a main plugin would have set it up)
        c.ip("addr", "add", add.json.ips[0].address, "dev", "eth0");
        c.ip("link", "set", "eth0", "up");

        await d.kill9();
        d = await restart();
        expect(d.output()).toContain(`resuming lease ${ip}`);
        // T1 = 1 min: dnsmasq sees the renewal (a unicast REQUEST) and moves the expiry on
        await until("a renewal by the restarted daemon", () => expiry() > first, 80_000);
        expect(d.output()).toContain(`renewing lease ${ip}`);
        expect(
          srv.log().match(new RegExp(`DHCPACK\\(br0\\) ${ip.replaceAll(".", "\\.")} ${c.mac}`, "g")),
        ).toHaveLength(2);
        // the container kept its address and still reaches the server with it
        expect(c.run(["ping", "-c", "1", "-W", "2", srv.gw]).code).toBe(0);
        expect(
          srv
            .leases()
            .filter((l) => l[1] === c.mac)
            .map((l) => l[2]),
        ).toEqual([ip]);

        const del = await runDhcp({ command: "DEL", containerID: "ctrrenew", netns: c.path, config: conf });
        expect(del.code).toBe(0);
        await until("the release", () => srv.log().includes(`DHCPRELEASE(br0) ${ip} ${c.mac}`), 5000);
        await until("the lease to leave the file", () => expiry() === 0, 5000);
        expect(readdirSync(join(dir, "state"))).toHaveLength(0);
      },
    );
  }, 120_000);

  test("a restarted daemon picks up each state from the lease file: RENEWING, REBINDING, expired", async () => {
    await withDhcpBed({ server: { extra: ["--dhcp-option=option:router,10.$N.0.1"] } }, async (b) => {
      const { srv, c, restart } = b;
      let { d } = b;
      const conf = ipamConf(d.socket);
      const add = await runDhcp({ command: "ADD", containerID: "states", netns: c.path, config: conf });
      expect(add.code).toBe(0);
      const ip = add.json.ips[0].address.split("/")[0];
      const file = join(d.stateDir, readdirSync(d.stateDir)[0]!);
      const acks = () =>
        srv
          .log()
          .split("\n")
          .filter((l) => l.includes(`DHCPACK(br0) ${ip} ${c.mac}`)).length;
      const past = new Date(Date.now() - 1000).toISOString();
      // Edits the saved lease as a daemon killed at that point of the lease would have left it.
      const restartWith = async (edit: Record<string, string>) => {
        await d.kill9();
        writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(file, "utf8")), ...edit }));
        d = await restart();
      };

      await restartWith({ renewAt: past });
      await until("the renewal", () => acks() === 2);
      expect(d.output()).toContain(`renewing lease ${ip}`);
      await until(
        "the renewed lease on disk",
        () => Date.parse(JSON.parse(readFileSync(file, "utf8")).renewAt) > Date.now(),
      );

      // rebinding is a broadcast: it needs no server address
      await restartWith({ renewAt: past, rebindAt: past, serverMac: "02:00:00:00:00:99" });
      await until("the rebinding", () => acks() === 3);
      expect(d.output()).toContain(`rebinding ${ip}`);
      await until(
        "the rebound lease on disk",
        () => JSON.parse(readFileSync(file, "utf8")).serverMac !== "02:00:00:00:00:99",
      );

      // expired: a DISCOVER that asks for the address again, and gets it
      await restartWith({ renewAt: past, rebindAt: past, expireAt: past });
      await until("the new lease", () => acks() === 4);
      expect(d.output()).toContain(`lease ${ip} expired, acquiring a new one`);
      // dnsmasq shows the address a DISCOVER asks for (option 50) before the MAC
      const discovers = srv
        .log()
        .split("\n")
        .filter((l) => l.includes("DHCPDISCOVER(br0)") && l.includes(c.mac));
      expect(discovers).toHaveLength(2);
      expect(discovers[1]).toContain(`DHCPDISCOVER(br0) ${ip} ${c.mac}`);
      await until(
        "the new lease on disk",
        () => Date.parse(JSON.parse(readFileSync(file, "utf8")).expireAt) > Date.now(),
      );
      expect(JSON.parse(readFileSync(file, "utf8")).ip).toBe(ip);

      expect(
        (await runDhcp({ command: "DEL", containerID: "states", netns: c.path, config: conf })).code,
      ).toBe(0);
      await until("the release", () => srv.log().includes(`DHCPRELEASE(br0) ${ip} ${c.mac}`), 5000);
    });
  }, 60_000);

  test("a DHCPNAK to the renewal ends the lease: the daemon starts over and gets a new one", async () => {
    await withDhcpBed(
      {
        server: {
          extra: ["--dhcp-option=option:router,10.$N.0.1", "--dhcp-authoritative"],
        },
      },
      async (b) => {
        const { srv, c, restart } = b;
        let { d } = b;
        const conf = ipamConf(d.socket);
        const add = await runDhcp({ command: "ADD", containerID: "nak", netns: c.path, config: conf });
        expect(add.code).toBe(0);
        const file = join(d.stateDir, readdirSync(d.stateDir)[0]!);
        // a lease dnsmasq never gave (outside its range), due for renewal
        const bogus = srv.gw.replace(/1$/, "50");
        await d.kill9();
        const saved = JSON.parse(readFileSync(file, "utf8"));
        writeFileSync(
          file,
          JSON.stringify({ ...saved, ip: bogus, renewAt: new Date(Date.now() - 1000).toISOString() }),
        );
        d = await restart();
        await until("the NAK", () => srv.log().includes(`DHCPNAK(br0) ${bogus} ${c.mac}`));
        await until("a new lease on disk", () => JSON.parse(readFileSync(file, "utf8")).ip !== bogus);
        expect(d.output()).toContain(`DHCPNAK for ${bogus}`);
        const now = JSON.parse(readFileSync(file, "utf8")).ip;
        expect(srv.leases().map((l) => l[2])).toContain(now);
      },
    );
  }, 60_000);

  test("16 parallel ADDs get 16 distinct leases; 16 DELs release them all", async () => {
    const srv = await startServer({ extra: ["--dhcp-option=option:router,10.$N.0.1"] });
    const d = await startDaemon();
    const cs = Array.from({ length: 16 }, () => addContainer(srv));
    try {
      const conf = ipamConf(d.socket);
      const adds = await Promise.all(
        cs.map((c, i) => runDhcp({ command: "ADD", containerID: `par${i}`, netns: c.path, config: conf })),
      );
      for (const a of adds) expect(a.code).toBe(0);
      const ips = adds.map((a) => a.json.ips[0].address);
      expect(new Set(ips).size).toBe(16);
      expect(srv.leases()).toHaveLength(16);
      const dels = await Promise.all(
        cs.map((c, i) => runDhcp({ command: "DEL", containerID: `par${i}`, netns: c.path, config: conf })),
      );
      for (const x of dels) expect(x.code).toBe(0);
      await until("16 releases", () => srv.leases().length === 0, 5000);
      expect(srv.log().match(/DHCPRELEASE/g)).toHaveLength(16);
    } finally {
      await d.stop();
      for (const c of cs) c.cleanup();
      srv.stop();
    }
  }, 90_000);
});

describe("CHECK, GC, STATUS and a missing daemon", () => {
  test("CHECK wants the address on the interface; GC releases attachments not listed; STATUS", async () => {
    const srv = await startServer({ extra: ["--dhcp-option=option:router,10.$N.0.1"] });
    const d = await startDaemon();
    const a = addContainer(srv);
    const b = addContainer(srv);
    try {
      const conf = ipamConf(d.socket);
      const ra = await runDhcp({ command: "ADD", containerID: "gca", netns: a.path, config: conf });
      const rb = await runDhcp({ command: "ADD", containerID: "gcb", netns: b.path, config: conf });
      expect(ra.code + rb.code).toBe(0);
      const withPrev = { ...conf, prevResult: ra.json };
      const check1 = await runDhcp({ command: "CHECK", containerID: "gca", netns: a.path, config: withPrev });
      expect(check1.code).toBe(1);
      expect(check1.json.msg).toContain("is not on eth0");
      a.ip("addr", "add", ra.json.ips[0].address, "dev", "eth0");
      const check2 = await runDhcp({ command: "CHECK", containerID: "gca", netns: a.path, config: withPrev });
      expect(check2.stdout).toBe("");
      expect(check2.code).toBe(0);
      const unknown = await runDhcp({
        command: "CHECK",
        containerID: "nope",
        netns: a.path,
        config: withPrev,
      });
      expect(unknown.json.code).toBe(3);

      const gcConf = {
        ...conf,
        cniVersion: "1.1.0",
        "cni.dev/valid-attachments": [{ containerID: "gca", ifname: "eth0" }],
      };
      const gc = await runDhcp({ command: "GC", containerID: "", netns: "", config: gcConf });
      expect(gc.code).toBe(0);
      const ipb = rb.json.ips[0].address.split("/")[0];
      const ipa = ra.json.ips[0].address.split("/")[0];
      await until("GC's release", () => !srv.leases().some((l) => l[2] === ipb), 5000);
      expect(srv.leases().some((l) => l[2] === ipa)).toBe(true);

      const st = await runDhcp({
        command: "STATUS",
        containerID: "",
        netns: "",
        config: { ...conf, cniVersion: "1.1.0" },
      });
      expect(st.code).toBe(0);
      // a second daemon on the same socket refuses to start
      await expect(startDaemon({ dir: d.socket.replace(/\/dhcp\.sock$/, "") })).rejects.toThrow(
        /another dhcp daemon/,
      );
    } finally {
      await d.stop();
      a.cleanup();
      b.cleanup();
      srv.stop();
    }
    // the daemon is gone: STATUS fails with 50, ADD with a one-line hint
    const conf = ipamConf(d.socket, {}, "dhcptest", "1.1.0");
    const st = await runDhcp({ command: "STATUS", containerID: "", netns: "", config: conf });
    expect(st.code).toBe(1);
    expect(st.json.code).toBe(50);
    const add = await runDhcp({ command: "ADD", containerID: "x", netns: "/proc/self/ns/net", config: conf });
    expect(add.json.code).toBe(11);
    expect(add.json.msg).toContain("dhcp daemon");
    expect(add.json.msg).not.toContain("\n");
  }, 60_000);
});

describe("daemon lifecycle", () => {
  test("SIGTERM releases nothing and removes socket and pidfile; the next daemon's DEL releases", async () => {
    const dir = tempDir("tscni-dhcpd-").path;
    const pidfile = join(dir, "dhcp.pid");
    const opts = {
      dir,
      server: { extra: ["--dhcp-option=option:router,10.$N.0.1"] },
      daemon: { extra: ["-pidfile", pidfile] },
    };
    await withDhcpBed(opts, async (b) => {
      const { srv, c, restart } = b;
      let { d } = b;
      expect(readFileSync(pidfile, "utf8")).toBe(String(d.proc.pid));
      const conf = ipamConf(d.socket);
      const add = await runDhcp({ command: "ADD", containerID: "term", netns: c.path, config: conf });
      expect(add.code).toBe(0);
      const ip = add.json.ips[0].address.split("/")[0];
      expect(await d.stop()).toBe(0);
      expect(existsSync(d.socket)).toBe(false);
      expect(existsSync(pidfile)).toBe(false);
      expect(readdirSync(d.stateDir)).toHaveLength(1);
      expect(srv.log()).not.toContain("DHCPRELEASE");
      expect(srv.leases().map((l) => l[2])).toEqual([ip]);

      d = await restart();
      const del = await runDhcp({ command: "DEL", containerID: "term", netns: c.path, config: conf });
      expect(del.code).toBe(0);
      await until("the release", () => srv.log().includes(`DHCPRELEASE(br0) ${ip} ${c.mac}`), 5000);
    });
  }, 60_000);

  test("a lease that cannot be saved is released and ADD fails with code 5", async () => {
    await withDhcpBed(
      { server: { extra: ["--dhcp-option=option:router,10.$N.0.1"] } },
      async ({ srv, d, c }) => {
        rmSync(d.stateDir, { recursive: true });
        writeFileSync(d.stateDir, "not a directory");
        const add = await runDhcp({
          command: "ADD",
          containerID: "nosave",
          netns: c.path,
          config: ipamConf(d.socket),
        });
        expect(add.code).toBe(1);
        expect(add.json.code).toBe(5);
        expect(add.json.msg).toContain("saving the lease");
        await until("the release", () => srv.log().includes("DHCPRELEASE(br0)"), 5000);
        expect(srv.leases()).toHaveLength(0);
      },
    );
  }, 60_000);

  test("no DHCP server: ADD fails after -resendtimeout, having retransmitted; nothing is kept", async () => {
    const srv = await startServer();
    srv.proc.kill("SIGKILL"); // the bridge stays, the server is gone
    await srv.proc.exited;
    // 4 s: the first retransmission comes 2 s ± 1 s after the first DISCOVER
    const d = await startDaemon({ extra: ["-resendtimeout", "4s"] });
    const c = addContainer(srv);
    try {
      // no IPv6 chatter: every frame eth0 sends is one of our DISCOVERs
      expect(
        c.run(["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"])
          .code,
      ).toBe(0);
      const t0 = Date.now();
      const add = await runDhcp({
        command: "ADD",
        containerID: "nosrv",
        netns: c.path,
        config: ipamConf(d.socket),
      });
      const took = Date.now() - t0;
      expect(add.code).toBe(1);
      expect(add.json.msg).toContain("DHCPDISCOVER: no answer from a DHCP server");
      expect(took).toBeGreaterThanOrEqual(3900);
      expect(took).toBeLessThan(10_000);
      expect(readdirSync(d.stateDir)).toEqual([]);
      // the first DISCOVER and at least one retransmission (2 s ± 1 s later) left eth0
      expect(c.ip("-s", "link", "show", "eth0")[0].stats64.tx.packets).toBeGreaterThanOrEqual(2);
    } finally {
      await d.stop();
      c.cleanup();
      srv.stop();
    }
  }, 60_000);

  test("-hostprefix: the daemon opens netns and socket under the prefix", async () => {
    // /proc/self/root is "/" seen through a prefix: the socket lands on the same file
    const opts = {
      server: { extra: ["--dhcp-option=option:router,10.$N.0.1"] },
      daemon: { extra: ["-hostprefix", "/proc/self/root"] },
    };
    await withDhcpBed(opts, async ({ srv, d, c }) => {
      expect(d.output()).toContain(`listening on /proc/self/root${d.socket}`);
      const add = await runDhcp({
        command: "ADD",
        containerID: "pfx",
        netns: c.path,
        config: ipamConf(d.socket),
      });
      expect(add.code).toBe(0);
      expect(JSON.parse(readFileSync(join(d.stateDir, readdirSync(d.stateDir)[0]!), "utf8")).netns).toBe(
        `/proc/self/root${c.path}`,
      );
      expect(
        (await runDhcp({ command: "DEL", containerID: "pfx", netns: c.path, config: ipamConf(d.socket) }))
          .code,
      ).toBe(0);
      await until("the release", () => srv.leases().length === 0, 5000);
    });
  }, 60_000);

  test.skipIf(!existsSync("/usr/bin/systemd-socket-activate"))(
    "systemd socket activation (LISTEN_FDS)",
    async () => {
      const dir = tempDir("tscni-dhcpd-").path;
      const socket = join(dir, "act.sock");
      const proc = Bun.spawn(
        ["systemd-socket-activate", "-l", socket, BUN, MAIN, "daemon", "-statedir", join(dir, "state")],
        { stdout: "ignore", stderr: "pipe" },
      );
      try {
        await until("the activation socket", () => existsSync(socket), 10_000);
        const conf = ipamConf(socket, {}, "dhcptest", "1.1.0");
        const st = await runDhcp({ command: "STATUS", containerID: "", netns: "", config: conf });
        expect(st.stdout + st.stderr).toBe("");
        expect(st.code).toBe(0);
      } finally {
        proc.kill("SIGTERM");
        await proc.exited;
      }
      expect(await new Response(proc.stderr).text()).toContain("listening on fd 3 (socket activation)");
    },
    30_000,
  );
});
