/**
 * A real client end to end: podman 4 (CNI backend) runs busybox containers on the plugins `tscni install`
 * lays out — and on nothing else: podman's only plugin dir is ours, so a plugin tscni lacks fails by name.
 * The conflists are the ones `podman network create` writes (bridge + portmap + firewall + tuning).
 * Everything runs inside a throwaway host netns; see podman-env.ts for where podman's state goes.
 *
 * TSCNI_E2E_PLUGINS=upstream runs the same tests on /usr/lib/cni (to tell harness bugs from ours).
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { skipLabel } from "../helpers/netns.ts";
import {
  adaptConflist,
  createNetwork,
  ensurePodman,
  installTscni,
  makePodmanEnv,
  missingPlugins,
  NOT_YET_IN_TSCNI,
  PAGE,
  type PodmanEnv,
  reservations,
  writeConflist,
} from "./podman-env.ts";

const UPSTREAM = process.env.TSCNI_E2E_PLUGINS === "upstream";
const skip = ensurePodman();
const label = (name: string) => skipLabel(UPSTREAM ? `${name} [upstream /usr/lib/cni]` : name, skip);
const T = 60_000;

const tag = Math.random().toString(36).slice(2, 8);
const A = { name: `tscni-e2e-${tag}-a`, prefix: "10.89.41.", subnet: "10.89.41.0/24", gw: "10.89.41.1" };
const B = { name: `tscni-e2e-${tag}-b`, prefix: "10.89.42.", subnet: "10.89.42.0/24", gw: "10.89.42.1" };

const HTTPD = ["httpd", "-f", "-p", "80", "-h", "/www"];

let env: PodmanEnv | undefined;
// biome-ignore lint/suspicious/noExplicitAny: conflists as podman writes them
let written: any;
let bridgeA = "";
let missing: string[] = [];

beforeAll(() => {
  if (skip) return;
  env = makePodmanEnv(UPSTREAM ? { pluginDir: "/usr/lib/cni" } : {});
  if (!UPSTREAM) installTscni(env.pluginDir);
  written = createNetwork(env, A.name, A.subnet);
  const confA = adaptConflist(written, env.ipamDir);
  writeConflist(env, confA);
  writeConflist(env, adaptConflist(createNetwork(env, B.name, B.subnet), env.ipamDir));
  bridgeA = confA.plugins[0].bridge;
  missing = missingPlugins(env.pluginDir, confA);
}, 180_000);

afterAll(() => env?.cleanup(), 90_000);

/** Detached containers of the current test: removed after it even when it fails, so no test inherits them. */
let started: string[] = [];
afterEach(() => {
  for (const id of started) env?.podman(["rm", "--force", "--ignore", "--time", "0", id]);
  started = [];
}, 60_000);

/** `podman run -d flags… --rootfs <busybox> httpd…` → the container id. */
function httpd(e: PodmanEnv, flags: string[]): string {
  const id = e.podmanOk(["run", "-d", ...flags, "--rootfs", e.rootfs, ...HTTPD]).trim();
  started.push(id);
  return id;
}

/** The env, once tscni provides every plugin podman's conflist runs; else a failure naming the missing. */
function ready(): PodmanEnv {
  if (!env) throw new Error("podman env was not set up");
  if (missing.length > 0) {
    throw new Error(
      `tscni does not provide plugin(s) ${missing.join(", ")} that podman's conflist runs ` +
        `(not registered in src/cli/registry.ts, so \`tscni install\` laid no link for them)`,
    );
  }
  return env;
}

/** `podman run --rm flags… --rootfs <busybox> cmd…` (flags must precede the rootfs). */
function run(e: PodmanEnv, flags: string[], cmd: string[]): string {
  return e.podmanOk(["run", "--rm", ...flags, "--rootfs", e.rootfs, ...cmd]);
}

/** `ip -4 -o addr` lines → ifname → address (without prefix length). */
function addrs(out: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of out.split("\n")) {
    const x = /^\d+: (\S+)\s+inet (\S+)\//.exec(line);
    if (x?.[1] && x[2]) m.set(x[1], x[2]);
  }
  return m;
}

