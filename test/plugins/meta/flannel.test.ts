/**
 * flannel: subnet.env parsing and the delegate derivation (also against upstream's flannel plugin,
 * built from flannel-io/cni-plugin's source when /usr/lib/cni/flannel is absent), and end to end with
 * our bridge + host-local as the delegate in throwaway netns, DEL after subnet.env is gone.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { deriveDelegate, parseConfig } from "../../../src/plugins/meta/flannel/config.ts";
import { parseSubnetEnv } from "../../../src/plugins/meta/flannel/subnet-env.ts";
import { CniError } from "../../../src/spec/errors.ts";
import { cleanupAll, makeNetns, tempDir } from "../../helpers/netns.ts";
import { runPlugin, writePluginWrappers } from "../_run.ts";

afterAll(cleanupAll);

const enc = new TextEncoder();
const V4_ENV =
  "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.17.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=true\n";
const DUAL_ENV =
  "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.17.1/24\n" +
  "FLANNEL_IPV6_NETWORK=fd10::/56\nFLANNEL_IPV6_SUBNET=fd10:0:0:11::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n";

function cniError(fn: () => unknown): CniError {
  try {
    fn();
  } catch (err) {
    if (err instanceof CniError) return err;
    throw err;
  }
  throw new Error("did not throw");
}

describe("subnet.env", () => {
  test("parses, masks host bits, dedups networks", () => {
    const e = parseSubnetEnv(`${V4_ENV}FLANNEL_NETWORK=10.1.0.0/16,10.1.0.5/16\nOTHER=x\n`, "/f");
    expect(e.networks.length).toBe(1);
    expect(e.mtu).toBe(1472);
    expect(e.ipMasq).toBe(true);
    const cfg = deriveDelegate(parseConfig(enc.encode('{"name":"n","type":"flannel"}')), e);
    expect(cfg.ipam).toEqual({
      type: "host-local",
      ranges: [[{ subnet: "10.1.17.0/24" }]],
      routes: [{ dst: "10.1.0.0/16" }],
    });
  });
  test("errors name the file and the bad line", () => {
    const bad = cniError(() =>
      parseSubnetEnv("FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.17/24\n", "/run/x.env"),
    );
    expect(bad.code).toBe(7);
    expect(bad.msg).toContain("/run/x.env:2:");
    expect(bad.msg).toContain("FLANNEL_SUBNET=10.1.17/24");
    const mtu = cniError(() => parseSubnetEnv("FLANNEL_MTU=abc\n", "/e"));
    expect(mtu.msg).toContain("/e:1:");
    const missing = cniError(() => parseSubnetEnv("FLANNEL_NETWORK=10.1.0.0/16\n", "/e"));
    expect(missing.msg).toBe(
      "/e is missing FLANNEL_SUBNET, FLANNEL_IPV6_SUBNET, FLANNEL_MTU, FLANNEL_IPMASQ",
    );
    const outside = cniError(() => parseSubnetEnv(V4_ENV.replace("10.1.17.1/24", "10.2.17.1/24"), "/e"));
    expect(outside.msg).toContain("outside the network 10.1.0.0/16");
  });
  test("delegate keys override, name/ipam in delegate refused, runtimeConfig passes", () => {
    const e = parseSubnetEnv(DUAL_ENV, "/f");
    const conf = parseConfig(
      enc.encode(
        JSON.stringify({
          cniVersion: "1.0.0",
          name: "cbr0",
          type: "flannel",
          delegate: { hairpinMode: true, isDefaultGateway: true, mtu: 1400, ipMasq: true },
          ipam: { routes: [{ dst: "192.168.0.0/16" }], dataDir: "/x" },
          runtimeConfig: { portMappings: [] },
        }),
      ),
    );
    expect(deriveDelegate(conf, e)).toEqual({
      cniVersion: "1.0.0",
      name: "cbr0",
      type: "bridge",
      hairpinMode: true,
      isDefaultGateway: true,
      isGateway: true,
      mtu: 1400,
      ipMasq: true,
      runtimeConfig: { portMappings: [] },
      ipam: {
        type: "host-local",
        dataDir: "/x",
        ranges: [[{ subnet: "10.1.17.0/24" }], [{ subnet: "fd10:0:0:11::/64" }]],
        routes: [{ dst: "192.168.0.0/16" }, { dst: "10.1.0.0/16" }, { dst: "fd10::/56" }],
      },
    });
    for (const key of ["name", "ipam"]) {
      const c = parseConfig(
        enc.encode(JSON.stringify({ name: "n", type: "flannel", delegate: { [key]: "x" } })),
      );
      expect(cniError(() => deriveDelegate(c, e)).msg).toContain(`must not have '${key}'`);
    }
  });
});

/** upstream's flannel: the installed binary, else built from the fetched source with Debian's Go. */
function upstreamFlannel(dir: string): string | undefined {
  if (existsSync("/usr/lib/cni/flannel")) return "/usr/lib/cni/flannel";
  const src = process.env.FLANNEL_SRC ?? "/work/.mirror/flannel-io+cni-plugin/repo";
  if (!existsSync(src) || Bun.spawnSync(["which", "go"]).exitCode !== 0) return undefined;
  const build = join(dir, "src");
  mkdirSync(build);
  for (const f of ["flannel.go", "flannel_linux.go"]) {
    const p = Bun.spawnSync(["git", "-C", src, "show", `HEAD:${f}`]);
    if (p.exitCode !== 0) return undefined;
    writeFileSync(join(build, f), p.stdout);
  }
  const out = join(dir, "flannel");
  const p = Bun.spawnSync(["go", "build", "-o", out, "."], {
    cwd: build,
    env: {
      ...process.env,
      GO111MODULE: "off",
      GOPATH: "/usr/share/gocode",
      GOCACHE: join(dir, "cache"),
      GOFLAGS: "",
    },
  });
  return p.exitCode === 0 ? out : undefined;
}

