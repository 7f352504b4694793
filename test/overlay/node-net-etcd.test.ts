/**
 * `tscni node-net` against a secured etcd, with flanneld's flags: a TLS etcd that wants a client
 * certificate (--etcd-cafile/--etcd-certfile/--etcd-keyfile) and one with auth enabled
 * (--etcd-username/--etcd-password). The daemon runs inside the etcd netns on a veth "underlay"; it
 * must lease a subnet (the key is read back with etcdctl) and write subnet.env.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { type EtcdCluster, skipUnlessEtcd, startEtcdCluster } from "../helpers/etcd.ts";
import { cleanupAll, type TempNetns, tempDir } from "../helpers/netns.ts";

const why = skipUnlessEtcd();
const REPO = join(import.meta.dir, "../..");
const BUN = join(REPO, "node_modules/.bin/bun");
const MAIN = join(REPO, "src/cli/main.ts");
const CONFIG = '{"Network":"10.245.0.0/16","Backend":{"Type":"vxlan","VNI":7}}';
const clusters: EtcdCluster[] = [];
const daemons: ChildProcess[] = [];

afterAll(async () => {
  for (const d of daemons) d.kill("SIGKILL");
  for (const c of clusters) await c.stop();
  cleanupAll();
});

function underlay(n: TempNetns): void {
  for (const cmd of [
    ["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"],
    ["ip", "addr", "add", "192.168.60.1/24", "dev", "eth0"],
    ["ip", "link", "set", "eth0p", "up"],
    ["ip", "link", "set", "eth0", "up"],
  ]) {
    const r = n.run(cmd);
    if (r.code !== 0) throw new Error(`${cmd.join(" ")}: ${r.stderr}`);
  }
}

async function etcdctl(c: EtcdCluster, args: string[], auth: string[] = []) {
  const tls = c.tls ? [`--cacert=${c.tls.ca}`, `--cert=${c.tls.cert}`, `--key=${c.tls.key}`] : [];
  return c.exec(["etcdctl", `--endpoints=${c.endpoints.join(",")}`, ...tls, ...auth, ...args], {
    env: { ETCDCTL_API: "3" },
  });
}

/** Runs the daemon in the cluster's netns until subnet.env appears; stops it with SIGTERM. */
async function leaseOnce(c: EtcdCluster, flags: string[]): Promise<{ env: string; log: string }> {
  const file = join(tempDir("tscni-nne-").path, "subnet.env");
  const d = spawn(
    "ip",
    ["netns", "exec", c.netns.name, BUN, MAIN, "node-net", "--iface=eth0", `--subnet-file=${file}`, ...flags],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  daemons.push(d);
  let log = "";
  d.stderr?.on("data", (b: Buffer) => {
    log += b.toString();
  });
  const exited = new Promise<number | null>((r) => d.once("exit", (code) => r(code)));
  const deadline = Date.now() + 20_000;
  while (!existsSync(file) && Date.now() < deadline && d.exitCode === null) await Bun.sleep(100);
  d.kill("SIGTERM");
  const code = await exited;
  if (!existsSync(file)) throw new Error(`no subnet.env (exit ${code}): ${log}`);
  expect(code).toBe(0);
  return { env: readFileSync(file, "utf8"), log };
}

describe.skipIf(!!why)("node-net on a secured etcd", () => {
  test("TLS with a client certificate: --etcd-cafile, --etcd-certfile, --etcd-keyfile", async () => {
    const c = await startEtcdCluster({ members: 1, basePort: 26791, tls: true, prepare: underlay });
    clusters.push(c);
    expect(c.endpoints[0]).toStartWith("https://");
    expect((await etcdctl(c, ["put", "/coreos.com/network/config", CONFIG])).stdout.trim()).toBe("OK");
    const tls = c.tls!;
    const { env } = await leaseOnce(c, [
      `--etcd-endpoints=${c.endpoints.join(",")}`,
      "--etcd-cafile",
      tls.ca,
      "--etcd-certfile",
      tls.cert,
      "--etcd-keyfile",
      tls.key,
    ]);
    expect(env).toContain("FLANNEL_NETWORK=10.245.0.0/16\nFLANNEL_SUBNET=10.245.");
    const keys = await etcdctl(c, ["get", "--prefix", "--keys-only", "/coreos.com/network/subnets/"]);
    expect(keys.stdout).toMatch(/\/coreos\.com\/network\/subnets\/10\.245\.\d+\.0-24/);
  }, 60_000);

  test("auth enabled: --etcd-username, --etcd-password (and refused without them)", async () => {
    const c = await startEtcdCluster({ members: 1, basePort: 26891, prepare: underlay });
    clusters.push(c);
    const root = ["--user=root:s3cret"];
    for (const args of [
      ["user", "add", "root:s3cret"],
      ["auth", "enable"],
    ]) {
      const r = await etcdctl(c, args);
      expect(r.code, r.stderr).toBe(0);
    }
    expect((await etcdctl(c, ["put", "/coreos.com/network/config", CONFIG], root)).stdout.trim()).toBe("OK");
    const denied = await etcdctl(c, ["get", "/coreos.com/network/config"]);
    expect(denied.code).not.toBe(0);
    const { env } = await leaseOnce(c, [
      "--etcd-endpoints",
      c.endpoints.join(","),
      "--etcd-username=root",
      "--etcd-password=s3cret",
    ]);
    expect(env).toContain("FLANNEL_SUBNET=10.245.");
    const keys = await etcdctl(c, ["get", "--prefix", "--keys-only", "/coreos.com/network/subnets/"], root);
    expect(keys.stdout).toMatch(/subnets\/10\.245\.\d+\.0-24/);
  }, 60_000);
});