interface Attachment {
  IPAddress: string;
  MacAddress: string;
  Gateway: string;
}

function attachment(e: PodmanEnv, id: string, net: string): Attachment {
  const out = e.podmanOk(["inspect", "--format", "{{json .NetworkSettings.Networks}}", id]);
  const a = JSON.parse(out)[net];
  if (!a) throw new Error(`container ${id} is not on ${net}: ${out}`);
  return a;
}

/** GET with curl from the host netns; undefined when the connection fails. */
function get(e: PodmanEnv, url: string): string | undefined {
  const r = e.hostRun(["curl", "-sS", "--max-time", "3", url], 10_000);
  return r.code === 0 ? r.stdout : undefined;
}

/** httpd needs a moment after `run -d` returns before it listens: poll up to 5 s. */
function getWhenUp(e: PodmanEnv, url: string): string | undefined {
  for (let i = 0; i < 50; i++) {
    const page = get(e, url);
    if (page !== undefined) return page;
    Bun.sleepSync(100);
  }
  return undefined;
}

function ruleset(e: PodmanEnv): string {
  const r = e.hostRun(["nft", "list", "ruleset"]);
  if (r.code !== 0) throw new Error(`nft list ruleset failed: ${r.stderr}`);
  return r.stdout;
}

function bridgePorts(e: PodmanEnv, bridge: string): string[] {
  // biome-ignore lint/suspicious/noExplicitAny: ip -j output
  return (e.host.ip("link", "show", "master", bridge) ?? []).map((l: any) => l.ifname);
}

