import { describe, expect, test } from "bun:test";
import { clientIdOption, leaseTimes, retransmitDelays } from "../../../../src/plugins/ipam/dhcp/client.ts";
import {
  clientIDFor,
  DEFAULT_REQUEST,
  loadDhcpConf,
  prepareOptions,
  resultFromAck,
} from "../../../../src/plugins/ipam/dhcp/config.ts";
import { parseDaemonFlags, parseGoDuration } from "../../../../src/plugins/ipam/dhcp/daemon.ts";
import {
  encodeClasslessRoutes,
  MsgType,
  newRequest,
  Opt,
  optU32,
} from "../../../../src/plugins/ipam/dhcp/message.ts";
import { LeaseStore } from "../../../../src/plugins/ipam/dhcp/store.ts";
import { tempDir } from "../../../helpers/netns.ts";

const conf = (ipam: object) =>
  JSON.stringify({ cniVersion: "1.0.0", name: "net", type: "macvlan", ipam: { type: "dhcp", ...ipam } });

describe("config", () => {
  test("defaults and daemonSocketPath", () => {
    expect(loadDhcpConf(conf({})).socketPath).toBe("/run/cni/dhcp.sock");
    expect(loadDhcpConf(conf({ daemonSocketPath: "/x.sock" })).socketPath).toBe("/x.sock");
    expect(() => loadDhcpConf(JSON.stringify({ name: "n" }))).toThrow(/ipam/);
    expect(() => loadDhcpConf(conf({ request: "x" }))).toThrow(/list of objects/);
    expect(() => loadDhcpConf(conf({ priority: -1 }))).toThrow(/priority/);
  });

  test("prepareOptions: provide (value, fromArg), request with and without skipDefault", () => {
    const c = loadDhcpConf(
      conf({
        provide: [
          { option: "host-name", fromArg: "K8S_POD_NAME" },
          { option: "60", value: "tscni" },
        ],
        request: [{ option: "42" }],
      }),
    );
    const o = new Map(prepareOptions(c, "IgnoreUnknown=1;K8S_POD_NAME=web-0"));
    expect(new TextDecoder().decode(o.get(Opt.HostName))).toBe("web-0");
    expect(new TextDecoder().decode(o.get(Opt.ClassIdentifier))).toBe("tscni");
    expect([...o.get(Opt.ParameterRequestList)!]).toEqual([42, ...DEFAULT_REQUEST]);
    const skip = loadDhcpConf(conf({ request: [{ skipDefault: true }, { option: "subnet-mask" }] }));
    expect([...new Map(prepareOptions(skip, "")).get(Opt.ParameterRequestList)!]).toEqual([1]);
    const none = loadDhcpConf(conf({ request: [{ skipDefault: true }] }));
    expect(new Map(prepareOptions(none, "")).has(Opt.ParameterRequestList)).toBe(false);
    expect(() => prepareOptions(loadDhcpConf(conf({ request: [{ option: "300" }] })), "")).toThrow(
      /Can not parse/,
    );
    expect(() =>
      prepareOptions(loadDhcpConf(conf({ provide: [{ option: "12", value: "x".repeat(256) }] })), ""),
    ).toThrow(/too long/);
  });

  test("client id like upstream: containerID/net/ifname, type 0, at most 254", () => {
    expect(clientIDFor("c", "net", "eth0")).toBe("c/net/eth0");
    expect(clientIDFor("c".repeat(300), "n", "e")).toHaveLength(254);
    expect([...clientIdOption("ab")]).toEqual([0, 97, 98]);
  });

  test("result: mask → prefix, router → gateway and default route; 121 wins; priority", () => {
    const ack = newRequest({ xid: 1, chaddr: "02:00:00:00:00:01", type: MsgType.Ack });
    ack.yiaddr = "10.1.2.3";
    ack.options.set(Opt.SubnetMask, Uint8Array.of(255, 255, 252, 0));
    ack.options.set(Opt.Router, Uint8Array.of(10, 1, 0, 1));
    ack.options.set(Opt.StaticRoutes, Uint8Array.of(172, 16, 0, 0, 10, 1, 0, 9));
    expect(resultFromAck(ack, 0)).toEqual({
      cniVersion: "1.1.0",
      ips: [{ address: "10.1.2.3/22", gateway: "10.1.0.1" }],
      routes: [
        { dst: "172.16.0.0/16", gw: "10.1.0.9" },
        { dst: "0.0.0.0/0", gw: "10.1.0.1" },
      ],
    });
    ack.options.set(
      Opt.ClasslessStaticRoutes,
      encodeClasslessRoutes([
        { dst: "10.9.0.0/16", gw: "0.0.0.0" },
        { dst: "0.0.0.0/0", gw: "10.1.0.2" },
      ]),
    );
    expect(resultFromAck(ack, 5).routes).toEqual([
      { dst: "10.9.0.0/16", gw: "0.0.0.0", scope: 253, priority: 5 },
      { dst: "0.0.0.0/0", gw: "10.1.0.2", priority: 5 },
    ]);
    ack.options.delete(Opt.SubnetMask);
    expect(() => resultFromAck(ack, 0)).toThrow(/Subnet Mask/);
  });

  test("lease times: T1/T2 from the ACK, else 1/2 and 85 % like upstream", () => {
    const ack = newRequest({ xid: 1, chaddr: "02:00:00:00:00:01", type: MsgType.Ack });
    ack.options.set(Opt.LeaseTime, optU32(1000));
    expect(leaseTimes(ack, 0)).toEqual({
      boundAt: 0,
      renewAt: 500_000,
      rebindAt: 850_000,
      expireAt: 1_000_000,
    });
    ack.options.set(Opt.RenewalTime, optU32(10));
    ack.options.set(Opt.RebindingTime, optU32(20));
    expect(leaseTimes(ack, 0).renewAt).toBe(10_000);
    expect(leaseTimes(ack, 0).rebindAt).toBe(20_000);
  });

  test("retransmission: four fast 2 s ± 1 s, then 4 s doubling up to resendmax", () => {
    const g = retransmitDelays(16_000);
    const d = Array.from({ length: 8 }, () => g.next().value as number);
    for (const x of d.slice(0, 4)) {
      expect(x).toBeGreaterThanOrEqual(1000);
      expect(x).toBeLessThanOrEqual(3000);
    }
    const bases = [4000, 8000, 16000, 16000];
    d.slice(4).forEach((x, i) => {
      expect(Math.abs(x - bases[i]!)).toBeLessThanOrEqual(1000);
    });
  });
});

