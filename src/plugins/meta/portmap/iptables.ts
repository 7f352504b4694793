/**
 * The iptables portmap backend: exactly upstream's chains and rules (plugins/meta/portmap portmap.go),
 * so mappings added by the Go plugin are deleted by ours and the other way round. All in table nat:
 *
 *   PREROUTING, OUTPUT: -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
 *   CNI-HOSTPORT-DNAT:  -p tcp -m comment --comment "dnat name: \"N\" id: \"ID\"" -m multiport --dports 8080,8081 -j CNI-DN-<hash>
 *   CNI-DN-<hash>:      -s <container subnet> -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK   (hairpin)
 *                       -s 127.0.0.1/32 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK       (localhost, IPv4)
 *                       -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.0.0.5:80
 *   CNI-HOSTPORT-SETMARK: -m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark 0x2000/0x2000
 *   POSTROUTING (first): -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ
 *   CNI-HOSTPORT-MASQ:  -m mark --mark 0x2000/0x2000 -j MASQUERADE
 *
 * Rules are written in the form iptables-save prints them, so presence is a comparison of argument
 * lists. Each call reads the table once per family (iptables-save) and writes it with ONE
 * iptables-restore per family; shared chains are created with -N, which fails if a concurrent call
 * created them meanwhile, and the call then rereads and replans.
 */

import {
  hasRule,
  type IPFamily,
  iptablesTransact,
  jumpsTo,
  readTable,
  ruleLine,
  rulesOf,
  type SavedTable,
} from "../../../firewall/iptables.ts";
import { iptablesChainName } from "../../../firewall/owner.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import type { GCAttachment } from "../../../spec/types.ts";
import { type ContainerAddr, hostIPMatch, mappingsFor, type Owner, type PortmapConf } from "./config.ts";

export const TOP_DNAT = "CNI-HOSTPORT-DNAT";
export const SETMARK = "CNI-HOSTPORT-SETMARK";
export const MASQ = "CNI-HOSTPORT-MASQ";
/** Created by plugins before 0.7; DEL still removes a container's chain under it. */
const OLD_TOP_SNAT = "CNI-HOSTPORT-SNAT";
const ATTEMPTS = 3;

/** Upstream utils.MustFormatChainNameWithPrefix: "CNI-" + prefix + sha512(name+id) hex, 28 chars. */
export function chainName(network: string, containerID: string, prefix: string): string {
  return iptablesChainName(network, containerID, prefix);
}

/** Go's %#x/%#x of the mark bit. */
function markDef(bit: number): string {
  const v = `0x${(2 ** bit).toString(16)}`;
  return `${v}/${v}`;
}

function dnatComment(network: string, containerID: string): string {
  const c = `dnat name: "${network}" id: "${containerID}"`;
  return c.length <= 255 ? c : `${c.slice(0, 253)}...`;
}

type Rule = string[];

const setMarkRule = (bit: number): Rule => [
  "-m",
  "comment",
  "--comment",
  "CNI portfwd masquerade mark",
  "-j",
  "MARK",
  "--set-xmark",
  markDef(bit),
];
const masqRule = (bit: number): Rule => ["-m", "mark", "--mark", markDef(bit), "-j", "MASQUERADE"];
const masqEntry: Rule = ["-m", "comment", "--comment", "CNI portfwd requiring masquerade", "-j", MASQ];
const dnatEntry: Rule = ["-m", "addrtype", "--dst-type", "LOCAL", "-j", TOP_DNAT];

