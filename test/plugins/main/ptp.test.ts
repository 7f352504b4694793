/**
 * ptp as a process in a throwaway host netns, containers in other throwaway netns; kernel state checked
 * with `ip -j` / `nft -j`, and side by side with upstream's /usr/lib/cni/ptp on the same config.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { cleanupAll, forwardingOff, makeNetns, type TempNetns, tempDir } from "../../helpers/netns.ts";
import { ipamPath, runPlugin, UPSTREAM_DIR } from "../_run.ts";

afterEach(() => cleanupAll());

const UPSTREAM = `${UPSTREAM_DIR}/ptp`;
const haveUpstream = existsSync(UPSTREAM) && existsSync(`${UPSTREAM_DIR}/host-local`);

interface Net {
  host: TempNetns;
  dataDir: string;
}

function net(): Net {
  return { host: makeNetns("ph"), dataDir: tempDir("tscni-ptp-").path };
}

function conf(n: Net, opts: { ipam?: object; cniVersion?: string; [k: string]: unknown } = {}) {
  const { ipam, cniVersion, ...rest } = opts;
  return {
    cniVersion: cniVersion ?? "1.1.0",
    name: "ptpnet",
    type: "ptp",
    ...rest,
    ipam: {
      type: "host-local",
      dataDir: n.dataDir,
      ranges: [[{ subnet: "10.61.0.0/24" }]],
      routes: [{ dst: "0.0.0.0/0" }],
      ...ipam,
    },
  };
}

const DUAL = {
  ranges: [[{ subnet: "10.62.0.0/24" }], [{ subnet: "fd00:62::/64" }]],
  routes: [{ dst: "0.0.0.0/0" }, { dst: "::/0" }],
};

function run(
  n: Net,
  command: string,
  cont: { path: string } | string,
  config: object,
  o: { plugin?: string; id?: string; cniPath?: string } = {},
) {
  return runPlugin({
    plugin: o.plugin ?? "ptp",
    hostNetns: n.host.name,
    env: {
      CNI_COMMAND: command,
      CNI_CONTAINERID: o.id ?? "ctr1",
      CNI_NETNS: typeof cont === "string" ? cont : cont.path,
      CNI_IFNAME: "eth0",
      CNI_PATH: o.cniPath ?? ipamPath(),
    },
    config,
  });
}

async function add(n: Net, cont: TempNetns, config: object, id = "ctr1") {
  const r = await run(n, "ADD", cont, config, { id });
  if (r.code !== 0) throw new Error(`ADD failed: ${r.stdout} ${r.stderr}`);
  return r.json;
}

interface IpRoute {
  dst: string;
  gateway?: string;
  dev?: string;
  scope?: string;
  prefsrc?: string;
  protocol?: string;
  metric?: number;
}

/** Routes without the kernel's link-local/prefix noise, comparable across runs. */
function routes(n: TempNetns, family: "-4" | "-6"): IpRoute[] {
  return (n.ip(family, "route", "show") as IpRoute[])
    .filter((r) => !r.dst.startsWith("fe80"))
    .map((r) => {
      const out: IpRoute = { dst: r.dst };
      for (const k of ["gateway", "dev", "scope", "prefsrc", "protocol", "metric"] as const) {
        if (r[k] !== undefined) (out as unknown as Record<string, unknown>)[k] = r[k];
      }
      return out;
    })
    .sort((a, b) => a.dst.localeCompare(b.dst));
}

function addrs(n: TempNetns, dev: string): string[] {
  const out = n.ip("addr", "show", "dev", dev) as { addr_info: { local: string; prefixlen: number }[] }[];
  return (out[0]?.addr_info ?? [])
    .filter((a) => !a.local.startsWith("fe80"))
    .map((a) => `${a.local}/${a.prefixlen}`)
    .sort();
}

function links(n: TempNetns): string[] {
  return (n.ip("link", "show") as { ifname: string }[]).map((l) => l.ifname).filter((x) => x !== "lo");
}

function reservations(n: Net): string[] {
  const dir = join(n.dataDir, "ptpnet");
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((f) => /^[0-9a-f.:]+$/.test(f) && (f.includes(".") || f.includes(":")));
}

function sysctl(n: TempNetns, key: string): string {
  return n.run(["sysctl", "-n", key]).stdout.trim();
}

/**
 * One echo answered within 4 s. IPv6 may need a second: the host veth's link-local address is still in
 * DAD right after ADD, and the kernel sends no neighbour solicitation until it is done (upstream alike).
 */