const FAKE = `#!/bin/sh\ncat >/dev/null\necho '{"cniVersion":"1.0.0","ips":[{"address":"10.1.17.2/24"}]}'\n`;

describe("against upstream", () => {
  const dir = tempDir("flannel-up");
  const up = upstreamFlannel(dir.path);
  test.skipIf(!up)(
    `saves the same delegate config as upstream${up ? "" : " (skipped: no upstream flannel)"}`,
    async () => {
      const host = makeNetns("flh");
      const bin = join(dir.path, "bin");
      mkdirSync(bin, { recursive: true });
      // The delegate only answers: the saved file is what is compared.
      writeFileSync(join(bin, "bridge"), FAKE);
      writeFileSync(join(bin, "ipvlan"), FAKE);
      chmodSync(join(bin, "bridge"), 0o755);
      chmodSync(join(bin, "ipvlan"), 0o755);
      const cases: [string, object][] = [
        [
          V4_ENV,
          {
            cniVersion: "1.0.0",
            name: "cbr0",
            type: "flannel",
            delegate: { hairpinMode: true, isDefaultGateway: true },
          },
        ],
        [
          DUAL_ENV,
          {
            cniVersion: "0.3.1",
            name: "dual",
            type: "flannel",
            runtimeConfig: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }] },
          },
        ],
        [
          V4_ENV,
          {
            name: "ipv",
            type: "flannel",
            delegate: { type: "ipvlan", master: "eth0", ipMasq: false },
            ipam: { routes: [{ dst: "10.9.0.0/16", gw: "10.1.17.254" }], dataDir: "/x" },
          },
        ],
      ];
      for (const [i, [envText, base]] of cases.entries()) {
        const saved: unknown[] = [];
        for (const who of ["ours", "up"] as const) {
          const data = join(dir.path, `${who}-${i}`);
          const subnetFile = join(dir.path, `subnet-${i}.env`);
          writeFileSync(subnetFile, envText);
          const r = await runPlugin({
            plugin: who === "ours" ? "flannel" : up!,
            hostNetns: host.name,
            env: { CNI_COMMAND: "ADD", CNI_CONTAINERID: "c1", CNI_NETNS: host.path, CNI_PATH: bin },
            config: { ...base, subnetFile, dataDir: data },
          });
          expect(r.code, `${who}: ${r.stdout} ${r.stderr}`).toBe(0);
          saved.push(JSON.parse(readFileSync(join(data, "c1"), "utf8")));
        }
        expect(saved[0]).toEqual(saved[1]);
      }
      host.cleanup();
    },
  );
});

