/**
 * sbr (meta): source-based routing for the chained interface (upstream plugins/meta/sbr v1.9). For each
 * of the interface's addresses in prevResult: a rule `from <ip> lookup <table>`, the table the first
 * free one from 100 (no rule and no route uses it), holding a default route via the address's gateway
 * and the interface's main-table routes, which leave the main table. With `table` only the rules are
 * added. DEL removes the rules from the interface's addresses and the routes sbr put in their tables.
 * Calls on one netns are serialised by an flock on its path, as upstream.
 */
import { withContainer } from "../../../ip/container.ts";
import { parseNet } from "../../../ip/iface.ts";
import { withUndo } from "../../../ip/undo.ts";
import { addrList, type IpVersion } from "../../../netlink/addr.ts";
import { linkByName } from "../../../netlink/link.ts";
import {
  type RouteInfo,
  type RouteOptions,
  RT_TABLE,
  routeDel,
  routeList,
  routeReplace,
} from "../../../netlink/route.ts";
import { type RuleInfo, ruleAdd, ruleDel, ruleList } from "../../../netlink/rule.ts";
import type { NetlinkSocket } from "../../../netlink/socket.ts";
import { NsNotFoundError } from "../../../ns/index.ts";
import type { CmdArgs, Plugin } from "../../../skel/types.ts";
import { CniError, ErrCode, withContext } from "../../../spec/errors.ts";
import { formatIP, parseIP } from "../../../spec/ipaddr.ts";
import { CNI_VERSIONS, type IPConfig, type Result } from "../../../spec/types.ts";
import { isErrno } from "../../../sys/errno.ts";
import { closeFile, O_RDONLY, openFile } from "../../../sys/fs.ts";
import { flockExclusive, serialized } from "../../../sys/lock.ts";
import { loadSbrConf, type SbrConf } from "./config.ts";

const FIRST_TABLE = 100;

function fail(msg: string): CniError {
  return new CniError(ErrCode.Internal, msg);
}

/** A named step: whatever it throws says the step. */
function wrap<T>(what: string, fn: () => T): T {
  return withContext(what, fn, { prefixCniErrors: true });
}

/**
 * Runs fn holding an exclusive flock on the netns file (released when the fd closes); two sbr calls of
 * one process (in-process dispatch) on one netns queue instead of deadlocking (sys/lock.ts).
 */
function withNetnsLock<T>(path: string, fn: () => Promise<T>): Promise<T> {
  return serialized(`netns ${path}`, async () => {
    let fd: number;
    try {
      fd = openFile(path, O_RDONLY);
    } catch (err) {
      if (isErrno(err, "ENOENT")) throw new NsNotFoundError(path);
      throw CniError.from(err, `locking netns ${path}`);
    }
    try {
      try {
        await flockExclusive(fd);
      } catch (err) {
        throw CniError.from(err, `locking netns ${path}`);
      }
      return await fn();
    } finally {
      closeFile(fd);
    }
  });
}

/** The prevResult IPs of CNI_IFNAME (an IP naming no interface counts, as upstream). */
function ipsOf(result: Result, ifName: string): IPConfig[] {
  if (!result.ips?.length) throw fail(`No IP addresses supplied on interface: ${ifName}`);
  return result.ips.filter((ipc) => {
    if (ipc.interface === undefined) return true;
    const iface = result.interfaces?.[ipc.interface];
    return !iface || iface.name === ifName;
  });
}

const familyOf = (ip: string): IpVersion => (ip.includes(":") ? 6 : 4);
const hostCidr = (ip: string) => `${ip}/${familyOf(ip) === 4 ? 32 : 128}`;
const sameIP = (a: string | undefined, b: string) => {
  if (a === undefined) return false;
  const x = parseIP(a);
  const y = parseIP(b);
  return !!x && !!y && formatIP(x) === formatIP(y);
};

function allRules(sock: NetlinkSocket): RuleInfo[] {
  return wrap("Failed to list all rules", () => [...ruleList(sock, 4), ...ruleList(sock, 6)]);
}

/** The first table from `from` on that no rule and no route (in any table) uses. */
function nextFreeTable(used: Set<number>, from: number): number {
  let t = from;
  while (used.has(t)) t++;
  return t;
}

