/**
 * whereabouts against a secured etcd and from nodes that are netns of their own: TLS with a client
 * certificate (etcd_ca_cert_file / etcd_cert_file / etcd_key_file), etcd auth (etcd_username /
 * etcd_password), and 2 nodes × 32 parallel ADDs where each node reaches the members over its own
 * veth on a bridge (underlay.ts). The plugin runs as processes (bun src/plugins/ipam/whereabouts/main.ts,
 * or macvlan exec'ing it through CNI_PATH) inside the node netns.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type EtcdCluster, skipUnlessEtcd, startEtcdCluster } from "../../../helpers/etcd.ts";
import { makeNetns, type TempNetns, tempDir } from "../../../helpers/netns.ts";
import { BUN, cni, etcdKeys, makeUnderlay, REPO, type Underlay, WHEREABOUTS } from "./underlay.ts";

const why = skipUnlessEtcd();
const MACVLAN = join(REPO, "src/plugins/main/macvlan/main.ts");
const tmp = tempDir("tscni-wsec-");

/** A CNI_PATH dir whose `whereabouts` execs ours (for macvlan's IPAM delegation). */
function cniPathDir(): string {
  const dir = join(tmp.path, "cni");
  mkdirSync(dir, { recursive: true });
  const file = join(dir, "whereabouts");
  writeFileSync(file, `#!/bin/sh\nexec ${BUN} ${WHEREABOUTS} "$@"\n`);
  chmodSync(file, 0o755);
  return dir;
}

/** A second, unrelated CA (the server's certificate does not chain to it). */
function otherCA(): string {
  const p = Bun.spawnSync(
    [
      "openssl",
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      join(tmp.path, "other-ca.key"),
      "-out",
      join(tmp.path, "other-ca.pem"),
      "-days",
      "1",
      "-subj",
      "/CN=tscni-other-ca",
    ],
    { stdout: "pipe", stderr: "pipe" },
  );
  if (p.exitCode !== 0) throw new Error(`openssl: ${p.stderr}`);
  return join(tmp.path, "other-ca.pem");
}

function linkNames(n: TempNetns): string[] {
  return (n.ip("link", "show") as { ifname: string }[]).map((l) => l.ifname).sort();
}

function ownersOf(kv: Map<string, string>, pool: string): string[] {
  return [...kv.keys()]
    .filter((k) => k.includes(`/pools/${pool}~`) && k.includes("/owners/"))
    .map((k) => k.split("/owners/")[1] as string)
    .sort();
}

function poolKeys(kv: Map<string, string>, pool: string): string[] {
  return [...kv.keys()].filter((k) => k.includes(`/pools/${pool}~`));
}

afterAll(() => tmp.cleanup());

