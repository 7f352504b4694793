/**
 * The firewalld backend against a real firewalld (Debian 1.3) with its own dbus-daemon, running in the
 * test's throwaway host netns and a private mount namespace (test/helpers/firewalld.ts).
 */
import { afterAll, afterEach, beforeAll, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { type Firewalld, firewalldSkipReason, startFirewalld } from "../../helpers/firewalld.ts";
import { skipLabel, tempDir } from "../../helpers/netns.ts";
import { UPSTREAM_DIR } from "../_run.ts";
import { type FwContainer, type FwNet, filterRules, fw, makeFwNet, ping } from "./firewall-net.ts";

const why = firewalldSkipReason();
let net: FwNet;
let fwd: Firewalld;
let dataDir: string;

beforeAll(async () => {
  if (why) return;
  net = makeFwNet();
  try {
    fwd = await startFirewalld(net.host.name);
  } catch (err) {
    net.cleanup();
    throw err;
  }
  dataDir = tempDir("tscni-fwd-").path;
}, 120_000);

afterAll(async () => {
  if (why) return;
  await fwd?.stop();
  net?.cleanup();
});

afterEach(async () => {
  if (why) return;
  // Leave the zone empty for the next test.
  for (const [c, id] of [
    [net.c1, "c1"],
    [net.c2, "c2"],
  ] as const) {
    await fw(net, "DEL", conf(c), c, { id, env: env() });
  }
});

function env(): Record<string, string> {
  return { DBUS_SYSTEM_BUS_ADDRESS: fwd.busAddress };
}

function conf(c: FwContainer | undefined, extra: object = {}): object {
  return {
    cniVersion: "1.1.0",
    name: "fwnet",
    type: "firewall",
    backend: "firewalld",
    dataDir,
    ...(c ? { prevResult: net.prevResult(c) } : {}),
    ...extra,
  };
}

test.skipIf(!!why)(
  skipLabel("ADD puts the container's addresses into the zone, DEL takes them out", why),
  async () => {
    expect(await fwd.sources("trusted")).toEqual([]);
    const add = await fw(net, "ADD", conf(net.c1), net.c1, { id: "c1", env: env() });
    expect(add.stderr).toBe("");
    expect(add.code).toBe(0);
    expect((await fwd.sources("trusted")).sort()).toEqual(["10.79.0.2/32", "fd79::2/128"]);
    expect((await fw(net, "CHECK", conf(net.c1), net.c1, { id: "c1", env: env() })).code).toBe(0);
    // ADD again: ZONE_ALREADY_SET is fine.
    expect((await fw(net, "ADD", conf(net.c1), net.c1, { id: "c1", env: env() })).code).toBe(0);
    expect((await fw(net, "DEL", conf(net.c1), net.c1, { id: "c1", env: env() })).code).toBe(0);
    expect(await fwd.sources("trusted")).toEqual([]);
    expect((await fw(net, "DEL", conf(net.c1), net.c1, { id: "c1", env: env() })).code).toBe(0);
    const check = await fw(net, "CHECK", conf(net.c1), net.c1, { id: "c1", env: env() });
    expect(check.json.code).toBe(999);
    expect(check.json.msg).toContain("10.79.0.2/32");
  },
);

test.skipIf(!!why)(
  skipLabel("firewalldZone picks the zone; without backend firewalld is chosen when it runs", why),
  async () => {
    const add = await fw(
      net,
      "ADD",
      conf(net.c1, { backend: undefined, firewalldZone: "internal" }),
      net.c1,
      {
        id: "c1",
        env: env(),
      },
    );
    expect(add.code).toBe(0);
    expect((await fwd.sources("internal")).sort()).toEqual(["10.79.0.2/32", "fd79::2/128"]);
    expect(filterRules(net).some((l) => l.includes("CNI-FORWARD"))).toBe(false);
    expect(
      (
        await fw(net, "DEL", conf(net.c1, { backend: undefined, firewalldZone: "internal" }), net.c1, {
          id: "c1",
          env: env(),
        })
      ).code,
    ).toBe(0);
    expect(await fwd.sources("internal")).toEqual([]);
  },
);

test.skipIf(!!why)(
  skipLabel("firewalld drops the forwarding until the container is in the trusted zone", why),
  async () => {
    expect(ping(net.c1.ns, "192.168.79.2")).toBe(false);
    expect((await fw(net, "ADD", conf(net.c1), net.c1, { id: "c1", env: env() })).code).toBe(0);
    expect(ping(net.c1.ns, "192.168.79.2")).toBe(true);
    expect(ping(net.c2.ns, "192.168.79.2")).toBe(false);
  },
);

test.skipIf(!!why)(skipLabel("GC removes the sources of stale attachments only", why), async () => {
  expect((await fw(net, "ADD", conf(net.c1), net.c1, { id: "c1", env: env() })).code).toBe(0);
  expect((await fw(net, "ADD", conf(net.c2), net.c2, { id: "c2", env: env() })).code).toBe(0);
  const gc = await fw(
    net,
    "GC",
    conf(undefined, { "cni.dev/valid-attachments": [{ containerID: "c2", ifname: "eth0" }] }),
    undefined,
    {
      env: env(),
    },
  );
  expect(gc.stdout).toBe("");
  expect(gc.code).toBe(0);
  expect((await fwd.sources("trusted")).sort()).toEqual(["10.79.1.2/32", "fd79:1::2/128"]);
});

test.skipIf(!!why)(
  skipLabel("same-bridge with firewalld: upstream's iptables isolation chains, no CNI-FORWARD", why),
  async () => {
    const add = await fw(net, "ADD", conf(net.c1, { ingressPolicy: "same-bridge" }), net.c1, {
      id: "c1",
      env: env(),
    });
    expect(add.code).toBe(0);
    const rules = filterRules(net);
    expect(rules.some((l) => l.startsWith("-A CNI-ISOLATION-STAGE-1 -i br0 ! -o br0"))).toBe(true);
    expect(rules.some((l) => l.includes("CNI-FORWARD"))).toBe(false);
    expect((await fwd.sources("trusted")).sort()).toEqual(["10.79.0.2/32", "fd79::2/128"]);
  },
);

test.skipIf(!!why)(skipLabel("STATUS is fine while firewalld runs", why), async () => {
  const st = await fw(net, "STATUS", conf(undefined), undefined, { env: env() });
  expect(st.stdout).toBe("");
  expect(st.code).toBe(0);
});

const upstream = `${UPSTREAM_DIR}/firewall`;
test.skipIf(!!why || !existsSync(upstream))(
  skipLabel("cross-DEL with upstream's firewalld backend", why),
  async () => {
    const c = { ...(conf(net.c1) as object), cniVersion: "1.0.0" };
    expect((await fw(net, "ADD", c, net.c1, { id: "c1", env: env(), plugin: upstream })).code).toBe(0);
    expect((await fwd.sources("trusted")).sort()).toEqual(["10.79.0.2/32", "fd79::2/128"]);
    expect((await fw(net, "CHECK", c, net.c1, { id: "c1", env: env() })).code).toBe(0);
    expect((await fw(net, "DEL", c, net.c1, { id: "c1", env: env() })).code).toBe(0);
    expect(await fwd.sources("trusted")).toEqual([]);
    expect((await fw(net, "ADD", c, net.c1, { id: "c1", env: env() })).code).toBe(0);
    expect((await fw(net, "DEL", c, net.c1, { id: "c1", env: env(), plugin: upstream })).code).toBe(0);
    expect(await fwd.sources("trusted")).toEqual([]);
  },
);
