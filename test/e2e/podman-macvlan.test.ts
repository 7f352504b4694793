/**
 * podman 4 (CNI backend) runs busybox containers on a macvlan network it wrote itself
 * (`podman network create -d macvlan -o parent=…`), served by the plugins `tscni install` lays out.
 * The parent is a veth in podman's throwaway host netns; see podman-env.ts for where state goes.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { skipLabel } from "../helpers/netns.ts";
import {
  adaptConflist,
  ensurePodman,
  installTscni,
  makePodmanEnv,
  missingPlugins,
  type PodmanEnv,
  reservations,
  writeConflist,
} from "./podman-env.ts";

const skip = ensurePodman();
const T = 60_000;
const NET = `tscni-e2e-mv-${Math.random().toString(36).slice(2, 8)}`;
const SUBNET = "10.89.51.0/24";
const PARENT = "mvpod0";

let env: PodmanEnv | undefined;
// biome-ignore lint/suspicious/noExplicitAny: the conflist as podman wrote it
let written: any;
let started: string[] = [];

beforeAll(() => {
  if (skip) return;
  env = makePodmanEnv();
  installTscni(env.pluginDir);
  for (const cmd of [
    ["ip", "link", "add", PARENT, "type", "veth", "peer", "name", `${PARENT}p`],
    ["ip", "link", "set", PARENT, "up"],
    ["ip", "link", "set", `${PARENT}p`, "up"],
  ]) {
    const r = env.host.run(cmd);
    if (r.code !== 0) throw new Error(`${cmd.join(" ")}: ${r.stderr}`);
  }
  env.networks.push(NET);
  env.podmanOk(["network", "create", "-d", "macvlan", "-o", `parent=${PARENT}`, "--subnet", SUBNET, NET]);
  written = JSON.parse(readFileSync(join(env.netDir, `${NET}.conflist`), "utf8"));
  writeConflist(env, adaptConflist(written, env.ipamDir));
}, 180_000);

afterAll(() => env?.cleanup(), 90_000);
afterEach(() => {
  for (const id of started) env?.podman(["rm", "--force", "--ignore", "--time", "0", id]);
  started = [];
}, 60_000);

function ready(): PodmanEnv {
  if (!env) throw new Error("podman env was not set up");
  return env;
}

describe("podman on a macvlan network", () => {
  test.skipIf(!!skip)(
    skipLabel("podman writes macvlan + host-local on the parent; tscni has every plugin", skip),
    () => {
      // biome-ignore lint/suspicious/noExplicitAny: conflist entries
      const mv = written.plugins.find((p: any) => p.type === "macvlan");
      expect(mv.master).toBe(PARENT);
      expect(mv.ipam.type).toBe("host-local");
      expect(missingPlugins(ready().pluginDir, adaptConflist(written, "/x"))).toEqual([]);
    },
  );

  test.skipIf(!!skip)(
    skipLabel("a container gets a macvlan eth0 with a host-local address; a second one pings it", skip),
    () => {
      const e = ready();
      const id = e.podmanOk(["run", "-d", "--network", NET, "--rootfs", e.rootfs, "sleep", "300"]).trim();
      started.push(id);
      const a = JSON.parse(e.podmanOk(["inspect", "--format", "{{json .NetworkSettings.Networks}}", id]))[
        NET
      ];
      expect(a.IPAddress.startsWith("10.89.51.")).toBe(true);
      expect(reservations(e.ipamDir, NET)).toEqual([a.IPAddress]);
      const sandbox = e.podmanOk(["inspect", "--format", "{{.NetworkSettings.SandboxKey}}", id]).trim();
      const ipd = e.hostRun(["nsenter", `--net=${sandbox}`, "ip", "-j", "-d", "link", "show", "eth0"]);
      const link = JSON.parse(ipd.stdout)[0];
      expect(link.linkinfo.info_kind).toBe("macvlan");
      expect(link.linkinfo.info_data.mode).toBe("bridge");
      expect(link.link_netnsid).toBeNumber();
      const ping = e.podman([
        "run",
        "--rm",
        "--network",
        NET,
        "--rootfs",
        e.rootfs,
        "ping",
        "-c",
        "1",
        "-W",
        "3",
        a.IPAddress,
      ]);
      expect(ping.stderr).toBe("");
      expect(ping.code).toBe(0);
      e.podmanOk(["rm", "-f", "-t", "0", id]);
      started = [];
      expect(reservations(e.ipamDir, NET)).toEqual([]);
      // the parent stays, with no macvlan left on it
      expect(e.host.ip("link", "show").map((l: { ifname: string }) => l.ifname)).toContain(PARENT);
    },
    T,
  );
});