describe("daemon flags", () => {
  test("Go flag syntax and durations", () => {
    const o = parseDaemonFlags([
      "-socketpath",
      "/a.sock",
      "--pidfile=/p",
      "-broadcast",
      "-timeout",
      "1m30s",
      "-resendmax=500ms",
    ]);
    expect(o.socketPath).toBe("/a.sock");
    expect(o.pidfile).toBe("/p");
    expect(o.broadcast).toBe(true);
    expect(o.timing).toEqual({ timeoutMs: 90_000, resendMaxMs: 500 });
    expect(parseDaemonFlags([]).socketPath).toBe("/run/cni/dhcp.sock");
    expect(parseDaemonFlags([]).arpCheckMs).toBe(0);
    expect(parseDaemonFlags(["-arpcheck", "200ms"]).arpCheckMs).toBe(200);
    expect(parseGoDuration("1h2m3.5s")).toBe(3_723_500);
    expect(() => parseGoDuration("10")).toThrow(/invalid duration/);
    expect(() => parseDaemonFlags(["-nope"])).toThrow(/not defined/);
    expect(() => parseDaemonFlags(["-timeout"])).toThrow(/needs an argument/);
  });
});

describe("lease store", () => {
  test("round trip, atomic files, unreadable files skipped", async () => {
    const dir = tempDir("tscni-dhcp-store-");
    try {
      const s = new LeaseStore(`${dir.path}/state`);
      s.init();
      const ack = newRequest({ xid: 7, chaddr: "02:00:00:00:00:07", type: MsgType.Ack });
      ack.yiaddr = "10.0.0.7";
      const rec = {
        clientID: "c/n/eth0",
        containerID: "c",
        netName: "n",
        ifName: "eth0",
        netns: "/var/run/netns/x",
        options: [[Opt.ParameterRequestList, Uint8Array.of(1, 3)]] as [number, Uint8Array][],
        broadcast: false,
        lease: {
          ack,
          ip: "10.0.0.7",
          serverId: "10.0.0.1",
          serverMac: "02:00:00:00:00:01",
          mac: "02:00:00:00:00:07",
          boundAt: 1000,
          renewAt: 2000,
          rebindAt: 3000,
          expireAt: 4000,
        },
      };
      s.save(rec);
      await Bun.write(`${dir.path}/state/junk.json`, "{");
      const bad: string[] = [];
      const all = s.loadAll((f) => bad.push(f));
      expect(bad).toEqual(["junk.json"]);
      expect(all).toHaveLength(1);
      expect(all[0]!.lease.ack.yiaddr).toBe("10.0.0.7");
      expect(all[0]!.lease.expireAt).toBe(4000);
      expect([...all[0]!.options[0]![1]]).toEqual([1, 3]);
      s.remove("c/n/eth0");
      s.remove("c/n/eth0");
      expect(s.loadAll(() => {})).toHaveLength(0);
    } finally {
      dir.cleanup();
    }
  });
});

describe("daemon protocol", () => {
  test("a malformed request gets a decoding error, the daemon keeps serving", async () => {
    const { startDaemon } = await import("./fixture.ts");
    const d = await startDaemon();
    try {
      const ask = (line: string) =>
        new Promise<string>((resolve, reject) => {
          let out = "";
          Bun.connect({
            unix: d.socket,
            socket: {
              open: (s) => {
                s.write(line);
              },
              data: (_s, b) => {
                out += new TextDecoder().decode(b);
              },
              end: (s) => {
                s.end();
                resolve(out);
              },
              close: () => resolve(out),
              connectError: (_s, e) => reject(e),
            },
          });
        });
      for (const bad of [
        "not json\n",
        '{"method":"add"}\n',
        '{"method":"x","containerID":"","netns":"","ifName":"","args":"","stdin":""}\n',
      ]) {
        const a = JSON.parse(await ask(bad));
        expect(a).toEqual({ ok: false, code: 6, msg: "dhcp daemon: bad request" });
      }
      const ok = JSON.parse(
        await ask('{"method":"status","containerID":"","netns":"","ifName":"","args":"","stdin":"{}"}\n'),
      );
      expect(ok).toEqual({ ok: true });
    } finally {
      await d.stop();
    }
  });
});
