import { describe, expect, test } from "bun:test";
import {
  decodeArpFrame,
  decodeUdpFrame,
  encodeArpFrame,
  encodeUdpFrame,
  ipHeaderChecksumOk,
  udpChecksumOk,
} from "../../../../src/plugins/ipam/dhcp/frame.ts";
import {
  DhcpDecodeError,
  decodeMessage,
  encodeClasslessRoutes,
  encodeDomainSearch,
  encodeMessage,
  MsgType,
  maskToPrefix,
  messageType,
  newRequest,
  Opt,
  optIP,
  optIPs,
  optString,
  optText,
  optU32,
  optUint32,
  parseClasslessRoutes,
  parseDomainSearch,
  parseStaticRoutes,
} from "../../../../src/plugins/ipam/dhcp/message.ts";

describe("DHCP message codec", () => {
  test("a DISCOVER round-trips and is padded to 300 bytes", () => {
    const m = newRequest({
      xid: 0xdeadbeef,
      chaddr: "02:00:00:aa:bb:cc",
      type: MsgType.Discover,
      flags: 0x8000,
      options: [
        [Opt.ClientIdentifier, Uint8Array.of(1, 2, 3)],
        [Opt.ParameterRequestList, Uint8Array.of(1, 3, 6, 121)],
      ],
    });
    const b = encodeMessage(m);
    expect(b.length).toBe(300);
    expect(b[0]).toBe(1);
    expect(new DataView(b.buffer).getUint32(236)).toBe(0x63825363);
    // option 53 is written first
    expect([...b.subarray(240, 243)]).toEqual([53, 1, 1]);
    const d = decodeMessage(b);
    expect(d.xid).toBe(0xdeadbeef);
    expect(d.flags).toBe(0x8000);
    expect(d.chaddr).toBe("02:00:00:aa:bb:cc");
    expect(messageType(d)).toBe(MsgType.Discover);
    expect([...d.options.get(Opt.ParameterRequestList)!]).toEqual([1, 3, 6, 121]);
  });

  test("typed readers: addresses, lists, u32, text", () => {
    const m = newRequest({ xid: 1, chaddr: "02:00:00:00:00:01", type: MsgType.Ack });
    m.options.set(Opt.Router, Uint8Array.of(10, 0, 0, 1));
    m.options.set(Opt.DomainNameServer, Uint8Array.of(10, 0, 0, 2, 10, 0, 0, 3));
    m.options.set(Opt.LeaseTime, optU32(3600));
    m.options.set(Opt.DomainName, optString("example.org"));
    const d = decodeMessage(encodeMessage(m));
    expect(optIP(d, Opt.Router)).toBe("10.0.0.1");
    expect(optIPs(d, Opt.DomainNameServer)).toEqual(["10.0.0.2", "10.0.0.3"]);
    expect(optUint32(d, Opt.LeaseTime)).toBe(3600);
    expect(optText(d, Opt.DomainName)).toBe("example.org");
    expect(optIP(d, Opt.SubnetMask)).toBeUndefined();
  });

  test("long options are split over several instances and joined again (RFC 3396)", () => {
    const long = new Uint8Array(600).map((_, i) => i & 0xff);
    const m = newRequest({ xid: 2, chaddr: "02:00:00:00:00:02", type: MsgType.Request });
    m.options.set(Opt.UserClass, long);
    const b = encodeMessage(m);
    const d = decodeMessage(b);
    expect([...d.options.get(Opt.UserClass)!]).toEqual([...long]);
  });

  test("overloaded file and sname fields carry options (RFC 2132 §9.3)", () => {
    const m = newRequest({ xid: 3, chaddr: "02:00:00:00:00:03", type: MsgType.Offer });
    m.options.set(Opt.Overload, Uint8Array.of(3));
    const b = encodeMessage(m);
    b.set([3, 4, 10, 1, 2, 3, 255], 108); // router in file
    b.set([6, 4, 10, 9, 9, 9, 255], 44); // dns in sname
    const d = decodeMessage(b);
    expect(optIP(d, Opt.Router)).toBe("10.1.2.3");
    expect(optIP(d, Opt.DomainNameServer)).toBe("10.9.9.9");
    expect(d.file).toBe("");
  });

  test("malformed input is a DhcpDecodeError, never a crash", () => {
    expect(() => decodeMessage(new Uint8Array(100))).toThrow(DhcpDecodeError);
    const b = encodeMessage(newRequest({ xid: 4, chaddr: "02:00:00:00:00:04", type: MsgType.Discover }));
    const noCookie = b.slice();
    noCookie[236] = 0;
    expect(() => decodeMessage(noCookie)).toThrow(/magic cookie/);
    const cut = b.slice(0, 243);
    cut[240] = 50;
    cut[241] = 40; // option runs past the end
    expect(() => decodeMessage(cut)).toThrow(/runs past/);
    // fuzz: random truncations and bytes never throw anything but DhcpDecodeError
    for (let i = 0; i < 500; i++) {
      const f = b.slice(0, 240 + ((Math.random() * 60) | 0));
      for (let j = 240; j < f.length; j++) f[j] = (Math.random() * 256) | 0;
      try {
        decodeMessage(f);
      } catch (err) {
        expect(err).toBeInstanceOf(DhcpDecodeError);
      }
    }
  });

  test("option 121: RFC 3442 example encodings", () => {
    const v = Uint8Array.of(0, 10, 0, 0, 1, 24, 192, 168, 5, 10, 0, 0, 1, 8, 10, 10, 0, 0, 254);
    const routes = parseClasslessRoutes(v);
    expect(routes).toEqual([
      { dst: "0.0.0.0/0", gw: "10.0.0.1" },
      { dst: "192.168.5.0/24", gw: "10.0.0.1" },
      { dst: "10.0.0.0/8", gw: "10.0.0.254" },
    ]);
    expect([...encodeClasslessRoutes(routes)]).toEqual([...v]);
    expect(() => parseClasslessRoutes(Uint8Array.of(33, 1, 2, 3, 4, 5, 6, 7, 8))).toThrow(DhcpDecodeError);
    expect(() => parseClasslessRoutes(Uint8Array.of(24, 1, 2))).toThrow(DhcpDecodeError);
  });

  test("option 33: classful destinations", () => {
    const v = Uint8Array.of(
      10,
      1,
      0,
      0,
      10,
      0,
      0,
      1,
      172,
      16,
      0,
      0,
      10,
      0,
      0,
      1,
      192,
      168,
      1,
      0,
      10,
      0,
      0,
      1,
    );
    expect(parseStaticRoutes(v)).toEqual([
      { dst: "10.1.0.0/8", gw: "10.0.0.1" },
      { dst: "172.16.0.0/16", gw: "10.0.0.1" },
      { dst: "192.168.1.0/24", gw: "10.0.0.1" },
    ]);
  });

  test("option 119: names, with a compression pointer", () => {
    expect(parseDomainSearch(encodeDomainSearch(["eng.example.org", "example.org"]))).toEqual([
      "eng.example.org",
      "example.org",
    ]);
    // RFC 3397 example: second name points into the first
    const v = Uint8Array.of(
      3,
      101,
      110,
      103,
      7,
      101,
      120,
      97,
      109,
      112,
      108,
      101,
      3,
      111,
      114,
      103,
      0,
      0xc0,
      4,
    );
    expect(parseDomainSearch(v)).toEqual(["eng.example.org", "example.org"]);
    expect(() => parseDomainSearch(Uint8Array.of(0xc0, 0))).toThrow(/loop/);
  });

  test("maskToPrefix", () => {
    expect(maskToPrefix(Uint8Array.of(255, 255, 255, 0))).toBe(24);
    expect(maskToPrefix(Uint8Array.of(255, 255, 240, 0))).toBe(20);
    expect(maskToPrefix(Uint8Array.of(255, 0, 255, 0))).toBeUndefined();
  });
});

