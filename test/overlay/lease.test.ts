/**
 * Node subnet leases in flannel's etcd layout (src/overlay/lease.ts) on a real 3-member etcd, and the
 * subnet.env they produce, read back by our flannel plugin's parser.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { parseNetworkConfig } from "../../src/overlay/lease.ts";
import { subnetEnvText } from "../../src/overlay/subnet-env.ts";
import { parseSubnetEnv } from "../../src/plugins/meta/flannel/subnet-env.ts";
import { type EtcdCluster, skipUnlessEtcd, startEtcdCluster } from "../helpers/etcd.ts";

const DRIVER = join(import.meta.dir, "lease-driver.ts");
const why = skipUnlessEtcd();
let c: EtcdCluster;
let seq = 0;

// biome-ignore lint/suspicious/noExplicitAny: the driver's JSON
async function drive(steps: unknown[]): Promise<any[]> {
  const prefix = `/test-${++seq}/network`;
  const r = await c.runBun(DRIVER, [], {
    stdin: JSON.stringify({ endpoints: c.endpoints, prefix, steps }),
    timeoutMs: 90_000,
  });
  if (r.code !== 0) throw new Error(`driver failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout);
}

const CONFIG = JSON.stringify({
  Network: "10.244.0.0/16",
  SubnetLen: 24,
  Backend: { Type: "vxlan", VNI: 1 },
});
const node = (i: number, ttl = 60) => ({ publicIP: `192.168.50.${i}`, vtepMAC: `02:00:00:00:00:0${i}`, ttl });

describe("network config and subnet.env (no etcd needed)", () => {
  test("flanneld's defaults and bounds", () => {
    expect(parseNetworkConfig(CONFIG)).toEqual({
      network: "10.244.0.0/16",
      subnetLen: 24,
      subnetMin: "10.244.1.0",
      subnetMax: "10.244.255.0",
      backend: { type: "vxlan", vni: 1, port: 8472 },
    });
    expect(parseNetworkConfig('{"Network": "10.0.0.0/8"}').subnetLen).toBe(24);
    expect(parseNetworkConfig('{"Network": "10.1.0.0/26"}').subnetLen).toBe(28);
    expect(() => parseNetworkConfig('{"Network": "10.1.0.0/29"}')).toThrow("too small");
    const dual = parseNetworkConfig(
      '{"Network": "10.244.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:10::/56", "Backend": {"Type": "vxlan"}}',
    );
    expect(dual.ipv6).toEqual({
      network: "fd00:10::/56",
      subnetLen: 64,
      subnetMin: "fd00:10:0:1::",
      subnetMax: "fd00:10:0:ff::",
    });
    expect(() => parseNetworkConfig('{"Network": "10.0.0.0/8", "EnableIPv4": false}')).toThrow("IPv6 only");
    expect(() => parseNetworkConfig("{}")).toThrow('"Network" (an IPv4 CIDR) is required');
    expect(() => parseNetworkConfig('{"Network": "10.1.0.0/16", "SubnetLen": 8}')).toThrow("SubnetLen 8");
    expect(() => parseNetworkConfig("nope")).toThrow("not JSON");
  });

  test("subnet.env as flanneld writes it, read back by our flannel plugin", () => {
    const text = subnetEnvText({
      network: "10.244.0.0/16",
      subnet: "10.244.3.0/24",
      mtu: 1450,
      ipMasq: true,
    });
    expect(text).toBe(
      "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
    );
    const env = parseSubnetEnv(text, "subnet.env");
    expect(env.mtu).toBe(1450);
    expect(env.ipMasq).toBe(true);
  });
});

describe.skipIf(!!why)("subnet leases on a 3-member etcd", () => {
  beforeAll(async () => {
    c = await startEtcdCluster({ members: 3, basePort: 24791 });
  }, 60_000);
  afterAll(async () => {
    await c?.stop();
  });

  test("two nodes get distinct subnets; a restarted node gets its own back; 8 at once are all distinct", async () => {
    const r = await drive([
      ["config", CONFIG],
      ["acquire", node(1)],
      ["acquire", node(2)],
      ["acquire", { ...node(1), vtepMAC: "02:00:00:00:00:aa" }],
      ["list"],
      [3, 4, 5, 6, 7, 8, 9, 10].map((i) => ["acquire", { ...node(i), vtepMAC: "02:00:00:00:00:99" }]),
      ["list"],
    ]);
    expect(r[1].ok).toMatchObject({ subnet: "10.244.1.0/24", publicIP: "192.168.50.1", vni: 1 });
    expect(r[2].ok.subnet).toBe("10.244.2.0/24");
    expect(r[3].ok).toMatchObject({ subnet: "10.244.1.0/24", vtepMAC: "02:00:00:00:00:aa" });
    expect(r[4].ok).toEqual([
      {
        subnet: "10.244.1.0/24",
        publicIP: "192.168.50.1",
        backendType: "vxlan",
        vni: 1,
        vtepMAC: "02:00:00:00:00:aa",
      },
      {
        subnet: "10.244.2.0/24",
        publicIP: "192.168.50.2",
        backendType: "vxlan",
        vni: 1,
        vtepMAC: "02:00:00:00:00:02",
      },
    ]);
    const parallel = (r[5] as { ok?: { subnet: string }; error?: string }[]).map(
      (x) => x.ok?.subnet ?? x.error,
    );
    expect(new Set(parallel).size).toBe(8);
    expect(r[6].ok).toHaveLength(10);
  }, 120_000);

  test("a lease not renewed expires with its TTL; a renewed one stays", async () => {
    const r = await drive([
      ["config", CONFIG],
      ["acquire", node(1, 2)],
      ["acquire", node(2, 2)],
      ["sleep", 1000],
      ["renew", 1, 2],
      ["sleep", 1000],
      ["renew", 1, 2],
      ["sleep", 1600],
      ["list"],
    ]);
    expect(r[4].ok).toBe(true);
    expect(r[6].ok).toBe(true);
    expect(r[8].ok.map((l: { publicIP: string }) => l.publicIP)).toEqual(["192.168.50.2"]);
  }, 120_000);
});
