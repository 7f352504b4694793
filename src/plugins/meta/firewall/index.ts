/**
 * firewall (upstream plugins/meta/firewall): a chained plugin that lets the container's addresses
 * (from prevResult) be forwarded — out, and back in for related/established traffic — on a host whose
 * forwarding policy drops, with an admin chain for operators' overrides and an optional ingress
 * isolation between bridges (ingressPolicy). Backends:
 *   iptables  upstream's CNI-FORWARD / CNI-ADMIN rules, interoperable with the Go plugin (iptables.ts)
 *   firewalld the addresses as sources of a zone over D-Bus (firewalld.ts)
 *   nftables  ours: one table, elements per container (nft.ts)
 * Without `backend`, like upstream: firewalld when it runs on the system bus, else iptables.
 * GC (not in upstream) removes what attachments outside cni.dev/valid-attachments left; STATUS says
 * whether the backend is there.
 */
import { hasTool } from "../../../firewall/exec.ts";
import type { Owner } from "../../../firewall/owner.ts";
import { withUndo } from "../../../ip/undo.ts";
import type { CmdArgs, Plugin } from "../../../skel/types.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import { CNI_VERSIONS, type Result } from "../../../spec/types.ts";
import { type Backend, type FirewallConf, type FwAddr, parseConfig, requireBridge } from "./config.ts";
import { firewalldAdd, firewalldCheck, firewalldDel, firewalldRunning } from "./firewalld.ts";
import { familiesOf, iptablesAdd, iptablesCheck, iptablesDel, iptablesIsolate } from "./iptables.ts";
import { nftAdd, nftCheck, nftDel, nftGC } from "./nft.ts";
import { claimedByOthers, listRecords, readRecord, removeRecord, writeRecord } from "./records.ts";

async function chooseBackend(conf: FirewallConf): Promise<Backend> {
  if (conf.backend) return conf.backend;
  return (await firewalldRunning()) ? "firewalld" : "iptables";
}

function owner(args: CmdArgs, conf: FirewallConf): Owner {
  return { network: conf.name, containerID: args.containerID, ifName: args.ifName };
}

function isolationOf(conf: FirewallConf) {
  return conf.ingressPolicy === "open"
    ? undefined
    : { bridge: requireBridge(conf), policy: conf.ingressPolicy };
}

function union(a: readonly FwAddr[], b: readonly FwAddr[]): FwAddr[] {
  return [...a, ...b.filter((x) => !a.some((y) => y.ip === x.ip))];
}

/** The addresses of `o` no other attachment of this backend records. */
function ownAddrs(conf: FirewallConf, o: Owner, backend: Backend, addrs: readonly FwAddr[]): FwAddr[] {
  const others = claimedByOthers(conf.dataDir, o, backend);
  return addrs.filter((a) => !others.has(a.ip));
}

async function cmdAdd(args: CmdArgs): Promise<Result> {
  const conf = parseConfig(args.stdinData);
  if (!conf.prevResult) {
    throw new CniError(ErrCode.InvalidNetworkConfig, "firewall: missing prevResult from earlier plugin");
  }
  const backend = await chooseBackend(conf);
  const o = owner(args, conf);
  const isolation = isolationOf(conf);
  await withUndo(async (undo) => {
    if (backend === "nftables") {
      await nftAdd({ owner: o, addrs: conf.addrs, isolation });
      return;
    }
    // A re-ADD with other addresses: what the last ADD of this attachment allowed that the new one
    // does not is removed afterwards (unless another attachment claims it).
    const before = readRecord(conf.dataDir, o);
    const dropped =
      before?.backend === backend ? before.addrs.filter((a) => !conf.addrs.some((b) => b.ip === a.ip)) : [];
    writeRecord(conf.dataDir, o, {
      containerID: o.containerID,
      ifName: o.ifName,
      backend,
      zone: conf.zone,
      addrs: conf.addrs,
    });
    undo.push({
      what: `restoring the firewall record of ${o.containerID}`,
      run: () => (before ? writeRecord(conf.dataDir, o, before) : removeRecord(conf.dataDir, o)),
    });
    const undoAddrs = () => ownAddrs(conf, o, backend, conf.addrs);
    // Undo first: a failure half-way (IPv6 after IPv4, the second address) leaves nothing behind.
    if (backend === "iptables") {
      undo.push({
        what: `deleting the firewall rules of ${o.containerID}`,
        run: () => iptablesDel(undoAddrs()),
      });
      await iptablesAdd({ adminChain: conf.adminChain, addrs: conf.addrs, isolation });
      await iptablesDel(ownAddrs(conf, o, backend, dropped));
    } else {
      undo.push({
        what: `removing ${o.containerID}'s sources from zone ${conf.zone}`,
        run: () => firewalldDel(conf.zone, undoAddrs()),
      });
      await firewalldAdd(conf.zone, conf.addrs);
      if (isolation) await iptablesIsolate(familiesOf(conf.addrs), isolation.bridge, isolation.policy);
      await firewalldDel(before?.zone ?? conf.zone, ownAddrs(conf, o, backend, dropped));
    }
  });
  return conf.prevResult;
}

