/**
 * tuning (upstream plugins/meta/tuning): a chained plugin that sets network sysctls and link attributes
 * (mac, mtu, promisc, allmulti, txQLen) of the container interface, and passes prevResult on.
 *
 * ADD saves the link's original attributes (backup.ts) and DEL puts them back, then drops the file;
 * sysctls are per-netns and die with it, so they are not restored (as upstream). CHECK compares the
 * sysctls and link attributes with the config. GC (upstream has none) removes this network's backup
 * files of attachments the runtime no longer lists.
 */
import { type UndoList, withUndo } from "../../../ip/undo.ts";
import {
  type Link,
  type LinkChanges,
  linkByName,
  linkSet,
  NetlinkSocket,
  sysctlGetIn,
  sysctlSetIn,
} from "../../../netlink/index.ts";
import { type NetNS, NsNotFoundError, openNetns } from "../../../ns/index.ts";
import type { CmdArgs, Plugin } from "../../../skel/types.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import { CNI_VERSIONS, type Result } from "../../../spec/types.ts";
import { exists, joinPath, readFile } from "../../../sys/fs.ts";
import { type Backup, backupPath, listBackups, readBackup, removeBackup, writeBackup } from "./backup.ts";
import {
  ALLOWLIST_FILE,
  changesLink,
  checkAllowlist,
  type LinkTuning,
  parseAllowlist,
  parseTuningConf,
  resolveSysctls,
  type SysctlSetting,
  type TuningConf,
} from "./config.ts";

function load(args: CmdArgs): TuningConf {
  return parseTuningConf(args.stdinData, args.args);
}

/** Upstream's fixed allowlist file: when present, every sysctl key must match one of its regexes. */
function enforceAllowlist(conf: TuningConf): void {
  if (!exists(ALLOWLIST_FILE)) return;
  let text: string;
  try {
    text = readFile(ALLOWLIST_FILE, "utf8");
  } catch (err) {
    throw CniError.from(err, `reading ${ALLOWLIST_FILE}`, ErrCode.IOFailure);
  }
  checkAllowlist(Object.keys(conf.sysctl), parseAllowlist(text));
}

function requirePrevResult(conf: TuningConf): Result {
  if (!conf.prevResult) throw new CniError(ErrCode.InvalidNetworkConfig, "Required prevResult missing");
  return conf.prevResult;
}

/** The container netns; undefined when it no longer exists (DEL after the container is gone). */
function openContainerNetns(path: string, missingOk = false): NetNS | undefined {
  try {
    return openNetns(path);
  } catch (err) {
    if (missingOk && err instanceof NsNotFoundError) return undefined;
    throw CniError.from(err, `failed to open netns ${JSON.stringify(path)}`);
  }
}

/** Runs fn with the container netns and a netlink socket inside it, both closed afterwards. */
async function inContainer<T>(
  path: string,
  fn: (ns: NetNS, sock: NetlinkSocket) => T | Promise<T>,
  missingOk = false,
): Promise<T | undefined> {
  const ns = openContainerNetns(path, missingOk);
  if (!ns) return undefined;
  let sock: NetlinkSocket | undefined;
  try {
    sock = NetlinkSocket.open({ netnsFd: ns.fd });
    return await fn(ns, sock);
  } finally {
    sock?.close();
    ns.close();
  }
}

function containerLink(sock: NetlinkSocket, ifName: string): Link {
  const link = linkByName(sock, ifName);
  if (!link) throw new CniError(ErrCode.Internal, `failed to get ${JSON.stringify(ifName)}: link not found`);
  return link;
}

// ---- ADD ----

/** Writes the sysctls; each pushes the old value back onto the undo list. */
function applySysctls(ns: NetNS, sysctls: SysctlSetting[], undo: UndoList): void {
  for (const s of sysctls) {
    let old: string;
    try {
      old = sysctlGetIn(ns, s.resolved);
      sysctlSetIn(ns, s.resolved, s.value);
    } catch (err) {
      throw CniError.from(err, `setting sysctl ${s.key}`);
    }
    undo.push({ what: `restoring sysctl ${s.resolved}`, run: () => sysctlSetIn(ns, s.resolved, old) });
  }
}

