/**
 * flanneld's subnet file (default /run/flannel/subnet.env), read like upstream's loadFlannelSubnetEnv:
 *
 *   FLANNEL_NETWORK=10.1.0.0/16          (comma-separated list; duplicates dropped)
 *   FLANNEL_SUBNET=10.1.17.1/24          (this node's subnet; host bits dropped → 10.1.17.0/24)
 *   FLANNEL_IPV6_NETWORK=… FLANNEL_IPV6_SUBNET=…
 *   FLANNEL_MTU=1472
 *   FLANNEL_IPMASQ=true                  (only "true" is true)
 *
 * Other keys are ignored. Errors name the file and the line. Ours, not upstream's: a subnet outside
 * every network of its family is an error.
 */
import { CniError, ErrCode } from "../../../spec/errors.ts";
import { formatCIDR, parseCIDR, toIPv4 } from "../../../spec/ipaddr.ts";
import { readFile } from "../../../sys/fs.ts";

export interface Net {
  /** Network address (host bits cleared), 4 or 16 bytes. */
  ip: Uint8Array;
  prefix: number;
  family: 4 | 6;
}

export interface SubnetEnv {
  networks: Net[];
  subnet?: Net;
  ip6Networks: Net[];
  ip6Subnet?: Net;
  mtu: number;
  ipMasq: boolean;
}

export function netString(n: Net): string {
  return formatCIDR({ ip: n.ip, prefix: n.prefix });
}

/** Go's net.ParseCIDR's network: the address masked to its prefix. */
function parseNet(s: string): Net | undefined {
  const c = parseCIDR(s);
  if (!c) return undefined;
  const v4 = toIPv4(c.ip);
  const ip = new Uint8Array(v4 ?? c.ip);
  for (let bit = c.prefix; bit < ip.length * 8; bit++) ip[bit >> 3]! &= ~(0x80 >> (bit & 7));
  return { ip, prefix: c.prefix, family: v4 ? 4 : 6 };
}

export function netContains(outer: Net, inner: Net): boolean {
  if (outer.family !== inner.family || inner.prefix < outer.prefix) return false;
  for (let bit = 0; bit < outer.prefix; bit++) {
    const m = 0x80 >> (bit & 7);
    if ((outer.ip[bit >> 3]! & m) !== (inner.ip[bit >> 3]! & m)) return false;
  }
  return true;
}

const same = (a: Net, b: Net) => a.prefix === b.prefix && netString(a) === netString(b);

function malformed(file: string, line: number, text: string, why: string): CniError {
  return new CniError(ErrCode.InvalidNetworkConfig, `${file}:${line}: ${why}: ${JSON.stringify(text)}`);
}

/** Parses the file's text; `file` only names it in errors. */
export function parseSubnetEnv(text: string, file: string): SubnetEnv {
  let networks: Net[] | undefined;
  let ip6Networks: Net[] | undefined;
  let subnet: Net | undefined;
  let ip6Subnet: Net | undefined;
  let mtu: number | undefined;
  let ipMasq: boolean | undefined;
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!.replace(/\r$/, "");
    const eq = raw.indexOf("=");
    const key = eq < 0 ? raw : raw.slice(0, eq);
    const value = eq < 0 ? undefined : raw.slice(eq + 1);
    const no = i + 1;
    const need = (): string => {
      if (value === undefined) throw malformed(file, no, raw, `${key} has no "=" value`);
      return value;
    };
    const nets = (family: 4 | 6): Net[] => {
      const out: Net[] = [];
      for (const cidr of need().split(",")) {
        const n = parseNet(cidr);
        if (!n) throw malformed(file, no, raw, `${key}: invalid CIDR ${JSON.stringify(cidr)}`);
        if (n.family !== family) throw malformed(file, no, raw, `${key}: ${cidr} is not IPv${family}`);
        if (!out.some((o) => same(o, n))) out.push(n);
      }
      return out;
    };
    const one = (family: 4 | 6): Net => {
      const n = parseNet(need());
      if (!n) throw malformed(file, no, raw, `${key}: invalid CIDR`);
      if (n.family !== family) throw malformed(file, no, raw, `${key}: not IPv${family}`);
      return n;
    };
    switch (key) {
      case "FLANNEL_NETWORK":
        networks = nets(4);
        break;
      case "FLANNEL_SUBNET":
        subnet = one(4);
        break;
      case "FLANNEL_IPV6_NETWORK":
        ip6Networks = nets(6);
        break;
      case "FLANNEL_IPV6_SUBNET":
        ip6Subnet = one(6);
        break;
      case "FLANNEL_MTU": {
        const v = need();
        if (!/^[0-9]+$/.test(v) || Number(v) > 0xffffffff) {
          throw malformed(file, no, raw, "FLANNEL_MTU: not an unsigned integer");
        }
        mtu = Number(v);
        break;
      }
      case "FLANNEL_IPMASQ":
        ipMasq = need() === "true";
        break;
    }
  }
  const missing: string[] = [];
  if (!networks?.length && !ip6Networks?.length) missing.push("FLANNEL_NETWORK", "FLANNEL_IPV6_NETWORK");
  if (!subnet && !ip6Subnet) missing.push("FLANNEL_SUBNET", "FLANNEL_IPV6_SUBNET");
  if (mtu === undefined) missing.push("FLANNEL_MTU");
  if (ipMasq === undefined) missing.push("FLANNEL_IPMASQ");
  if (missing.length > 0) {
    throw new CniError(ErrCode.InvalidNetworkConfig, `${file} is missing ${missing.join(", ")}`);
  }
  const env: SubnetEnv = {
    networks: networks ?? [],
    ip6Networks: ip6Networks ?? [],
    mtu: mtu!,
    ipMasq: ipMasq!,
  };
  if (subnet) env.subnet = subnet;
  if (ip6Subnet) env.ip6Subnet = ip6Subnet;
  for (const [sn, nws, key] of [
    [subnet, env.networks, "FLANNEL_SUBNET"],
    [ip6Subnet, env.ip6Networks, "FLANNEL_IPV6_SUBNET"],
  ] as const) {
    if (sn && nws.length > 0 && !nws.some((n) => netContains(n, sn))) {
      throw new CniError(
        ErrCode.InvalidNetworkConfig,
        `${file}: ${key} ${netString(sn)} is outside the network ${nws.map(netString).join(",")}`,
      );
    }
  }
  return env;
}

export function loadSubnetEnv(file: string): SubnetEnv {
  let text: string;
  try {
    text = readFile(file, "utf8");
  } catch (err) {
    throw CniError.from(
      err,
      `failed to load flannel 'subnet.env' file ${file} (check the flannel pod log for this node)`,
      ErrCode.IOFailure,
    );
  }
  return parseSubnetEnv(text, file);
}