function ping(from: TempNetns, ip: string): boolean {
  const six = ip.includes(":") ? ["-6"] : [];
  return from.run(["ping", ...six, "-c", "1", "-i", "0.2", "-w", "4", ip]).code === 0;
}

describe("ptp ADD", () => {
  test("result shape, container and host routes, forwarding on in the host netns only", async () => {
    const n = net();
    const c = makeNetns("pc");
    forwardingOff(n.host, c);
    const r = await add(n, c, conf(n, { mtu: 1400 }));
    const hostName = r.interfaces[0].name;
    expect(hostName).toMatch(/^veth[0-9a-f]{8}$/);
    expect(r).toEqual({
      cniVersion: "1.1.0",
      interfaces: [
        { name: hostName, mac: expect.stringMatching(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/) },
        { name: "eth0", mac: expect.stringMatching(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/), sandbox: c.path },
      ],
      ips: [{ interface: 1, address: "10.61.0.2/24", gateway: "10.61.0.1" }],
      routes: [{ dst: "0.0.0.0/0" }],
    });
    // container: the address, no on-link prefix route, gateway as a link route, prefix via gateway
    expect(addrs(c, "eth0")).toEqual(["10.61.0.2/24"]);
    expect(routes(c, "-4")).toEqual([
      { dst: "10.61.0.0/24", gateway: "10.61.0.1", dev: "eth0", prefsrc: "10.61.0.2" },
      { dst: "10.61.0.1", dev: "eth0", scope: "link", prefsrc: "10.61.0.2" },
      { dst: "default", gateway: "10.61.0.1", dev: "eth0" },
    ]);
    expect(c.ip("link", "show", "dev", "eth0")[0].address).toBe(r.interfaces[1].mac);
    // host: gateway /32 on the veth, /32 host route to the container
    expect(addrs(n.host, hostName)).toEqual(["10.61.0.1/32"]);
    expect(routes(n.host, "-4")).toEqual([{ dst: "10.61.0.2", dev: hostName, scope: "host" }]);
    expect(n.host.ip("link", "show", "dev", hostName)[0].address).toBe(r.interfaces[0].mac);
    // mtu on both ends
    expect(n.host.ip("link", "show", "dev", hostName)[0].mtu).toBe(1400);
    expect(c.ip("link", "show", "dev", "eth0")[0].mtu).toBe(1400);
    expect(sysctl(n.host, "net.ipv4.ip_forward")).toBe("1");
    expect(sysctl(c, "net.ipv4.ip_forward")).toBe("0");
    expect(reservations(n)).toEqual(["10.61.0.2"]);
  });

  test("two containers reach each other through the host netns", async () => {
    const n = net();
    const a = makeNetns("pc");
    const b = makeNetns("pc");
    forwardingOff(n.host, a, b);
    const ra = await add(n, a, conf(n, { ipam: DUAL }), "ctrA");
    const rb = await add(n, b, conf(n, { ipam: DUAL }), "ctrB");
    const [b4, b6] = rb.ips.map((i: { address: string }) => i.address.split("/")[0]);
    const [a4, a6] = ra.ips.map((i: { address: string }) => i.address.split("/")[0]);
    expect(ping(a, b4)).toBe(true);
    expect(ping(b, a4)).toBe(true);
    expect(ping(a, b6)).toBe(true);
    expect(ping(b, a6)).toBe(true);
    expect(sysctl(n.host, "net.ipv6.conf.all.forwarding")).toBe("1");
    expect(sysctl(a, "net.ipv6.conf.all.forwarding")).toBe("0");
  });

  test("dual-stack: both families in the result, container and host", async () => {
    const n = net();
    const c = makeNetns("pc");
    const r = await add(n, c, conf(n, { ipam: DUAL, dns: { nameservers: ["10.62.0.53"] } }));
    const hostName = r.interfaces[0].name;
    expect(r.ips).toEqual([
      { interface: 1, address: "10.62.0.2/24", gateway: "10.62.0.1" },
      { interface: 1, address: "fd00:62::2/64", gateway: "fd00:62::1" },
    ]);
    expect(r.routes).toEqual([{ dst: "0.0.0.0/0" }, { dst: "::/0" }]);
    expect(r.dns).toEqual({ nameservers: ["10.62.0.53"] });
    expect(addrs(c, "eth0")).toEqual(["10.62.0.2/24", "fd00:62::2/64"]);
    const v6 = routes(c, "-6");
    expect(v6).toContainEqual(
      expect.objectContaining({ dst: "fd00:62::1", dev: "eth0", prefsrc: "fd00:62::2" }),
    );
    expect(v6).toContainEqual(
      expect.objectContaining({ dst: "fd00:62::/64", gateway: "fd00:62::1", prefsrc: "fd00:62::2" }),
    );
    expect(v6).toContainEqual(expect.objectContaining({ dst: "default", gateway: "fd00:62::1" }));
    expect(v6.filter((x) => x.dst === "fd00:62::/64" && !x.gateway)).toEqual([]);
    expect(addrs(n.host, hostName)).toEqual(["10.62.0.1/32", "fd00:62::1/128"]);
    expect(routes(n.host, "-6")).toContainEqual(
      expect.objectContaining({ dst: "fd00:62::2", dev: hostName }),
    );
  });

  test.skipIf(!haveUpstream)("matches upstream ptp: result shape and container routes", async () => {
    const ours = net();
    const theirs = net();
    const a = makeNetns("pc");
    const b = makeNetns("pc");
    const config = (n: Net) => conf(n, { cniVersion: "1.0.0", mtu: 1450, ipam: DUAL });
    const ro = await run(ours, "ADD", a, config(ours));
    const ru = await run(theirs, "ADD", b, config(theirs), { plugin: UPSTREAM, cniPath: UPSTREAM_DIR });
    expect(ru.code).toBe(0);
    expect(ro.code).toBe(0);
    const normalize = (j: { interfaces: { name: string; mac: string; sandbox?: string }[] }) =>
      JSON.stringify({
        ...j,
        interfaces: j.interfaces.map((i) => ({
          ...i,
          mac: "MAC",
          name: i.sandbox ? i.name : "VETH",
          sandbox: i.sandbox && "NS",
        })),
      });
    expect(normalize(ro.json)).toBe(normalize(ru.json));
    expect(routes(a, "-4")).toEqual(routes(b, "-4"));
    expect(routes(a, "-6")).toEqual(routes(b, "-6"));
    expect(addrs(a, "eth0")).toEqual(addrs(b, "eth0"));
    const hostRoutes = (n: Net, veth: string) =>
      JSON.stringify([...routes(n.host, "-4"), ...routes(n.host, "-6")]).replaceAll(veth, "VETH");
    expect(hostRoutes(ours, ro.json.interfaces[0].name)).toBe(hostRoutes(theirs, ru.json.interfaces[0].name));
  });
});