function inSubnet(cidr: string, ip: string | undefined): boolean {
  if (!ip) return false;
  const net = parseNet(cidr);
  const probe = parseNet(`${ip}/${net?.prefix ?? 0}`);
  return !!net && !!probe && net.family === probe.family && net.network === probe.network;
}

function copyOptions(r: RouteInfo, table: number): RouteOptions {
  const o: RouteOptions = {
    dst: r.dst,
    version: r.version,
    table,
    scope: r.scope,
    protocol: r.protocol,
    type: r.type,
  };
  if (r.index !== undefined) o.index = r.index;
  if (r.gw) o.gw = r.gw;
  if (r.priority) o.priority = r.priority;
  if (r.src) o.src = r.src;
  if (r.mtu) o.mtu = r.mtu;
  if (r.advmss) o.advmss = r.advmss;
  return o;
}

function delOptions(r: RouteInfo): RouteOptions {
  const o: RouteOptions = { dst: r.dst, version: r.version, table: r.table, scope: r.scope };
  if (r.index !== undefined) o.index = r.index;
  if (r.gw) o.gw = r.gw;
  if (r.priority) o.priority = r.priority;
  return o;
}

/** Upstream doRoutes: a table per address, its rule, default route and the interface's routes. */
async function doRoutes(sock: NetlinkSocket, ifName: string, ips: IPConfig[], conf: SbrConf): Promise<void> {
  const used = new Set<number>(allRules(sock).map((r) => r.table));
  for (const r of wrap("Failed to list all routes", () => routeList(sock, { table: 0 }))) used.add(r.table);
  const link = linkByName(sock, ifName);
  if (!link) throw fail(`Cannot find network interface ${ifName}`);
  const mainRoutes = wrap("Unable to list routes", () => routeList(sock, { index: link.index }));
  await withUndo(async (undo) => {
    let table = nextFreeTable(used, FIRST_TABLE);
    for (const ipc of ips) {
      const ip = ipc.address.split("/")[0] ?? "";
      const version = familyOf(ip);
      const rule = { version, table, src: hostCidr(ip) };
      wrap("Failed to add rule", () => ruleAdd(sock, rule));
      undo.push({ what: `deleting rule from ${ip}`, run: () => ruleDel(sock, rule) });
      const gw = conf.gateways[version] ?? ipc.gateway;
      if (gw) {
        wrap(`Failed to add default route to ${gw}`, () =>
          routeReplace(sock, {
            dst: version === 4 ? "0.0.0.0/0" : "::/0",
            version,
            gw,
            table,
            index: link.index,
          }),
        );
      }
      for (const r of mainRoutes) {
        if (!(inSubnet(ipc.address, r.src) || inSubnet(ipc.address, r.gw) || (!r.src && !r.gw))) continue;
        wrap("Failed to readd route", () => routeReplace(sock, copyOptions(r, table)));
      }
      const t = table;
      undo.push({ what: `flushing table ${t}`, run: () => flushTable(sock, t, link.index) });
      used.add(table);
      table = nextFreeTable(used, table + 1);
    }
    if (conf.addSourceHints) {
      addSourceHints(sock, link.index, ips, mainRoutes);
      return;
    }
    // Deleted only after every copy: several addresses may share a subnet (upstream's order).
    for (const r of mainRoutes) wrap("Failed to delete route", () => routeDel(sock, delOptions(r)));
  });
}

/**
 * addSourceHints (upstream main): each address's subnet route stays in the main table with the address
 * as its source hint, so destination-based routing works too; the other main-table routes go. Failures
 * here are only warnings upstream: they are ignored the same way.
 */
function addSourceHints(sock: NetlinkSocket, index: number, ips: IPConfig[], mainRoutes: RouteInfo[]): void {
  for (const ipc of ips) {
    const net = parseNet(ipc.address);
    if (!net) continue;
    try {
      routeReplace(sock, {
        dst: net.network,
        version: net.family,
        index,
        src: net.ip,
        scope: "link",
        table: RT_TABLE.main,
      });
    } catch {
      // upstream logs a warning and goes on
    }
  }
  for (const r of mainRoutes) {
    if (r.scope === 253 /* link */) continue;
    try {
      routeDel(sock, delOptions(r));
    } catch {
      // upstream logs a warning and goes on
    }
  }
}