/** The current values of exactly the attributes the config changes (upstream createBackup). */
function originals(link: Link, t: LinkTuning, network: string): Backup {
  const b: Backup = { network };
  if (t.mac !== undefined) b.mac = link.mac;
  if (t.promisc) b.promisc = link.promisc;
  if (t.mtu !== undefined) b.mtu = link.mtu;
  if (t.allmulti !== undefined) b.allmulti = link.allmulti;
  if (t.txQLen !== undefined) b.txQLen = link.txqlen;
  return b;
}

function wantedChanges(t: LinkTuning): LinkChanges {
  const c: LinkChanges = {};
  if (t.mac !== undefined) c.mac = t.mac;
  if (t.promisc) c.promisc = true;
  if (t.mtu !== undefined) c.mtu = t.mtu;
  if (t.allmulti !== undefined) c.allmulti = t.allmulti;
  if (t.txQLen !== undefined) c.txqlen = t.txQLen;
  return c;
}

function backupChanges(b: Backup): LinkChanges {
  const c: LinkChanges = {};
  if (b.mtu !== undefined) c.mtu = b.mtu;
  if (b.mac !== undefined) c.mac = b.mac;
  if (b.promisc !== undefined) c.promisc = b.promisc;
  if (b.allmulti !== undefined) c.allmulti = b.allmulti;
  if (b.txQLen !== undefined) c.txqlen = b.txQLen;
  return c;
}

/** Backs the link's attributes up, then changes them in one request. */
function applyLinkTuning(sock: NetlinkSocket, conf: TuningConf, args: CmdArgs, undo: UndoList): void {
  const link = containerLink(sock, args.ifName);
  const path = backupPath(conf.dataDir, args.containerID, args.ifName);
  const backup = originals(link, conf, conf.name);
  writeBackup(path, conf.dataDir, backup);
  undo.push({ what: `removing ${path}`, run: () => removeBackup(path) });
  undo.push({
    what: `restoring the attributes of ${args.ifName}`,
    run: () => linkSet(sock, link.index, backupChanges(backup)),
  });
  try {
    linkSet(sock, link.index, wantedChanges(conf), `tuning link ${args.ifName}`);
  } catch (err) {
    throw CniError.from(err);
  }
}

/** prevResult with the new MAC on the interface (upstream updateResultsMacAddr). */
function resultWithMac(prev: Result, ifName: string, mac: string | undefined): Result {
  if (mac === undefined) return prev;
  return {
    ...prev,
    interfaces: prev.interfaces?.map((i) => (i.name === ifName ? { ...i, mac } : i)),
  };
}

async function cmdAdd(args: CmdArgs): Promise<Result> {
  const conf = load(args);
  enforceAllowlist(conf);
  const prev = requirePrevResult(conf);
  const sysctls = resolveSysctls(conf.sysctl, args.ifName);
  await inContainer(args.netns, (ns, sock) =>
    withUndo(async (undo) => {
      applySysctls(ns, sysctls, undo);
      if (changesLink(conf)) applyLinkTuning(sock, conf, args, undo);
    }),
  );
  return { ...resultWithMac(prev, args.ifName, conf.mac), cniVersion: conf.cniVersion };
}

// ---- DEL ----

/** Puts each saved attribute back; every failure is reported together (upstream restoreBackup). */
function restore(sock: NetlinkSocket, link: Link, b: Backup): void {
  const steps: [string, LinkChanges][] = [
    ["MTU", { mtu: b.mtu }],
    ["MAC address", { mac: b.mac }],
    ["promiscuous mode", { promisc: b.promisc }],
    ["all-multicast mode", { allmulti: b.allmulti }],
    ["tx queue length", { txqlen: b.txQLen }],
  ];
  const failures: string[] = [];
  for (const [what, change] of steps) {
    if (Object.values(change).every((v) => v === undefined)) continue;
    try {
      linkSet(sock, link.index, change, `restoring ${what} of ${link.name}`);
    } catch (err) {
      failures.push(err instanceof Error ? err.message : String(err));
    }
  }
  if (failures.length > 0) throw new CniError(ErrCode.Internal, failures.join("; "));
}

