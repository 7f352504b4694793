/**
 * bandwidth: config validation as pure functions, then the plugin as a process in a throwaway host
 * netns against veths made with `ip`. Oracles: `tc -j`, `ip -j`, upstream's /usr/lib/cni/bandwidth on
 * an identical setup, and iperf3 for the rates actually achieved.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { parseBandwidthConf, validateShape } from "../../../src/plugins/meta/bandwidth/config.ts";
import { ifbAlias, ifbName, parseIfbAlias } from "../../../src/plugins/meta/bandwidth/shaping.ts";
import { codeOf } from "../../helpers/errors.ts";
import { cleanupAll, makeNetns, type TempNetns } from "../../helpers/netns.ts";
import { runPlugin } from "../_run.ts";
import { addContainer, type Container, cniEnv } from "./veth-fixture.ts";

afterEach(() => cleanupAll());

const MBIT8 = 8_000_000;

describe("bandwidth config", () => {
  const conf = (o: object) => JSON.stringify({ cniVersion: "1.0.0", name: "bwnet", type: "bandwidth", ...o });

  test("rate and burst go together; burst under 4 GiB; at least 8 bits", () => {
    expect(validateShape("ingress", 0, 0)).toBeUndefined();
    expect(validateShape("egress", 1000, 80)).toEqual({ rateBits: 1000, burstBits: 80 });
    expect(codeOf(() => validateShape("ingress", 1000, 0))).toBe(7);
    expect(codeOf(() => validateShape("ingress", 0, 1000))).toBe(7);
    expect(codeOf(() => validateShape("ingress", 1000, 8 * (2 ** 32 - 1)))).toBe(7);
    expect(validateShape("ingress", 1000, 8 * (2 ** 32 - 2))).toBeDefined();
    expect(codeOf(() => validateShape("ingress", 7, 800))).toBe(7);
  });

  test("the config's own keys win over the bandwidth capability, as upstream", () => {
    const c = parseBandwidthConf(
      conf({
        ingressRate: 1000,
        ingressBurst: 800,
        runtimeConfig: { bandwidth: { egressRate: 2000, egressBurst: 1600 } },
      }),
    );
    expect(c.ingress).toEqual({ rateBits: 1000, burstBits: 800 });
    expect(c.egress).toBeUndefined();
    const runtime = parseBandwidthConf(
      conf({ runtimeConfig: { bandwidth: { egressRate: 2000, egressBurst: 1600 } } }),
    );
    expect(runtime.egress).toEqual({ rateBits: 2000, burstBits: 1600 });
  });

  test("bad values are clear errors", () => {
    expect(codeOf(() => parseBandwidthConf(conf({ egressRate: 1000 })))).toBe(7);
    expect(
      codeOf(() => parseBandwidthConf(conf({ runtimeConfig: { bandwidth: { ingressBurst: 10 } } }))),
    ).toBe(7);
    expect(codeOf(() => parseBandwidthConf(conf({ ingressRate: -5, ingressBurst: 10 })))).toBe(6);
    expect(codeOf(() => parseBandwidthConf(conf({ ingressRate: "fast", ingressBurst: 10 })))).toBe(6);
    expect(
      codeOf(() =>
        parseBandwidthConf(conf({ ingressRate: 1e3, ingressBurst: 800, shapedSubnets: ["10.0.0.0/8"] })),
      ),
    ).toBe(7);
  });

  test("ifb names are upstream's hash, aliases name the attachment", () => {
    // sha512("mynetctr1") starts with 5145007e2a84 (checked against upstream's binary).
    expect(ifbName("mynet", "ctr1")).toBe("bwp5145007e2a84");
    const owner = { network: "mynet", containerID: "ctr1", ifName: "eth0" };
    const alias = ifbAlias(owner);
    expect(alias).toBe("mynet/ctr1/eth0");
    expect(parseIfbAlias({ name: "bwp5145007e2a84", alias })).toEqual(owner);
    // An alias that does not hash to the link's name is not ours.
    expect(parseIfbAlias({ name: "bwp000000000000", alias })).toBeUndefined();
    expect(parseIfbAlias({ name: "bwp5145007e2a84" })).toBeUndefined();
  });
});

// ---------------------------------------------------------------------------------------------------

const SHAPE = { ingressRate: MBIT8, ingressBurst: 800_000, egressRate: MBIT8, egressBurst: 800_000 };

function config(c: Container, extra: Record<string, unknown> = SHAPE, version = "1.0.0", name = "bwnet") {
  return { cniVersion: version, name, type: "bandwidth", ...extra, prevResult: c.prevResult(version) };
}

function run(
  host: TempNetns,
  command: string,
  c: Container,
  conf: object,
  env: Record<string, string> = {},
  plugin = "bandwidth",
) {
  return runPlugin({ plugin, hostNetns: host.name, env: cniEnv(command, c, env), config: conf });
}

// biome-ignore lint/suspicious/noExplicitAny: tc -j output
function tc(n: TempNetns, ...args: string[]): any {
  const r = n.run(["tc", "-j", ...args]);
  if (r.code !== 0) throw new Error(r.stderr);
  return r.stdout.trim() === "" ? [] : JSON.parse(r.stdout);
}

/** qdiscs and the ingress filters of a host netns, with link names replaced so two setups compare. */
function tcSnapshot(n: TempNetns, veth: string, ifb: string) {
  const rename = (s: string) => s.replaceAll(veth, "<veth>").replaceAll(ifb, "<ifb>");
  return JSON.parse(
    rename(
      JSON.stringify({
        qdiscs: tc(n, "qdisc", "show"),
        filters: tc(n, "filter", "show", "dev", veth, "parent", "ffff:"),
      }),
    ),
  );
}