/** Upstream fillDnatRules: the per-container chain's entry rules and rules for one address. */
export function containerRules(
  conf: PortmapConf,
  containerID: string,
  addr: ContainerAddr,
): { entries: Rule[]; rules: Rule[] } {
  const chain = chainName(conf.name, containerID, "DN-");
  const comment = dnatComment(conf.name, containerID);
  const conds = addr.family === 4 ? conf.conditionsV4 : conf.conditionsV6;
  const byProto = new Map<string, number[]>();
  for (const m of conf.portMappings)
    byProto.set(m.protocol, [...(byProto.get(m.protocol) ?? []), m.hostPort]);
  const entries: Rule[] = [];
  for (const proto of [...byProto.keys()].sort()) {
    const ports = byProto.get(proto)!;
    // multiport takes at most 15 ports.
    for (let i = 0; i < ports.length; i += 15) {
      const list = ports.slice(i, i + 15).join(",");
      entries.push([
        "-p",
        proto,
        "-m",
        "comment",
        "--comment",
        comment,
        "-m",
        "multiport",
        "--dports",
        list,
        ...conds,
        "-j",
        chain,
      ]);
    }
  }
  const setMark = conf.externalSetMarkChain ?? SETMARK;
  const bits = addr.family === 4 ? 32 : 128;
  const rules: Rule[] = [];
  for (const m of mappingsFor(conf, addr.family)) {
    const hostIP = hostIPMatch(m);
    const dst = hostIP === undefined ? [] : ["-d", `${hostIP}/${bits}`];
    const match = ["-p", m.protocol, "-m", m.protocol, "--dport", String(m.hostPort)];
    if (conf.snat) {
      // iptables-save leaves out a 0.0.0.0/0 (masqAll) source.
      rules.push([...(conf.masqAll ? [] : ["-s", addr.subnet]), ...dst, ...match, "-j", setMark]);
      if (addr.family === 4 && !conf.masqAll)
        rules.push(["-s", "127.0.0.1/32", ...dst, ...match, "-j", setMark]);
    }
    const to = addr.family === 4 ? `${addr.ip}:${m.containerPort}` : `[${addr.ip}]:${m.containerPort}`;
    rules.push([...dst, ...match, "-j", "DNAT", "--to-destination", to]);
  }
  return { entries, rules };
}

/** -D every rule of `top` that jumps to `chain`, then -F and -X the chain if it exists. */
function removeChainLines(saved: SavedTable, top: string, chain: string): string[] {
  const lines = rulesOf(saved, top)
    .filter((r) => jumpsTo(r.args, chain))
    .map((r) => `-D${r.line.slice(2)}`);
  if (saved.chains.has(chain)) lines.push(`-F ${chain}`, `-X ${chain}`);
  return lines;
}

/** Reads and plans, then one iptables-restore; replans on failure (a concurrent change). */
function transact(family: IPFamily, what: string, plan: (saved: SavedTable) => string[]): Promise<void> {
  return iptablesTransact(family, "nat", plan, { what, attempts: ATTEMPTS });
}

function addLines(saved: SavedTable, conf: PortmapConf, containerID: string, addr: ContainerAddr): string[] {
  const lines: string[] = [];
  const ensureChain = (chain: string) => {
    if (!saved.chains.has(chain)) lines.push(`-N ${chain}`);
  };
  const ensureRule = (chain: string, rule: Rule, op = "-A") => {
    if (!hasRule(saved, chain, rule)) lines.push(ruleLine(op, chain, rule));
  };
  if (conf.snat && conf.externalSetMarkChain === undefined) {
    ensureChain(SETMARK);
    ensureRule(SETMARK, setMarkRule(conf.markMasqBit));
    ensureChain(MASQ);
    ensureRule(MASQ, masqRule(conf.markMasqBit));
    // First in POSTROUTING: the bridge/ptp masquerade rules would otherwise take the packets.
    if (!hasRule(saved, "POSTROUTING", masqEntry)) lines.push(ruleLine("-I", "POSTROUTING 1", masqEntry));
  }
  ensureChain(TOP_DNAT);
  ensureRule("PREROUTING", dnatEntry);
  ensureRule("OUTPUT", dnatEntry);
  const chain = chainName(conf.name, containerID, "DN-");
  // Replace the container's chain and entry rules wholesale (a re-ADD must not stack rules).
  if (saved.chains.has(chain)) {
    lines.push(...removeChainLines(saved, TOP_DNAT, chain).filter((l) => !l.startsWith("-X")));
  } else {
    lines.push(`-N ${chain}`);
  }
  const { entries, rules } = containerRules(conf, containerID, addr);
  lines.push(
    ...rules.map((r) => ruleLine("-A", chain, r)),
    ...entries.map((r) => ruleLine("-A", TOP_DNAT, r)),
  );
  return lines;
}

