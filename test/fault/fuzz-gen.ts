/**
 * The fuzz suite's generators (fast-check): one CNI invocation = plugin × verb × environment × stdin.
 * Stdin is a valid config of that plugin with mutations applied (keys deleted, values replaced by wrong
 * types, huge and negative numbers, deep nesting, unicode and NUL bytes, extra keys), or raw garbage
 * (random JSON, invalid JSON, random bytes, multi-MB input). The environment mixes valid values with
 * hostile ones (garbage verbs, CNI_NETNS at a file, a dir, the runner's own netns, a missing path; long or
 * `/`-containing interface names; `../` container ids; malformed CNI_ARGS).
 */
import fc from "fast-check";

export interface Sandbox {
  /** Root of everything the plugins may write (data dirs) or read (files, dirs, the IPAM links). */
  root: string;
  /** The configured data dir; every plugin's config points its state under here. */
  data: string;
  /** CNI_PATH: links to the multicall executable, one per plugin. */
  bin: string;
  /** A regular file and a directory, for CNI_NETNS. */
  file: string;
  dir: string;
  /** A throwaway container netns (its /var/run/netns path), empty: for the main and IPAM plugins. */
  netns: string;
  /** One with eth0 already there (a veth, peer fzh0 in the host netns): for the meta plugins. */
  metaNetns: string;
  /** flannel's subnet.env. */
  subnetEnv: string;
}

export const FUZZ_PLUGINS = [
  "bridge",
  "ptp",
  "loopback",
  "dummy",
  "portmap",
  "tuning",
  "bandwidth",
  "flannel",
  "vrf",
  "host-local",
  "static",
] as const;
export type FuzzPlugin = (typeof FUZZ_PLUGINS)[number];

export const VERBS = ["ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION"] as const;

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function prevResult(s: Sandbox): Json {
  return {
    cniVersion: "1.1.0",
    interfaces: [
      { name: "fzh0", mac: "0a:58:0a:f4:00:01" },
      { name: "eth0", mac: "0a:58:0a:f4:00:02", sandbox: s.metaNetns },
    ],
    ips: [{ address: "10.244.7.2/24", gateway: "10.244.7.1", interface: 1 }],
    routes: [{ dst: "0.0.0.0/0" }],
  };
}

/** A config each plugin accepts (with a suitable netns), state under the sandbox. */
export function baseConfig(plugin: FuzzPlugin, s: Sandbox): { [k: string]: Json } {
  const hostLocal = {
    type: "host-local",
    ranges: [[{ subnet: "10.244.7.0/24" }]],
    dataDir: `${s.data}/ipam`,
  };
  const head = { cniVersion: "1.1.0", name: "fuzznet" };
  switch (plugin) {
    case "bridge":
      return {
        ...head,
        type: "bridge",
        bridge: "fzbr0",
        isGateway: true,
        ipMasq: true,
        mtu: 1400,
        ipam: hostLocal,
      };
    case "ptp":
      return { ...head, type: "ptp", ipMasq: true, mtu: 1400, ipam: hostLocal };
    case "loopback":
      return { ...head, type: "loopback" };
    case "dummy":
      return { ...head, type: "dummy", ipam: hostLocal };
    case "portmap":
      return {
        ...head,
        type: "portmap",
        capabilities: { portMappings: true },
        snat: true,
        runtimeConfig: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }] },
        prevResult: prevResult(s),
      };
    case "tuning":
      return {
        ...head,
        type: "tuning",
        sysctl: { "net.core.somaxconn": "512" },
        mtu: 1300,
        promisc: true,
        dataDir: `${s.data}/tuning`,
        prevResult: prevResult(s),
      };
    case "bandwidth":
      return {
        ...head,
        type: "bandwidth",
        ingressRate: 1000000,
        ingressBurst: 100000,
        egressRate: 1000000,
        egressBurst: 100000,
        prevResult: prevResult(s),
      };
    case "flannel":
      return {
        ...head,
        type: "flannel",
        subnetFile: s.subnetEnv,
        dataDir: `${s.data}/flannel`,
        delegate: { type: "bridge", bridge: "fzfl0" },
      };
    case "vrf":
      return { ...head, type: "vrf", vrfname: "fzvrf", prevResult: prevResult(s) };
    case "host-local":
      return { ...head, type: "host-local-net", ipam: hostLocal };
    case "static":
      return {
        ...head,
        type: "static-net",
        ipam: { type: "static", addresses: [{ address: "10.244.8.2/24", gateway: "10.244.8.1" }] },
      };
  }
}