async function cmdDel(args: CmdArgs): Promise<void> {
  const conf = parseConfig(args.stdinData);
  const backend = await chooseBackend(conf);
  const o = owner(args, conf);
  if (backend === "nftables") {
    await nftDel(o);
    return;
  }
  const record = readRecord(conf.dataDir, o);
  const addrs = ownAddrs(
    conf,
    o,
    backend,
    union(conf.addrs, record?.backend === backend ? record.addrs : []),
  );
  if (backend === "iptables") await iptablesDel(addrs);
  else await firewalldDel(record?.zone ?? conf.zone, addrs);
  removeRecord(conf.dataDir, o);
}

async function cmdCheck(args: CmdArgs): Promise<void> {
  const conf = parseConfig(args.stdinData);
  if (!conf.prevResult) {
    throw new CniError(ErrCode.InvalidNetworkConfig, "firewall: missing prevResult from earlier plugin");
  }
  const backend = await chooseBackend(conf);
  const o = owner(args, conf);
  const isolation = isolationOf(conf);
  if (backend === "nftables") await nftCheck({ owner: o, addrs: conf.addrs, isolation });
  else if (backend === "iptables")
    await iptablesCheck({ adminChain: conf.adminChain, addrs: conf.addrs, isolation });
  else await firewalldCheck(conf.zone, conf.addrs);
}

/**
 * GC: the nftables elements of the network's stale attachments, and the rules or zone sources the
 * records of stale attachments name (whatever backend made them), unless a live attachment's record
 * claims the same address.
 */
async function cmdGC(args: CmdArgs): Promise<void> {
  const conf = parseConfig(args.stdinData);
  const valid = conf.validAttachments;
  if (!valid) {
    throw new CniError(
      ErrCode.InvalidNetworkConfig,
      "firewall GC: config is missing cni.dev/valid-attachments",
    );
  }
  await nftGC(conf.name, valid);
  const isLive = (r: { containerID: string; ifName: string }) =>
    valid.some((v) => v.containerID === r.containerID && v.ifname === r.ifName);
  const all = listRecords(conf.dataDir);
  const stale = all.filter((x) => x.network === conf.name && !isLive(x.record));
  if (stale.length === 0) return;
  const staleSet = new Set(stale);
  const kept = all.filter((x) => !staleSet.has(x));
  for (const { record } of stale) {
    const claimed = new Set(
      kept.filter((k) => k.record.backend === record.backend).flatMap((k) => k.record.addrs.map((a) => a.ip)),
    );
    const addrs = record.addrs.filter((a) => !claimed.has(a.ip));
    if (record.backend === "iptables") await iptablesDel(addrs);
    else if (record.backend === "firewalld") await firewalldDel(record.zone ?? conf.zone, addrs);
    removeRecord(conf.dataDir, {
      network: conf.name,
      containerID: record.containerID,
      ifName: record.ifName,
    });
  }
}

async function cmdStatus(args: CmdArgs): Promise<void> {
  const conf = parseConfig(args.stdinData);
  const unavailable = (msg: string) => new CniError(ErrCode.PluginNotAvailable, `firewall: ${msg}`);
  const iptablesOK = () => hasTool("iptables-restore") && hasTool("iptables-save");
  switch (conf.backend) {
    case "nftables":
      if (!hasTool("nft")) throw unavailable("backend nftables: nft not found");
      return;
    case "iptables":
      if (!iptablesOK()) throw unavailable("backend iptables: iptables-restore/iptables-save not found");
      return;
    case "firewalld":
      if (!(await firewalldRunning()))
        throw unavailable("backend firewalld: firewalld is not running on the system bus");
      return;
    default:
      if (!(await firewalldRunning()) && !iptablesOK()) {
        throw unavailable("neither firewalld (on the system bus) nor iptables-restore is available");
      }
  }
}

export const plugin: Plugin = {
  supportedVersions: CNI_VERSIONS.filter(
    (v) => !v.startsWith("0.1.") && !v.startsWith("0.2.") && !v.startsWith("0.3."),
  ),
  about: "firewall: lets container traffic be forwarded (iptables CNI-FORWARD, firewalld zone or nftables)",
  add: cmdAdd,
  del: cmdDel,
  check: cmdCheck,
  gc: cmdGC,
  status: cmdStatus,
};