describe("bandwidth plugin", () => {
  test("ADD shapes both directions exactly like upstream's bandwidth", async () => {
    const ours = makeNetns("bwh");
    const theirs = makeNetns("bwu");
    const c1 = addContainer(ours, 0);
    const c2 = addContainer(theirs, 0);
    const a = await run(ours, "ADD", c1, config(c1));
    const b = await run(theirs, "ADD", c2, config(c2), {}, "/usr/lib/cni/bandwidth");
    expect(a.stderr).toBe("");
    expect(a.code).toBe(0);
    expect(b.code).toBe(0);
    const ifb = ifbName("bwnet", "ctr0");
    // Same result shape: prevResult plus the ifb (its MAC is random).
    expect(a.json.interfaces.map((i: { name: string }) => i.name)).toEqual(["vh0", "eth0", ifb]);
    expect(b.json.interfaces.map((i: { name: string }) => i.name)).toEqual(["vh0", "eth0", ifb]);
    expect(a.json.interfaces[2].mac).toMatch(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
    expect(tcSnapshot(ours, "vh0", ifb)).toEqual(tcSnapshot(theirs, "vh0", ifb));

    // And explicitly, so the comparison cannot pass on two empty setups.
    const q = tc(ours, "qdisc", "show", "dev", "vh0");
    expect(q.find((x: { kind: string }) => x.kind === "tbf")).toMatchObject({
      handle: "1:",
      root: true,
      options: { rate: 1_000_000, burst: 100_000, lat: 25000 },
    });
    expect(q.find((x: { kind: string }) => x.kind === "ingress")).toMatchObject({
      handle: "ffff:",
      parent: "ffff:fff1",
    });
    expect(tc(ours, "qdisc", "show", "dev", ifb)[0]).toMatchObject({
      kind: "tbf",
      root: true,
      options: { rate: 1_000_000 },
    });
    const filters = tc(ours, "filter", "show", "dev", "vh0", "parent", "ffff:");
    const redirect = filters.find((f: { options?: { actions?: unknown[] } }) => f.options?.actions);
    expect(redirect.options.actions[0]).toMatchObject({
      kind: "mirred",
      mirred_action: "redirect",
      to_dev: ifb,
    });
    const link = ours.ip("-d", "link", "show", ifb)[0];
    expect(link.linkinfo.info_kind).toBe("ifb");
    expect(link.flags).toContain("UP");
    expect(link.ifalias).toBe("bwnet/ctr0/eth0");
  }, 20000);

  test("only ingress: a tbf on the host veth and no ifb", async () => {
    const host = makeNetns("bwh");
    const c = addContainer(host, 0);
    const r = await run(host, "ADD", c, config(c, { ingressRate: MBIT8, ingressBurst: 80_000 }));
    expect(r.code).toBe(0);
    expect(r.json.interfaces).toHaveLength(2);
    expect(tc(host, "qdisc", "show", "dev", "vh0").map((q: { kind: string }) => q.kind)).toEqual(["tbf"]);
    expect(host.ip("link", "show", "type", "ifb")).toEqual([]);
  }, 20000);

  test("no limits: prevResult passes through and nothing is made", async () => {
    const host = makeNetns("bwh");
    const c = addContainer(host, 0);
    const r = await run(host, "ADD", c, config(c, {}));
    expect(r.code).toBe(0);
    expect(r.json.interfaces).toEqual(c.prevResult("1.0.0").interfaces);
    expect(tc(host, "qdisc", "show", "dev", "vh0").map((q: { kind: string }) => q.kind)).not.toContain("tbf");
  }, 20000);

  test("validation errors are code 7 and change nothing", async () => {
    const host = makeNetns("bwh");
    const c = addContainer(host, 0);
    for (const bad of [
      { ingressRate: MBIT8 },
      { egressBurst: 1000 },
      { ingressRate: MBIT8, ingressBurst: 8 * 2 ** 32 },
      { runtimeConfig: { bandwidth: { egressRate: MBIT8 } } },
    ]) {
      const r = await run(host, "ADD", c, config(c, bad));
      expect(r.code).toBe(1);
      expect(r.json.code).toBe(7);
    }
    const noPrev = await run(host, "ADD", c, {
      cniVersion: "1.0.0",
      name: "bwnet",
      type: "bandwidth",
      ...SHAPE,
    });
    expect(noPrev.json).toMatchObject({ code: 7, msg: "must be called as chained plugin" });
    expect(tc(host, "qdisc", "show", "dev", "vh0").map((q: { kind: string }) => q.kind)).not.toContain("tbf");
    expect(host.ip("link", "show", "type", "ifb")).toEqual([]);
  }, 20000);

  test("CHECK passes after ADD and fails when a qdisc is changed or removed", async () => {
    const host = makeNetns("bwh");
    const c = addContainer(host, 0);
    const conf = config(c);
    expect((await run(host, "ADD", c, conf)).code).toBe(0);
    const ok = await run(host, "CHECK", c, conf);
    expect(ok.stdout).toBe("");
    expect(ok.code).toBe(0);
    // Another rate in the config than in the kernel.
    const other = await run(host, "CHECK", c, config(c, { ...SHAPE, egressRate: 2 * MBIT8 }));
    expect(other.code).toBe(1);
    expect(other.json.msg).toContain("tbf rate");
    host.run(["tc", "qdisc", "del", "dev", "vh0", "ingress"]);
    const noRedirect = await run(host, "CHECK", c, conf);
    expect(noRedirect.code).toBe(1);
    expect(noRedirect.json.msg).toContain("no ingress qdisc on vh0");
  }, 20000);

  test("DEL removes the ifb and the qdiscs; DEL twice and DEL without netns are fine", async () => {
    const host = makeNetns("bwh");
    const c = addContainer(host, 0);
    const conf = config(c);
    expect((await run(host, "ADD", c, conf)).code).toBe(0);
    for (let i = 0; i < 2; i++) {
      const d = await run(host, "DEL", c, conf);
      expect(d.stdout).toBe("");
      expect(d.code).toBe(0);
    }
    expect(host.ip("link", "show", "type", "ifb")).toEqual([]);
    const kinds = tc(host, "qdisc", "show", "dev", "vh0").map((q: { kind: string }) => q.kind);
    expect(kinds).not.toContain("tbf");
    expect(kinds).not.toContain("ingress");

    // prevResult naming two host veths: the container's veth peer decides (as on ADD), the other
    // veth keeps its qdiscs.
    const other = addContainer(host, 2);
    expect((await run(host, "ADD", other, config(other), { CNI_CONTAINERID: "ctr2" })).code).toBe(0);
    expect((await run(host, "ADD", c, conf)).code).toBe(0);
    const prev = conf.prevResult as { interfaces: object[] };
    const ambiguous = {
      ...conf,
      prevResult: { ...prev, interfaces: [{ name: other.hostVeth }, ...prev.interfaces] },
    };
    expect((await run(host, "DEL", c, ambiguous)).code).toBe(0);
    const kindsOf = (dev: string) =>
      tc(host, "qdisc", "show", "dev", dev).map((q: { kind: string }) => q.kind);
    expect(kindsOf(c.hostVeth)).not.toContain("tbf");
    expect(kindsOf(c.hostVeth)).not.toContain("ingress");
    expect(kindsOf(other.hostVeth)).toContain("tbf");
    expect((await run(host, "DEL", other, config(other), { CNI_CONTAINERID: "ctr2" })).code).toBe(0);

    // A second attachment whose container netns is already gone: the ifb still goes.
    const c2 = addContainer(host, 1);
    expect((await run(host, "ADD", c2, config(c2), { CNI_CONTAINERID: "ctr1" })).code).toBe(0);
    expect(host.ip("link", "show", "type", "ifb")).toHaveLength(1);
    c2.ns.cleanup();
    const d = await run(host, "DEL", c2, config(c2), { CNI_CONTAINERID: "ctr1" });
    expect(d.code).toBe(0);
    expect(host.ip("link", "show", "type", "ifb")).toEqual([]);
  }, 20000);

  test("GC removes only this network's ifbs of attachments no longer valid", async () => {
    const host = makeNetns("bwh");
    const keep = addContainer(host, 0);
    const stale = addContainer(host, 1);
    const foreign = addContainer(host, 2);
    expect(
      (await run(host, "ADD", keep, config(keep, SHAPE, "1.1.0"), { CNI_CONTAINERID: "keep" })).code,
    ).toBe(0);
    expect(
      (await run(host, "ADD", stale, config(stale, SHAPE, "1.1.0"), { CNI_CONTAINERID: "stale" })).code,
    ).toBe(0);
    const other = config(foreign, SHAPE, "1.1.0", "othernet");
    expect((await run(host, "ADD", foreign, other, { CNI_CONTAINERID: "foreign" })).code).toBe(0);
    const names = () =>
      host
        .ip("link", "show", "type", "ifb")
        .map((l: { ifname: string }) => l.ifname)
        .sort();
    expect(names()).toEqual(
      [ifbName("bwnet", "keep"), ifbName("bwnet", "stale"), ifbName("othernet", "foreign")].sort(),
    );
    const gc = {
      cniVersion: "1.1.0",
      name: "bwnet",
      type: "bandwidth",
      "cni.dev/valid-attachments": [{ containerID: "keep", ifname: "eth0" }],
    };
    const r = await runPlugin({
      plugin: "bandwidth",
      hostNetns: host.name,
      env: { CNI_COMMAND: "GC" },
      config: gc,
    });
    expect(r.stdout).toBe("");
    expect(r.code).toBe(0);
    expect(names()).toEqual([ifbName("bwnet", "keep"), ifbName("othernet", "foreign")].sort());
  }, 30000);
});

// ---------------------------------------------------------------------------------------------------

const iperf = Bun.which("iperf3");
const noIperf = iperf ? undefined : "iperf3 is not installed (add it to scripts/setup)";

/** Bits/s received in a 3 s TCP transfer to the container (reverse: from it), measured by iperf3. */
async function measure(host: TempNetns, c: Container, reverse: boolean): Promise<number> {
  const server = Bun.spawn(["ip", "netns", "exec", c.ns.name, "iperf3", "-s", "-1", "-p", "5201"], {
    stdout: "ignore",
    stderr: "ignore",
  });
  try {
    for (let attempt = 0; attempt < 20; attempt++) {
      await Bun.sleep(100);
      const args = ["iperf3", "-c", c.contIP, "-p", "5201", "-t", "3", "-J", ...(reverse ? ["-R"] : [])];
      const r = host.run(args);
      if (r.code !== 0) continue; // server not listening yet
      return JSON.parse(r.stdout).end.sum_received.bits_per_second;
    }
    throw new Error("iperf3 client never connected");
  } finally {
    server.kill();
    await server.exited;
  }
}

describe("bandwidth traffic", () => {
  test.skipIf(!!noIperf)(
    noIperf
      ? `limits both directions to 8 Mbit/s (skipped: ${noIperf})`
      : "limits both directions to 8 Mbit/s",
    async () => {
      const host = makeNetns("bwh");
      const c = addContainer(host, 0);
      const conf = config(c);
      expect((await run(host, "ADD", c, conf)).code).toBe(0);
      const toContainer = await measure(host, c, false);
      const fromContainer = await measure(host, c, true);
      expect(toContainer).toBeGreaterThan(MBIT8 * 0.8);
      expect(toContainer).toBeLessThan(MBIT8 * 1.2);
      expect(fromContainer).toBeGreaterThan(MBIT8 * 0.8);
      expect(fromContainer).toBeLessThan(MBIT8 * 1.2);

      expect((await run(host, "DEL", c, conf)).code).toBe(0);
      expect(await measure(host, c, false)).toBeGreaterThan(MBIT8 * 10);
      expect(await measure(host, c, true)).toBeGreaterThan(MBIT8 * 10);
    },
    60000,
  );
});