/** Every path (list of keys) into a JSON value, the root included. */
function paths(v: Json, prefix: (string | number)[] = []): (string | number)[][] {
  const out: (string | number)[][] = [prefix];
  if (Array.isArray(v)) {
    for (const [i, x] of v.entries()) out.push(...paths(x, [...prefix, i]));
  } else if (v !== null && typeof v === "object")
    for (const [k, x] of Object.entries(v)) out.push(...paths(x, [...prefix, k]));
  return out;
}

function deepNest(depth: number): Json {
  let v: Json = "x";
  for (let i = 0; i < depth; i++) v = i % 2 ? [v] : { a: v };
  return v;
}

const hostileString: fc.Arbitrary<string> = fc.oneof(
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.constantFrom(
    "",
    " ",
    "\u0000",
    "eth0\u0000",
    "../../../etc",
    "..",
    ".",
    "/",
    "a/b",
    "x".repeat(300),
    "名前",
    "\u202e",
    "10.244.7.2/24",
    "::1/128",
    "999.1.1.1/33",
    "fe80::/10",
    "tcp",
    "1.1.0",
    "0.1.0",
    "99.0.0",
  ),
);

/** Values of every JSON type, hostile ones favoured. */
export const weirdValue: fc.Arbitrary<Json> = fc.oneof(
  hostileString,
  fc.constantFrom<Json>(
    -1,
    0,
    1,
    65536,
    -65536,
    2 ** 31,
    2 ** 32 + 1,
    2 ** 53 + 2,
    -(2 ** 63),
    1e308,
    -1e308,
    0.5,
    null,
    true,
    false,
    [],
    {},
    [null],
    { "": null },
  ),
  fc.integer(),
  fc.double({ noNaN: true }) as fc.Arbitrary<Json>,
  fc.json().map((j) => JSON.parse(j) as Json),
  fc.integer({ min: 10, max: 2000 }).map(deepNest),
);

type Mutation =
  | { op: "delete"; at: number }
  | { op: "set"; at: number; value: Json }
  | { op: "extra"; at: number; key: string; value: Json };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant("delete" as const), at: fc.nat() }),
  fc.record({ op: fc.constant("set" as const), at: fc.nat(), value: weirdValue }),
  fc.record({
    op: fc.constant("extra" as const),
    at: fc.nat(),
    key: fc.oneof(hostileString, fc.constantFrom("__proto__", "constructor", "prototype", "toString")),
    value: weirdValue,
  }),
);

function applyMutation(root: Json, m: Mutation): Json {
  const all = paths(root);
  const path = all[m.at % all.length] ?? [];
  if (path.length === 0) {
    if (m.op === "set") return m.value;
    if (m.op === "delete") return {};
  }
  let parent: Json | undefined = root;
  for (const k of path.slice(0, m.op === "extra" ? path.length : -1))
    parent = (parent as Record<string | number, Json> | undefined)?.[k];
  if (parent === undefined || parent === null || typeof parent !== "object") return root;
  const last = path[path.length - 1] ?? "";
  if (m.op === "extra") {
    if (Array.isArray(parent)) parent.push(m.value);
    else
      Object.defineProperty(parent, m.key, {
        value: m.value,
        enumerable: true,
        writable: true,
        configurable: true,
      });
  } else if (m.op === "delete") {
    if (Array.isArray(parent)) parent.splice(Number(last), 1);
    else delete (parent as Record<string, Json>)[last as string];
  } else {
    (parent as Record<string | number, Json>)[last] = m.value;
  }
  return root;
}

const encoder = new TextEncoder();

/** Stdin for `plugin`: a mutated valid config mostly, else raw garbage. */
export function stdinArb(plugin: FuzzPlugin, s: Sandbox): fc.Arbitrary<Uint8Array> {
  const mutated = fc
    .oneof(fc.constant<Mutation[]>([]), fc.array(mutation, { minLength: 1, maxLength: 4 }))
    .map((ms) => {
      let conf: Json = structuredClone(baseConfig(plugin, s));
      for (const m of ms) conf = applyMutation(conf, m);
      return encoder.encode(JSON.stringify(conf));
    });
  const raw = fc.oneof(
    fc.json().map((j) => encoder.encode(j)),
    fc.string({ unit: "binary", maxLength: 200 }).map((t) => encoder.encode(t)),
    fc.uint8Array({ maxLength: 300 }),
    fc
      .constantFrom(
        "",
        "{",
        "null",
        "[]",
        '{"cniVersion":"1.1.0"}',
        '{"cniVersion":"1.1.0","name":"x"}',
        '{"cniVersion":1,"name":2,"type":3}',
        `${"[".repeat(100000)}${"]".repeat(100000)}`,
        `{"cniVersion":"1.1.0","name":"fuzznet","type":"${plugin}","x":"${"y".repeat(3 * 1024 * 1024)}"}`,
      )
      .map((t) => encoder.encode(t)),
    // a valid config with NUL bytes and invalid UTF-8 spliced in
    fc.nat().map((at) => {
      const b = encoder.encode(JSON.stringify(baseConfig(plugin, s)));
      const i = at % b.length;
      return Uint8Array.from([...b.subarray(0, i), 0, 0xff, 0xfe, ...b.subarray(i)]);
    }),
  );
  return fc.oneof({ weight: 6, arbitrary: mutated }, { weight: 2, arbitrary: raw });
}