async function cmdDel(args: CmdArgs): Promise<void> {
  const conf = load(args);
  const path = backupPath(conf.dataDir, args.containerID, args.ifName);
  const backup = readBackup(path);
  if (!backup) return removeBackup(path); // a killed ADD may have left only the temp file
  // A netns or link that is gone has nothing left to restore.
  if (args.netns !== "") {
    const missingOk = true;
    await inContainer(
      args.netns,
      (_ns, sock) => {
        const link = linkByName(sock, args.ifName);
        if (link) restore(sock, link, backup);
      },
      missingOk,
    );
  }
  removeBackup(path);
}

// ---- CHECK ----

function mismatch(what: string, want: unknown, got: unknown): CniError {
  return new CniError(
    ErrCode.Internal,
    `tuning: configured ${what} is ${String(want)}, current value is ${String(got)}`,
  );
}

function checkSysctls(ns: NetNS, sysctls: SysctlSetting[]): void {
  for (const s of sysctls) {
    let current: string;
    try {
      current = sysctlGetIn(ns, s.resolved);
    } catch (err) {
      throw CniError.from(err, `checking sysctl ${s.key}`);
    }
    if (current !== s.value) throw mismatch(`value of /proc/sys/${s.resolved}`, s.value, current);
  }
}

function checkLink(link: Link, conf: TuningConf): void {
  const n = link.name;
  if (conf.mac !== undefined && conf.mac !== link.mac) throw mismatch(`Ethernet of ${n}`, conf.mac, link.mac);
  // Like upstream: promisc not asked for means it must be off.
  if (conf.promisc !== link.promisc) throw mismatch(`promisc of ${n}`, conf.promisc, link.promisc);
  if (conf.mtu !== undefined && conf.mtu !== link.mtu) throw mismatch(`MTU of ${n}`, conf.mtu, link.mtu);
  if (conf.allmulti !== undefined && conf.allmulti !== link.allmulti) {
    throw mismatch(`all-multicast mode of ${n}`, conf.allmulti, link.allmulti);
  }
  if (conf.txQLen !== undefined && conf.txQLen !== link.txqlen) {
    throw mismatch(`tx queue length of ${n}`, conf.txQLen, link.txqlen);
  }
}

async function cmdCheck(args: CmdArgs): Promise<void> {
  const conf = load(args);
  requirePrevResult(conf);
  const sysctls = resolveSysctls(conf.sysctl, args.ifName);
  await inContainer(args.netns, (ns, sock) => {
    checkSysctls(ns, sysctls);
    const link = linkByName(sock, args.ifName);
    if (!link) throw new CniError(ErrCode.Internal, `Cannot find container link ${args.ifName}`);
    checkLink(link, conf);
  });
}

// ---- GC ----

/** Removes this network's backups whose attachment is not in cni.dev/valid-attachments. */
function cmdGC(args: CmdArgs): void {
  const conf = load(args);
  if (!conf.validAttachments) {
    throw new CniError(ErrCode.InvalidNetworkConfig, "GC: config is missing cni.dev/valid-attachments");
  }
  const valid = new Set(conf.validAttachments.map((a) => backupPath(conf.dataDir, a.containerID, a.ifname)));
  for (const b of listBackups(conf.dataDir)) {
    const path = joinPath(conf.dataDir, b.file);
    // Files without our network tag (upstream's) cannot be told apart between networks: kept.
    if (b.network === conf.name && !valid.has(path)) removeBackup(path);
  }
}

export const plugin: Plugin = {
  supportedVersions: CNI_VERSIONS,
  about: "tuning: sets network sysctls and link attributes of the container interface",
  add: cmdAdd,
  del: cmdDel,
  check: cmdCheck,
  gc: cmdGC,
};