describe("podman runs containers on tscni's plugins", () => {
  test.skipIf(!!skip)(
    label("podman network create writes bridge+host-local, portmap, firewall, tuning"),
    () => {
      // biome-ignore lint/suspicious/noExplicitAny: conflist entries
      expect(written.plugins.map((p: any) => p.type)).toEqual(["bridge", "portmap", "firewall", "tuning"]);
      expect(written.plugins[0].ipam.type).toBe("host-local");
      expect(written.plugins[0].ipam.ranges).toEqual([[{ subnet: A.subnet, gateway: A.gw }]]);
      // what the tests run: the same shape, with host-local's and firewall's state dirs set
      const ours = adaptConflist(written, "/x");
      // biome-ignore lint/suspicious/noExplicitAny: conflist entries
      expect(ours.plugins.map((p: any) => p.type)).toEqual(["bridge", "portmap", "firewall", "tuning"]);
      expect(ours.plugins[0]).toEqual({
        ...written.plugins[0],
        ipam: { ...written.plugins[0].ipam, dataDir: "/x" },
      });
      expect(ours.plugins[2]).toEqual({ ...written.plugins[2], dataDir: "/firewall" });
      expect(NOT_YET_IN_TSCNI).toEqual([]);
    },
  );

  test.skipIf(!!skip)(label("tscni install lays every plugin podman's conflist runs"), () => {
    expect(missing).toEqual([]);
  });

  test.skipIf(!!skip)(
    label("run --rm: eth0 gets an address from host-local, released when the container stops"),
    () => {
      const e = ready();
      const got = addrs(run(e, ["--network", A.name], ["ip", "-4", "-o", "addr"]));
      expect(got.get("lo")).toBe("127.0.0.1");
      const ip = got.get("eth0") ?? "";
      expect(ip.startsWith(A.prefix)).toBe(true);
      expect(ip).not.toBe(A.gw);
      expect(reservations(e.ipamDir, A.name)).toEqual([]);
    },
    T,
  );

  test.skipIf(!!skip)(
    label("run -d -p 8080:80 httpd: served via 127.0.0.1 and the bridge address; rm -f closes it all"),
    () => {
      const e = ready();
      const id = httpd(e, ["--network", A.name, "-p", "8080:80"]);
      const { IPAddress: ip } = attachment(e, id, A.name);
      expect(ip.startsWith(A.prefix)).toBe(true);
      expect(reservations(e.ipamDir, A.name)).toEqual([ip]);
      expect(getWhenUp(e, "http://127.0.0.1:8080/")).toBe(PAGE);
      expect(get(e, `http://${A.gw}:8080/`)).toBe(PAGE);
      expect(bridgePorts(e, bridgeA)).toHaveLength(1);
      // Whatever the layout (upstream: iptables chains; tscni: nft maps), they name the IP and the port.
      const before = ruleset(e);
      expect(before).toContain(ip);
      expect(before).toMatch(/\b8080\b/);
      // firewall (iptables backend: no firewalld on this bus) lets the container's traffic be forwarded.
      const esc = ip.replace(/\./g, "\\.");
      expect(before).toMatch(new RegExp(`chain CNI-FORWARD \\{[^}]*ip saddr ${esc} [^}]*accept`));

      e.podmanOk(["rm", "-f", "-t", "0", id]);
      expect(get(e, "http://127.0.0.1:8080/")).toBeUndefined();
      expect(reservations(e.ipamDir, A.name)).toEqual([]);
      expect(bridgePorts(e, bridgeA)).toEqual([]);
      const after = ruleset(e);
      expect(after).not.toContain(ip);
      expect(after).not.toMatch(/\b8080\b/);
    },
    T,
  );

  test.skipIf(!!skip)(
    label("--ip and --mac-address are honoured"),
    () => {
      const e = ready();
      const ip = `${A.prefix}77`;
      const mac = "02:54:53:43:4e:49";
      const flags = ["--network", A.name, "--ip", ip, "--mac-address", mac];
      const out = run(e, flags, ["sh", "-c", "ip -o link show eth0; ip -4 -o addr show eth0"]);
      expect(out).toContain(`link/ether ${mac} `);
      expect(addrs(out).get("eth0")).toBe(ip);
      expect(reservations(e.ipamDir, A.name)).toEqual([]);
    },
    T,
  );

  test.skipIf(!!skip)(
    label("two networks on one container give eth0 and eth1"),
    () => {
      const e = ready();
      const got = addrs(run(e, ["--network", `${A.name},${B.name}`], ["ip", "-4", "-o", "addr"]));
      expect([...got.keys()].sort()).toEqual(["eth0", "eth1", "lo"]);
      const prefixes = [got.get("eth0"), got.get("eth1")]
        .map((a) => a?.split(".").slice(0, 3).join("."))
        .sort();
      expect(prefixes).toEqual(["10.89.41", "10.89.42"]);
      expect(reservations(e.ipamDir, A.name)).toEqual([]);
      expect(reservations(e.ipamDir, B.name)).toEqual([]);
    },
    T,
  );

  test.skipIf(!!skip)(
    label("network reload re-attaches with the same IP and MAC and the port still forwards"),
    () => {
      const e = ready();
      const id = httpd(e, ["--network", A.name, "-p", "8081:80"]);
      const before = attachment(e, id, A.name);
      expect(getWhenUp(e, "http://127.0.0.1:8081/")).toBe(PAGE);

      expect(e.podmanOk(["network", "reload", id]).trim()).toBe(id);
      const after = attachment(e, id, A.name);
      expect(after.IPAddress).toBe(before.IPAddress);
      expect(after.MacAddress).toBe(before.MacAddress);
      const inside = e.podmanOk(["exec", id, "ip", "-o", "link", "show", "eth0"]);
      expect(inside).toContain(`link/ether ${before.MacAddress} `);
      expect(reservations(e.ipamDir, A.name)).toEqual([before.IPAddress]);
      expect(bridgePorts(e, bridgeA)).toHaveLength(1);
      expect(getWhenUp(e, "http://127.0.0.1:8081/")).toBe(PAGE);

      e.podmanOk(["rm", "-f", "-t", "0", id]);
      expect(reservations(e.ipamDir, A.name)).toEqual([]);
      expect(ruleset(e)).not.toContain(before.IPAddress);
    },
    T,
  );
});