function maybe<T>(arb: fc.Arbitrary<T>, valid: T): fc.Arbitrary<T | undefined> {
  return fc.oneof(
    { weight: 16, arbitrary: fc.constant(valid) },
    { weight: 3, arbitrary: arb },
    { weight: 1, arbitrary: fc.constant(undefined) },
  );
}

export type Env = Record<string, string | undefined>;

const META: readonly string[] = ["portmap", "tuning", "bandwidth", "vrf"];

export function envArb(s: Sandbox, plugin: FuzzPlugin): fc.Arbitrary<Env> {
  return fc.record({
    CNI_COMMAND: fc.oneof(
      { weight: 6, arbitrary: fc.constant("ADD") },
      { weight: 9, arbitrary: fc.constantFrom<string | undefined>(...VERBS) },
      { weight: 1, arbitrary: fc.oneof(hostileString, fc.constantFrom("add", "ADD ", "DELETE", undefined)) },
    ),
    CNI_CONTAINERID: maybe(
      fc.oneof(hostileString, fc.constantFrom("../../x", "a b", "c".repeat(300), "-x", "ctr\u0000")),
      "fuzz-ctr-1",
    ),
    CNI_NETNS: maybe(
      fc.constantFrom(
        s.file,
        s.dir,
        "/proc/self/ns/net",
        `${s.root}/missing`,
        "relative/ns",
        "",
        "/dev/null",
      ),
      META.includes(plugin) ? s.metaNetns : s.netns,
    ),
    CNI_IFNAME: maybe(
      fc.oneof(hostileString, fc.constantFrom("eth0123456789abcd", "a/b", "eth 0", "lo", "fzbr0", "eth1")),
      "eth0",
    ),
    CNI_ARGS: maybe(
      fc.oneof(
        hostileString,
        fc.constantFrom(
          "IgnoreUnknown=1;K8S_POD_NAME=p;K8S_POD_NAMESPACE=ns",
          "=;;=",
          "a=b=c",
          "IgnoreUnknown=banana",
          "K8S_POD_INFRA_CONTAINER_ID",
          `X=${"y".repeat(100000)}`,
          "IP=10.244.7.9",
          "IP=notanip",
          "MAC=zz:zz",
        ),
      ),
      "",
    ),
    CNI_PATH: maybe(fc.constantFrom(`${s.root}/missing`, "::", s.file, `${s.bin}:${s.bin}`), s.bin),
  });
}

export interface Case {
  plugin: FuzzPlugin;
  env: Env;
  stdin: Uint8Array;
}

export function caseArb(s: Sandbox): fc.Arbitrary<Case> {
  return fc
    .constantFrom(...FUZZ_PLUGINS)
    .chain((plugin) =>
      fc.record({ plugin: fc.constant(plugin), env: envArb(s, plugin), stdin: stdinArb(plugin, s) }),
    );
}

/** What the spec allows as an error code: the well-known ones, 1–99 reserved ones, 100+ plugin-specific. */
export function isSpecCode(code: unknown): boolean {
  return typeof code === "number" && Number.isInteger(code) && code >= 1 && code !== 0;
}

/** Marks of an internal JS failure leaking out instead of a CNI error that says what was being done. */
export const ENGINE_ERROR =
  /\b(TypeError|RangeError|ReferenceError|SyntaxError: (?!JSON)|is not a function|is not iterable|Cannot read propert|undefined is not an object|null is not an object|Maximum call stack)/;

/** A stack trace line. */
export const STACK_LINE = /\n\s+at .+(:\d+:\d+\)?|\(native\))/;

export function describeCase(c: Case): string {
  const text = new TextDecoder().decode(c.stdin);
  return `${c.plugin} env=${JSON.stringify(c.env)} stdin=${JSON.stringify(text.length > 400 ? `${text.slice(0, 400)}…(${text.length})` : text)}`;
}