describe("frames", () => {
  test("UDP frame: round trip with valid IP and UDP checksums", () => {
    const payload = encodeMessage(
      newRequest({ xid: 9, chaddr: "02:00:00:00:00:09", type: MsgType.Discover }),
    );
    const f = encodeUdpFrame({
      srcMac: "02:00:00:00:00:09",
      dstMac: "ff:ff:ff:ff:ff:ff",
      srcIp: "0.0.0.0",
      dstIp: "255.255.255.255",
      srcPort: 68,
      dstPort: 67,
      payload,
    });
    expect(ipHeaderChecksumOk(f)).toBe(true);
    expect(udpChecksumOk(f)).toBe(true);
    const d = decodeUdpFrame(f)!;
    expect(d.dstIp).toBe("255.255.255.255");
    expect(d.srcPort).toBe(68);
    expect(decodeMessage(d.payload).xid).toBe(9);
    const bad = f.slice();
    bad[bad.length - 1]! ^= 0xff;
    expect(udpChecksumOk(bad)).toBe(false);
    // not UDP / truncated
    expect(decodeUdpFrame(f.subarray(0, 30))).toBeUndefined();
    const tcp = f.slice();
    tcp[14 + 9] = 6;
    expect(decodeUdpFrame(tcp)).toBeUndefined();
  });

  test("ARP frame round trip", () => {
    const a = {
      op: 1 as const,
      senderMac: "02:00:00:00:00:01",
      senderIp: "0.0.0.0",
      targetMac: "00:00:00:00:00:00",
      targetIp: "10.0.0.5",
    };
    expect(decodeArpFrame(encodeArpFrame(a))).toEqual(a);
  });
});