describe.skipIf(!!why)("whereabouts on a TLS etcd (client certificates), node in its own netns", () => {
  let u: Underlay;
  let c: EtcdCluster;
  let node: TempNetns;
  let cniPath: string;
  let seq = 0;
  const tlsFlags = () => [`--cacert=${c.tls?.ca}`, `--cert=${c.tls?.cert}`, `--key=${c.tls?.key}`];
  const keys = () => etcdKeys(c.exec, c.endpoints, tlsFlags());

  beforeAll(async () => {
    u = makeUnderlay("10.77.0");
    c = await startEtcdCluster({ members: 3, tls: true, host: u.etcdAddr, prepare: u.prepare });
    node = u.node("a");
    cniPath = cniPathDir();
  }, 60_000);
  afterAll(async () => {
    await c?.stop();
    u?.cleanup();
  });

  /** A macvlan-on-eth0 config with whereabouts over TLS; `ipam` overrides the TLS keys. */
  function conf(ipam: object = {}) {
    const name = `t${++seq}`;
    return {
      name,
      conf: {
        cniVersion: "1.1.0",
        name: "wsec",
        type: "macvlan",
        master: "eth0",
        ipam: {
          type: "whereabouts",
          range: `10.81.${seq}.0/24`,
          network_name: name,
          node_name: "node-a",
          etcd_host: c.endpoints.join(","),
          etcd_ca_cert_file: c.tls?.ca,
          etcd_cert_file: c.tls?.cert,
          etcd_key_file: c.tls?.key,
          etcd_timeout_ms: 3000,
          ...ipam,
        },
      },
    };
  }

  test("ADD over https with CA, cert and key gives an address; DEL releases it; macvlan with it in a pod netns too", async () => {
    expect(c.endpoints[0]).toStartWith(`https://${u.etcdAddr}:`);
    const p = conf();
    const add = await cni(
      node.name,
      [BUN, WHEREABOUTS],
      { CNI_COMMAND: "ADD", CNI_CONTAINERID: "c1" },
      p.conf,
    );
    expect(add.stderr).toBe("");
    expect(add.code).toBe(0);
    expect(add.json.ips[0].address).toMatch(/^10\.81\.\d+\.\d+\/24$/);
    expect(ownersOf(await keys(), p.name)).toEqual(["c1/eth0"]);
    const del = await cni(
      node.name,
      [BUN, WHEREABOUTS],
      { CNI_COMMAND: "DEL", CNI_CONTAINERID: "c1" },
      p.conf,
    );
    expect(del.code).toBe(0);
    expect(poolKeys(await keys(), p.name)).toEqual([]);

    const pod = makeNetns("wpod");
    try {
      const env = { CNI_CONTAINERID: "m1", CNI_NETNS: pod.path };
      const m = await cni(node.name, [BUN, MACVLAN], { CNI_COMMAND: "ADD", ...env }, p.conf, cniPath);
      expect(m.stderr).toBe("");
      expect(m.code).toBe(0);
      const addr = (
        pod.ip("addr", "show", "dev", "eth0") as { addr_info: { local: string }[] }[]
      )[0]?.addr_info.map((a) => a.local);
      expect(addr).toContain(String(m.json.ips[0].address).split("/")[0]);
      expect(ownersOf(await keys(), p.name)).toEqual(["m1/eth0"]);
      const md = await cni(node.name, [BUN, MACVLAN], { CNI_COMMAND: "DEL", ...env }, p.conf, cniPath);
      expect(md.code).toBe(0);
      expect(linkNames(pod)).toEqual(["lo"]);
      expect(poolKeys(await keys(), p.name)).toEqual([]);
    } finally {
      pod.cleanup();
    }
  }, 60_000);

  test("a CA that did not sign the server: ADD fails naming etcd (exit 1), nothing reserved, macvlan leaves no link", async () => {
    const p = conf({ etcd_ca_cert_file: otherCA() });
    const add = await cni(
      node.name,
      [BUN, WHEREABOUTS],
      { CNI_COMMAND: "ADD", CNI_CONTAINERID: "w1" },
      p.conf,
    );
    expect(add.code).toBe(1);
    expect(add.json.msg).toMatch(/etcd/);
    expect(add.json.msg).toMatch(/certificate|verify|self.signed|issuer/i);
    // Not 11 (try again later): a wrong CA does not heal by retrying.
    expect(add.json.code).toBe(999);

    const pod = makeNetns("wpod");
    try {
      const env = { CNI_CONTAINERID: "w2", CNI_NETNS: pod.path };
      const m = await cni(node.name, [BUN, MACVLAN], { CNI_COMMAND: "ADD", ...env }, p.conf, cniPath);
      expect(m.code).toBe(1);
      expect(m.json.msg).toMatch(/etcd/);
      expect(linkNames(pod)).toEqual(["lo"]);
      expect(linkNames(node)).toEqual(["eth0", "lo"]);
    } finally {
      pod.cleanup();
    }
    // Nothing of either attempt is in etcd (read with the right CA).
    expect(poolKeys(await keys(), p.name)).toEqual([]);
  }, 60_000);

  test("no client certificate (CA only): the server refuses the handshake, ADD fails naming etcd, nothing reserved", async () => {
    const p = conf({ etcd_cert_file: undefined, etcd_key_file: undefined });
    const add = await cni(
      node.name,
      [BUN, WHEREABOUTS],
      { CNI_COMMAND: "ADD", CNI_CONTAINERID: "n1" },
      p.conf,
    );
    expect(add.code).toBe(1);
    expect(add.json.msg).toMatch(/etcd/);
    expect(poolKeys(await keys(), p.name)).toEqual([]);
  }, 60_000);

  test("a missing or unreadable cert, key or CA file: a CNI error naming the key and the file", async () => {
    const missing = join(tmp.path, "nope", "client.pem");
    const dir = join(tmp.path, "a-directory");
    mkdirSync(dir, { recursive: true });
    for (const [key, file, why] of [
      ["etcd_cert_file", missing, /ENOENT|no such file/i],
      ["etcd_key_file", missing, /ENOENT|no such file/i],
      ["etcd_ca_cert_file", missing, /ENOENT|no such file/i],
      ["etcd_cert_file", dir, /EISDIR|directory/i],
    ] as const) {
      const p = conf({ [key]: file });
      const add = await cni(
        node.name,
        [BUN, WHEREABOUTS],
        { CNI_COMMAND: "ADD", CNI_CONTAINERID: "f1" },
        p.conf,
      );
      expect(add.code).toBe(1);
      expect(add.json.msg).toContain(`${key} ${file}`);
      expect(add.json.msg).toMatch(why);
      expect(add.json.code).toBe(5);
    }
  }, 60_000);
});