export async function iptablesAdd(o: Owner, conf: PortmapConf): Promise<void> {
  for (const addr of conf.addrs) {
    if (mappingsFor(conf, addr.family).length === 0) continue;
    await transact(addr.family, `adding IPv${addr.family} port mappings of ${o.containerID}`, (saved) =>
      addLines(saved, conf, o.containerID, addr),
    );
  }
}

/**
 * Removes the container's chains in both families, like upstream (the addresses may be unknown on
 * DEL). A family whose iptables does not work is skipped unless both fail.
 */
export async function iptablesDel(o: Owner): Promise<void> {
  const dn = chainName(o.network, o.containerID, "DN-");
  const sn = chainName(o.network, o.containerID, "SN-");
  const errors: unknown[] = [];
  for (const family of [4, 6] as const) {
    try {
      await transact(family, `deleting IPv${family} port mappings of ${o.containerID}`, (saved) => [
        ...removeChainLines(saved, TOP_DNAT, dn),
        ...removeChainLines(saved, OLD_TOP_SNAT, sn),
      ]);
    } catch (err) {
      errors.push(err);
    }
  }
  if (errors.length === 2) throw CniError.from(errors[0], "neither iptables nor ip6tables usable");
}

export async function iptablesCheck(o: Owner, conf: PortmapConf): Promise<void> {
  const chain = chainName(conf.name, o.containerID, "DN-");
  for (const addr of conf.addrs) {
    if (mappingsFor(conf, addr.family).length === 0) continue;
    const fail = (msg: string) =>
      new CniError(ErrCode.Internal, `checking IPv${addr.family} port mappings of ${o.containerID}: ${msg}`);
    const saved = await readTable(addr.family, "nat");
    if (!saved.chains.has(chain)) throw fail(`chain ${chain} not found in table nat`);
    const { entries, rules } = containerRules(conf, o.containerID, addr);
    for (const r of rules) {
      if (!hasRule(saved, chain, r)) throw fail(`rule "${r.join(" ")}" not found in chain ${chain}`);
    }
    const entryRules = rulesOf(saved, TOP_DNAT).filter((r) => jumpsTo(r.args, chain));
    for (const e of entries) {
      // Conditions may be printed differently from how they were given: match on the ports.
      const ports = e[e.indexOf("--dports") + 1];
      const proto = e[1];
      const found = entryRules.some(
        (r) => r.args.includes(ports!) && r.args[r.args.indexOf("-p") + 1] === proto,
      );
      if (!found) throw fail(`entry rule for ${proto} ports ${ports} not found in chain ${TOP_DNAT}`);
    }
    for (const top of ["PREROUTING", "OUTPUT"]) {
      if (!hasRule(saved, top, dnatEntry)) throw fail(`chain ${top} does not jump to ${TOP_DNAT}`);
    }
    if (conf.snat && conf.externalSetMarkChain === undefined) {
      if (!hasRule(saved, SETMARK, setMarkRule(conf.markMasqBit)))
        throw fail(`chain ${SETMARK} lacks its mark rule`);
      if (!hasRule(saved, MASQ, masqRule(conf.markMasqBit)))
        throw fail(`chain ${MASQ} lacks its masquerade rule`);
      if (!hasRule(saved, "POSTROUTING", masqEntry)) throw fail(`chain POSTROUTING does not jump to ${MASQ}`);
    }
  }
}

const COMMENT_RE = /^dnat name: "(.*)" id: "(.*)"$/;

/** Removes the chains of every container of `network` whose id is not among `valid`. */
export async function iptablesGC(network: string, valid: readonly GCAttachment[]): Promise<void> {
  const alive = new Set(valid.map((a) => a.containerID));
  for (const family of [4, 6] as const) {
    await transact(family, `collecting stale IPv${family} port mappings of network ${network}`, (saved) => {
      const stale = new Set<string>();
      for (const r of rulesOf(saved, TOP_DNAT)) {
        const at = r.args.indexOf("--comment");
        const comment = at >= 0 ? (r.args[at + 1] ?? "") : "";
        const m = COMMENT_RE.exec(comment);
        const target = r.args[r.args.length - 1]!;
        if (m && m[1] === network && !alive.has(m[2]!) && target.startsWith("CNI-DN-")) stale.add(target);
      }
      return [...stale].flatMap((chain) => removeChainLines(saved, TOP_DNAT, chain));
    });
  }
}