describe("ptp failures leave nothing behind", () => {
  test("a route with an unreachable gateway: no veth, no reservation", async () => {
    const n = net();
    const c = makeNetns("pc");
    const bad = conf(n, { ipam: { routes: [{ dst: "10.50.0.0/16", gw: "172.16.0.1" }] } });
    const r = await run(n, "ADD", c, bad);
    expect(r.code).toBe(1);
    expect(r.json.code).toBe(999);
    expect(r.json.msg).toContain("adding route 10.50.0.0/16 via 172.16.0.1 dev eth0");
    expect(links(n.host)).toEqual([]);
    expect(links(c)).toEqual([]);
    expect(reservations(n)).toEqual([]);
  });

  test("IPAM exhausted: the second ADD fails, only the first veth remains; STATUS says so", async () => {
    const n = net();
    const a = makeNetns("pc");
    const b = makeNetns("pc");
    const tiny = conf(n, { ipam: { ranges: [[{ subnet: "10.63.0.0/30" }]] } });
    const ra = await add(n, a, tiny, "ctrA");
    const r = await run(n, "ADD", b, tiny, { id: "ctrB" });
    expect(r.code).toBe(1);
    expect(r.json.msg).toContain("no IP addresses available");
    expect(links(n.host)).toEqual([ra.interfaces[0].name]);
    expect(links(b)).toEqual([]);
    const status = await run(n, "STATUS", "", tiny);
    expect(status.code).toBe(1);
    expect(status.json.code).toBe(50);
  });

  test("a missing netns fails naming it and releases the address", async () => {
    const n = net();
    const r = await run(n, "ADD", "/var/run/netns/tscni-none-ptp", conf(n));
    expect(r.code).toBe(1);
    expect(r.json.code).toBe(999);
    expect(r.json.msg).toContain("/var/run/netns/tscni-none-ptp");
    expect(reservations(n)).toEqual([]);
    expect(links(n.host)).toEqual([]);
  });

  test("an IPAM address without a gateway is refused before anything is made", async () => {
    const n = net();
    const c = makeNetns("pc");
    const config = {
      cniVersion: "1.1.0",
      name: "ptpnet",
      type: "ptp",
      ipam: { type: "static", addresses: [{ address: "10.64.0.5/24" }] },
    };
    const r = await run(n, "ADD", c, config);
    expect(r.code).toBe(1);
    expect(r.json.msg).toContain("has no gateway");
    expect(links(n.host)).toEqual([]);
    expect(links(c)).toEqual([]);
  });
});