/** Upstream doRoutesWithTable: only the rules, into the given table. */
function doRulesWithTable(sock: NetlinkSocket, ips: IPConfig[], table: number): void {
  for (const ipc of ips) {
    const ip = ipc.address.split("/")[0] ?? "";
    wrap("failed to add rule", () => ruleAdd(sock, { version: familyOf(ip), table, src: hostCidr(ip) }));
  }
}

function flushTable(sock: NetlinkSocket, table: number, index: number): void {
  for (const r of routeList(sock, { table, index })) {
    try {
      routeDel(sock, delOptions(r));
    } catch {
      // gone with another route (a gateway's link route)
    }
  }
}

async function cmdAdd(args: CmdArgs): Promise<Result> {
  const conf = loadSbrConf(args.stdinData);
  const prev = conf.prevResult;
  if (!prev) throw new CniError(ErrCode.InvalidNetworkConfig, "This plugin must be called as chained plugin");
  const ips = ipsOf(prev, args.ifName);
  await withNetnsLock(args.netns, () =>
    withContainer(args.netns, async (c) => {
      if (conf.table !== undefined) doRulesWithTable(c.sock, ips, conf.table);
      else await doRoutes(c.sock, args.ifName, ips, conf);
    }),
  );
  return prev;
}

/**
 * Removes the rules whose source is one of the interface's addresses (only in `table` when set) and,
 * for tables sbr picked, the interface's routes in them. Done when the netns or interface is gone.
 */
function tidy(sock: NetlinkSocket, ifName: string, conf: SbrConf): void {
  const link = wrap(`Failed to get link ${ifName}`, () => linkByName(sock, ifName));
  if (!link) return;
  const addrs = wrap("Failed to list all addrs", () => addrList(sock, { index: link.index }));
  let rules = allRules(sock);
  if (conf.table !== undefined) rules = rules.filter((r) => r.table === conf.table);
  const errors: string[] = [];
  const tables = new Set<number>();
  for (const rule of rules) {
    const src = rule.src?.split("/")[0];
    if (!src || !addrs.some((a) => sameIP(a.ip, src))) continue;
    try {
      ruleDel(sock, { version: rule.version, table: rule.table, src: rule.src, priority: rule.priority });
      tables.add(rule.table);
    } catch (err) {
      errors.push(err instanceof Error ? err.message : String(err));
    }
  }
  if (conf.table === undefined) {
    for (const t of tables) if (t !== RT_TABLE.main && t !== RT_TABLE.local) flushTable(sock, t, link.index);
  }
  if (errors.length) throw fail(`Failed to delete rule: ${errors.join("; ")}`);
}

async function cmdDel(args: CmdArgs): Promise<void> {
  const conf = loadSbrConf(args.stdinData);
  if (args.netns === "") return;
  try {
    await withNetnsLock(args.netns, () => withContainer(args.netns, (c) => tidy(c.sock, args.ifName, conf)));
  } catch (err) {
    if (!(err instanceof NsNotFoundError)) throw err;
  }
}

/** Upstream's CHECK does nothing; this one checks that every address still has its rule. */
async function cmdCheck(args: CmdArgs): Promise<void> {
  const conf = loadSbrConf(args.stdinData);
  const prev = conf.prevResult;
  if (!prev) throw new CniError(ErrCode.InvalidNetworkConfig, "Required prevResult missing");
  const ips = ipsOf(prev, args.ifName);
  await withContainer(args.netns, (c) => {
    const rules = allRules(c.sock);
    for (const ipc of ips) {
      const ip = ipc.address.split("/")[0] ?? "";
      const found = rules.some(
        (r) =>
          r.src !== undefined &&
          r.src === hostCidr(formatIP(parseIP(ip) ?? new Uint8Array())) &&
          (conf.table === undefined || r.table === conf.table),
      );
      if (!found) throw fail(`no source-based routing rule for ${ip} on ${args.ifName}`);
    }
  });
}

export const plugin: Plugin = {
  supportedVersions: CNI_VERSIONS,
  about: "sbr: source-based routing for the chained interface",
  add: cmdAdd,
  del: cmdDel,
  check: cmdCheck,
};