describe.skipIf(!!why)("whereabouts on an etcd with auth enabled (etcd_username / etcd_password)", () => {
  let u: Underlay;
  let c: EtcdCluster;
  let node: TempNetns;
  let seq = 0;
  const root = ["--user=root:r00tpw"];
  const etcdctl = (args: string[], auth: string[] = []) =>
    c.exec(["etcdctl", `--endpoints=${c.endpoints.join(",")}`, ...auth, ...args], {
      env: { ETCDCTL_API: "3" },
      timeoutMs: 15_000,
    });
  const keys = () => etcdKeys(c.exec, c.endpoints, root);

  beforeAll(async () => {
    u = makeUnderlay("10.78.0");
    c = await startEtcdCluster({ members: 3, host: u.etcdAddr, prepare: u.prepare });
    node = u.node("a");
    // A user "cni" that may read and write the IPAM prefix only; root exists for auth enable.
    for (const args of [
      ["user", "add", "root:r00tpw"],
      ["user", "add", "cni:s3cret"],
      ["role", "add", "ipam"],
      ["role", "grant-permission", "ipam", "--prefix=true", "readwrite", "/tscni/ipam/"],
      ["user", "grant-role", "cni", "ipam"],
      ["auth", "enable"],
    ]) {
      const r = await etcdctl(args);
      if (r.code !== 0) throw new Error(`etcdctl ${args.join(" ")}: ${r.stderr}`);
    }
  }, 60_000);
  afterAll(async () => {
    await c?.stop();
    u?.cleanup();
  });

  function conf(ipam: object = {}) {
    const name = `a${++seq}`;
    return {
      name,
      conf: {
        cniVersion: "1.1.0",
        name: "wauth",
        type: "macvlan",
        ipam: {
          type: "whereabouts",
          range: `10.82.${seq}.0/24`,
          network_name: name,
          node_name: "node-a",
          etcd_host: c.endpoints.join(","),
          etcd_username: "cni",
          etcd_password: "s3cret",
          etcd_timeout_ms: 3000,
          ...ipam,
        },
      },
    };
  }

  test("ADD, CHECK, STATUS and DEL work as a user with a role on the prefix", async () => {
    expect((await etcdctl(["get", "/tscni/ipam/x"])).code).not.toBe(0); // auth is on
    const p = conf();
    const run = (command: string, id = "u1") =>
      cni(node.name, [BUN, WHEREABOUTS], { CNI_COMMAND: command, CNI_CONTAINERID: id }, p.conf);
    const add = await run("ADD");
    expect(add.stderr).toBe("");
    expect(add.code).toBe(0);
    expect(add.json.ips[0].address).toMatch(/^10\.82\.\d+\.\d+\/24$/);
    expect(ownersOf(await keys(), p.name)).toEqual(["u1/eth0"]);
    // Parallel ADDs authenticate each on its own (a process each) and still get distinct addresses.
    const par = await Promise.all(Array.from({ length: 8 }, (_, i) => run("ADD", `u${i + 2}`)));
    expect(par.filter((o) => o.code !== 0).map((o) => o.stdout)).toEqual([]);
    expect(new Set([add, ...par].map((o) => o.json.ips[0].address)).size).toBe(9);
    expect((await run("CHECK")).code).toBe(0);
    expect((await run("STATUS")).code).toBe(0);
    for (let i = 1; i <= 9; i++) expect((await run("DEL", `u${i}`)).code).toBe(0);
    expect(poolKeys(await keys(), p.name)).toEqual([]);
  }, 60_000);

  test("a wrong password, or no user: ADD fails naming etcd, nothing reserved", async () => {
    const wrong = conf({ etcd_password: "not-it" });
    const a = await cni(
      node.name,
      [BUN, WHEREABOUTS],
      { CNI_COMMAND: "ADD", CNI_CONTAINERID: "x1" },
      wrong.conf,
    );
    expect(a.code).toBe(1);
    expect(a.json.msg).toMatch(/etcd/);
    expect(a.json.msg).toMatch(/authentication failed/);
    expect(poolKeys(await keys(), wrong.name)).toEqual([]);

    const anon = conf({ etcd_username: undefined, etcd_password: undefined });
    const b = await cni(
      node.name,
      [BUN, WHEREABOUTS],
      { CNI_COMMAND: "ADD", CNI_CONTAINERID: "x2" },
      anon.conf,
    );
    expect(b.code).toBe(1);
    expect(b.json.msg).toMatch(/etcd/);
    expect(poolKeys(await keys(), anon.name)).toEqual([]);
  }, 60_000);
});