describe("ptp DEL", () => {
  test("removes the veth and the reservation; twice is fine", async () => {
    const n = net();
    const c = makeNetns("pc");
    const config = conf(n);
    await add(n, c, config);
    const d1 = await run(n, "DEL", c, config);
    expect(d1.code).toBe(0);
    expect(d1.stdout).toBe("");
    expect(links(n.host)).toEqual([]);
    expect(links(c)).toEqual([]);
    expect(routes(n.host, "-4")).toEqual([]);
    expect(reservations(n)).toEqual([]);
    expect((await run(n, "DEL", c, config)).code).toBe(0);
  });

  test("succeeds with the netns already deleted, and with none given", async () => {
    const n = net();
    const c = makeNetns("pc");
    const config = conf(n);
    await add(n, c, config);
    const path = c.path;
    c.cleanup();
    expect((await run(n, "DEL", path, config)).code).toBe(0);
    expect(reservations(n)).toEqual([]);
    expect(links(n.host)).toEqual([]); // the host end died with the netns
    expect((await run(n, "DEL", "", config)).code).toBe(0);
  });
});

describe("ptp ipMasq (nftables)", () => {
  const hasNft = existsSync("/usr/sbin/nft") || existsSync("/sbin/nft");
  test.skipIf(!hasNft)("ADD installs the masquerade for the container address, DEL removes it", async () => {
    const n = net();
    const c = makeNetns("pc");
    const config = conf(n, { ipMasq: true, ipMasqBackend: "nftables", ipam: DUAL });
    const r = await add(n, c, config);
    expect(r.ips).toHaveLength(2);
    const ruleset = () => n.host.run(["nft", "-j", "list", "ruleset"]).stdout;
    const before = JSON.parse(ruleset());
    expect(JSON.stringify(before)).toContain("masquerade");
    expect(JSON.stringify(before)).toContain("10.62.0.2");
    expect(JSON.stringify(before)).toContain("fd00:62::2");
    const chk = await run(n, "CHECK", c, { ...config, prevResult: r });
    expect(chk.stderr + chk.stdout).toBe("");
    expect(chk.code).toBe(0);
    expect((await run(n, "DEL", c, config)).code).toBe(0);
    const after = ruleset();
    expect(after).not.toContain("10.62.0.2");
    expect(after).not.toContain("fd00:62::2");
  });
});

describe("ptp CHECK, GC", () => {
  test("CHECK passes after ADD and fails naming a missing route or a wrong netns", async () => {
    const n = net();
    const c = makeNetns("pc");
    const config = conf(n);
    const r = await add(n, c, config);
    const check = await run(n, "CHECK", c, { ...config, prevResult: r });
    expect(check.stdout).toBe("");
    expect(check.code).toBe(0);

    const other = makeNetns("pc");
    const wrong = await run(n, "CHECK", other, { ...config, prevResult: r });
    expect(wrong.code).toBe(1);
    expect(wrong.json.msg).toContain("Sandbox in prevResult");

    const noPrev = await run(n, "CHECK", c, config);
    expect(noPrev.code).toBe(1);
    expect(noPrev.json.msg).toContain("Required prevResult missing");

    c.run(["ip", "route", "del", "default"]);
    const broken = await run(n, "CHECK", c, { ...config, prevResult: r });
    expect(broken.code).toBe(1);
    expect(broken.json.msg).toContain("Expected Route 0.0.0.0/0");
  });

  test("GC forwards to IPAM: reservations of attachments not listed are released", async () => {
    const n = net();
    const a = makeNetns("pc");
    const b = makeNetns("pc");
    const config = conf(n);
    await add(n, a, config, "ctrA");
    await add(n, b, config, "ctrB");
    expect(reservations(n).sort()).toEqual(["10.61.0.2", "10.61.0.3"]);
    const gc = await run(n, "GC", "", {
      ...config,
      "cni.dev/valid-attachments": [{ containerID: "ctrB", ifname: "eth0" }],
    });
    expect(gc.stderr + gc.stdout).toBe("");
    expect(gc.code).toBe(0);
    expect(reservations(n)).toEqual(["10.61.0.3"]);
  });
});