describe("end to end (bridge + host-local delegate)", () => {
  test("ADD gives an address in FLANNEL_SUBNET with FLANNEL_MTU and routes; DEL after subnet.env is gone", async () => {
    const host = makeNetns("flh");
    const ctr = makeNetns("flc");
    const work = tempDir("flannel-e2e");
    const bin = join(work.path, "bin");
    writePluginWrappers(bin, [
      ["bridge", "main"],
      ["host-local", "ipam"],
    ]);
    const subnetFile = join(work.path, "subnet.env");
    writeFileSync(subnetFile, DUAL_ENV);
    const dataDir = join(work.path, "flannel");
    const config = {
      cniVersion: "1.0.0",
      name: "cbr0",
      type: "flannel",
      subnetFile,
      dataDir,
      delegate: { isDefaultGateway: true, bridge: "cni0" },
      ipam: { dataDir: join(work.path, "ipam") },
    };
    const env = { CNI_CONTAINERID: "pod1", CNI_NETNS: ctr.path, CNI_PATH: bin };
    const add = await runPlugin({
      plugin: "flannel",
      hostNetns: host.name,
      env: { ...env, CNI_COMMAND: "ADD" },
      config,
    });
    expect(add.code, add.stdout + add.stderr).toBe(0);
    const ips = (add.json.ips as { address: string }[]).map((i) => i.address).sort();
    expect(ips[0]).toMatch(/^10\.1\.17\.\d+\/24$/);
    expect(ips[1]).toMatch(/^fd10:0:0:11::[0-9a-f]+\/64$/);
    const [eth0] = ctr.ip("link", "show", "eth0");
    expect(eth0.mtu).toBe(1450);
    const routes = ctr.ip("route", "show").map((r: { dst: string }) => r.dst);
    expect(routes).toContain("10.1.0.0/16");
    expect(routes).toContain("default");
    expect(ctr.ip("-6", "route", "show").map((r: { dst: string }) => r.dst)).toContain("fd10::/56");
    expect(host.ip("addr", "show", "cni0")[0].addr_info.map((a: { local: string }) => a.local)).toContain(
      "10.1.17.1",
    );
    expect(ctr.run(["ping", "-c", "1", "-W", "2", "10.1.17.1"]).code).toBe(0);
    expect(existsSync(join(dataDir, "pod1"))).toBe(true);

    rmSync(subnetFile);
    const del = await runPlugin({
      plugin: "flannel",
      hostNetns: host.name,
      env: { ...env, CNI_COMMAND: "DEL" },
      config,
    });
    expect(del.code, del.stdout + del.stderr).toBe(0);
    expect(ctr.ip("link", "show").map((l: { ifname: string }) => l.ifname)).not.toContain("eth0");
    expect(existsSync(join(dataDir, "pod1"))).toBe(false);
    expect(existsSync(join(work.path, "ipam", "cbr0", ips[0]!.split("/")[0]!))).toBe(false);
    // Idempotent: a second DEL has nothing to do.
    const again = await runPlugin({
      plugin: "flannel",
      hostNetns: host.name,
      env: { ...env, CNI_COMMAND: "DEL" },
      config,
    });
    expect(again.code).toBe(0);
    // ADD without subnet.env: a clear error naming the file.
    const noFile = await runPlugin({
      plugin: "flannel",
      hostNetns: host.name,
      env: { ...env, CNI_COMMAND: "ADD" },
      config,
    });
    expect(noFile.code).toBe(1);
    expect(noFile.json.msg).toContain(subnetFile);
    ctr.cleanup();
    host.cleanup();
  });
});
