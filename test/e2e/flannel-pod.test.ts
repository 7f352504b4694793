/**
 * The kubelet path end to end: a subnet.env written here, the canonical 10-flannel.conflist (flannel +
 * portmap; test dirs for the state), and `tscni pod up|down` run in a throwaway host netns with our
 * plugins in CNI_PATH. The pod gets an address in FLANNEL_SUBNET with FLANNEL_MTU and a route to
 * FLANNEL_NETWORK, pings the cni0 gateway, a hostPort reaches it; `pod down` after subnet.env is deleted
 * removes everything.
 */
import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { cleanupAll, makeNetns, tempDir } from "../helpers/netns.ts";
import { BUN, REPO, writePluginWrappers } from "../plugins/_run.ts";

afterAll(cleanupAll);

const PROBE = join(REPO, "test/plugins/meta/portmap-probe.ts");

function cli(host: string, args: string[], env: Record<string, string>) {
  const p = Bun.spawnSync(["nsenter", `--net=${host}`, BUN, join(REPO, "src/cli/main.ts"), ...args], {
    env: { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin", ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  return { code: p.exitCode, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

test("tscni pod up/down on flannel + portmap (dual-stack subnet.env)", async () => {
  const host = makeNetns("fph");
  const pod = makeNetns("fpp");
  const work = tempDir("flannel-pod");
  const bin = join(work.path, "bin");
  const confDir = join(work.path, "net.d");
  mkdirSync(confDir);
  writePluginWrappers(bin, [
    ["flannel", "meta"],
    ["portmap", "meta"],
    ["bridge", "main"],
    ["loopback", "main"],
    ["host-local", "ipam"],
  ]);
  const subnetFile = join(work.path, "subnet.env");
  writeFileSync(
    subnetFile,
    "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_IPV6_NETWORK=fd44::/56\n" +
      "FLANNEL_IPV6_SUBNET=fd44:0:0:3::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
  );
  const dataDir = join(work.path, "flannel");
  writeFileSync(
    join(confDir, "10-flannel.conflist"),
    JSON.stringify({
      name: "cbr0",
      cniVersion: "1.0.0",
      plugins: [
        {
          type: "flannel",
          delegate: { hairpinMode: true, isDefaultGateway: true },
          subnetFile,
          dataDir,
          ipam: { dataDir: join(work.path, "ipam") },
        },
        { type: "portmap", capabilities: { portMappings: true } },
      ],
    }),
  );
  const env = {
    NETCONFPATH: confDir,
    CNI_PATH: bin,
    CNI_CACHE_DIR: join(work.path, "cache"),
    CAP_ARGS: JSON.stringify({ portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }] }),
  };
  const up = cli(host.path, ["pod", "up", "kube-system/web", pod.path, "--id", "sandbox1"], env);
  expect(up.code, up.stderr).toBe(0);
  const ips = (JSON.parse(up.stdout).ips as { address: string }[]).map((i) => i.address);
  expect(ips.some((a) => /^10\.244\.3\.\d+\/24$/.test(a))).toBe(true);
  expect(ips.some((a) => /^fd44:0:0:3::[0-9a-f]+\/64$/.test(a))).toBe(true);
  expect(pod.ip("link", "show", "eth0")[0].mtu).toBe(1450);
  expect(pod.ip("link", "show", "lo")[0].operstate).toBe("UNKNOWN");
  expect(pod.ip("route", "show").map((r: { dst: string }) => r.dst)).toContain("10.244.0.0/16");
  expect(pod.ip("-6", "route", "show").map((r: { dst: string }) => r.dst)).toContain("fd44::/56");
  expect(pod.run(["ping", "-c", "1", "-W", "2", "10.244.3.1"]).code).toBe(0);
  const status = cli(host.path, ["pod", "status", "kube-system/web", pod.path, "--id", "sandbox1"], env);
  expect(status.code, status.stderr).toBe(0);
  expect(JSON.parse(status.stdout).ips.length).toBe(2);

  // hostPort 8080 on the node → the pod's port 80.
  const server = Bun.spawn(["ip", "netns", "exec", pod.name, BUN, PROBE, "serve", "web"], {
    stdout: "pipe",
    stderr: "pipe",
  });
  try {
    const reader = server.stdout.getReader();
    let text = "";
    while (!text.includes("ready")) {
      const { value, done } = await reader.read();
      if (done) throw new Error("echo server exited");
      text += new TextDecoder().decode(value);
    }
    const probe = host.run([
      BUN,
      PROBE,
      "probe",
      JSON.stringify([{ proto: "tcp", host: "10.244.3.1", port: 8080 }]),
    ]);
    const out = JSON.parse(probe.stdout) as { ok: boolean; reply?: string }[];
    expect(out[0]?.ok, probe.stdout + probe.stderr).toBe(true);
    expect(out[0]?.reply).toStartWith("web ");
  } finally {
    server.kill();
    await server.exited;
  }

  rmSync(subnetFile);
  const down = cli(host.path, ["pod", "down", "kube-system/web", pod.path, "--id", "sandbox1"], env);
  expect(down.code, down.stderr).toBe(0);
  expect(pod.ip("link", "show").map((l: { ifname: string }) => l.ifname)).not.toContain("eth0");
  expect(existsSync(join(dataDir, "sandbox1"))).toBe(false);
  expect(
    readdirSync(join(work.path, "ipam", "cbr0")).filter((f) =>
      /^(\d+\.\d+\.\d+\.\d+|[0-9a-f]*:[0-9a-f:]+)$/.test(f),
    ),
  ).toEqual([]);
  const nat = host.run(["nft", "-j", "list", "ruleset"]).stdout;
  expect(nat).not.toContain("8080");
  pod.cleanup();
  host.cleanup();
});