describe.skipIf(!!why)("whereabouts with each node in its own netns, reaching etcd over a link", () => {
  let u: Underlay;
  let c: EtcdCluster;
  let nodes: TempNetns[];

  beforeAll(async () => {
    u = makeUnderlay("10.79.0");
    c = await startEtcdCluster({ members: 3, host: u.etcdAddr, prepare: u.prepare });
    nodes = [u.node("a"), u.node("b")];
  }, 60_000);
  afterAll(async () => {
    await c?.stop();
    u?.cleanup();
  });

  test("2 nodes × 32 parallel ADDs, each node from its netns: 64 distinct addresses, each recorded for its node; DEL of all empties the range", async () => {
    // The node netns have no route to anything but the underlay: etcd is reached over eth0.
    for (const n of nodes) {
      expect(n.ip("route", "get", u.etcdAddr)[0].dev).toBe("eth0");
      expect(linkNames(n)).toEqual(["eth0", "lo"]);
    }
    const conf = (node: string) => ({
      cniVersion: "1.1.0",
      name: "wnodes",
      type: "macvlan",
      ipam: {
        type: "whereabouts",
        range: "10.83.0.0/24",
        block_size: 27,
        node_name: node,
        etcd_host: c.endpoints.join(","),
        etcd_timeout_ms: 3000,
      },
    });
    const jobs = nodes.flatMap((n, i) =>
      Array.from({ length: 32 }, (_, k) => ({ ns: n.name, node: `node-${i}`, id: `n${i}-c${k}` })),
    );
    const run = (command: string, j: (typeof jobs)[number]) =>
      cni(j.ns, [BUN, WHEREABOUTS], { CNI_COMMAND: command, CNI_CONTAINERID: j.id }, conf(j.node));
    const outs = await Promise.all(jobs.map((j) => run("ADD", j)));
    expect(outs.filter((o) => o.code !== 0).map((o) => o.stdout)).toEqual([]);
    const addrs = outs.map((o) => o.json.ips[0].address as string);
    expect(new Set(addrs).size).toBe(64);
    for (const a of addrs) expect(a).toMatch(/^10\.83\.0\.\d+\/24$/);

    const kv = await etcdKeys(c.exec, c.endpoints, []);
    const recs = [...kv]
      .filter(([k]) => k.includes("/ips/"))
      .map(([, v]) => JSON.parse(v) as { containerID: string; node: string });
    expect(recs).toHaveLength(64);
    for (const r of recs) expect(r.node).toBe(`node-${r.containerID.slice(1, 2)}`);

    const dels = await Promise.all(jobs.map((j) => run("DEL", j)));
    expect(dels.filter((d) => d.code !== 0).map((d) => d.stdout)).toEqual([]);
    expect([...(await etcdKeys(c.exec, c.endpoints, [])).keys()]).toEqual([]);
  }, 90_000);

  test("two members down: macvlan + whereabouts ADD from a node fails naming etcd with no link and no key; members back: the same ADD succeeds", async () => {
    const node = nodes[0] as TempNetns;
    const conf = {
      cniVersion: "1.1.0",
      name: "wquorum",
      type: "macvlan",
      master: "eth0",
      ipam: {
        type: "whereabouts",
        range: "10.84.0.0/24",
        node_name: "node-0",
        etcd_host: c.endpoints.join(","),
        etcd_timeout_ms: 1500,
      },
    };
    const pod = makeNetns("wq");
    const env = { CNI_CONTAINERID: "q1", CNI_NETNS: pod.path };
    const cniPath = cniPathDir();
    try {
      c.members[1]?.kill();
      c.members[2]?.kill();
      const failed = await cni(node.name, [BUN, MACVLAN], { CNI_COMMAND: "ADD", ...env }, conf, cniPath);
      expect(failed.code).toBe(1);
      expect(failed.json.code).toBe(11);
      expect(failed.json.msg).toMatch(/etcd/);
      expect(linkNames(pod)).toEqual(["lo"]);
      expect(linkNames(node)).toEqual(["eth0", "lo"]);

      await Promise.all([c.members[1]?.start(), c.members[2]?.start()]);
      await c.waitHealthy(3);
      expect([...(await etcdKeys(c.exec, c.endpoints, [])).keys()]).toEqual([]);
      const ok = await cni(node.name, [BUN, MACVLAN], { CNI_COMMAND: "ADD", ...env }, conf, cniPath);
      expect(ok.stdout).toContain("10.84.0.");
      expect(ok.code).toBe(0);
      expect(linkNames(pod)).toEqual(["eth0", "lo"]);
      const del = await cni(node.name, [BUN, MACVLAN], { CNI_COMMAND: "DEL", ...env }, conf, cniPath);
      expect(del.code).toBe(0);
      expect([...(await etcdKeys(c.exec, c.endpoints, [])).keys()]).toEqual([]);
    } finally {
      pod.cleanup();
    }
  }, 90_000);
});
