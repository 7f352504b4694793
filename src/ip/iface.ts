/**
 * Applying an IPAM result to a container interface (upstream pkg/ipam ConfigureIface) and checking it
 * is still in place (upstream ip.ValidateExpectedInterfaceIPs / ValidateExpectedRoute, for CHECK).
 * Everything goes through a socket in the container netns; only sysctls enter it.
 */
import { addrAdd, addrList } from "../netlink/addr.ts";
import { linkByName, linkSetUp } from "../netlink/link.ts";
import { type RouteInfo, type RouteOptions, RT_TABLE, routeAppend, routeList } from "../netlink/route.ts";
import type { NetlinkSocket } from "../netlink/socket.ts";
import { sysctlGet, sysctlSet } from "../netlink/sysctl.ts";
import { type NetNS, withNetns } from "../ns/index.ts";
import { CniError, ErrCode, withContext } from "../spec/errors.ts";
import { formatIP, ipFamily, parseCIDR, parseIP } from "../spec/ipaddr.ts";
import type { IPConfig, Result, Route } from "../spec/types.ts";

/** Upstream waits up to 10 s for IPv6 addresses to leave the tentative state. */
const SETTLE_TIMEOUT_MS = 10_000;
const SETTLE_POLL_MS = 20;

function fail(msg: string): CniError {
  return new CniError(ErrCode.Internal, msg);
}

/** A named step: whatever it throws says the step. */
function wrap<T>(what: string, fn: () => T): T {
  return withContext(what, fn, { prefixCniErrors: true });
}

interface Net {
  family: 4 | 6;
  /** The address as written, canonical ("10.1.2.3"). */
  ip: string;
  prefix: number;
  /** Network address / prefix, canonical ("10.1.2.0/24"). */
  network: string;
}

/** Parses "10.1.2.3/24" into its canonical parts; undefined when it is not a CIDR. */
export function parseNet(cidr: string): Net | undefined {
  const c = parseCIDR(cidr);
  if (!c) return undefined;
  const family = ipFamily(c.ip);
  const bytes = family === 4 && c.ip.length === 16 ? c.ip.subarray(12) : c.ip;
  const masked = new Uint8Array(bytes);
  for (let i = 0; i < masked.length; i++) {
    const keep = Math.max(0, Math.min(8, c.prefix - i * 8));
    masked[i] = (masked[i] ?? 0) & ((0xff << (8 - keep)) & 0xff);
  }
  return { family, ip: formatIP(bytes), prefix: c.prefix, network: `${formatIP(masked)}/${c.prefix}` };
}

function mustNet(cidr: string, what: string): Net {
  const n = parseNet(cidr);
  if (!n) throw fail(`${what}: invalid CIDR ${JSON.stringify(cidr)}`);
  return n;
}

function sameIP(a: string | undefined, b: string | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  const x = parseIP(a);
  const y = parseIP(b);
  return !!x && !!y && formatIP(x) === formatIP(y);
}

/** The result's IPs meant for `ifName` (their `interface` index names it in result.interfaces). */
export function ipsForIface(result: Result, ifName: string): IPConfig[] {
  return (result.ips ?? []).filter(
    (ipc) => ipc.interface !== undefined && result.interfaces?.[ipc.interface]?.name === ifName,
  );
}

/**
 * Configures `ifName` in the container from `result`: its addresses (IPv6 enabled first, DAD off unless
 * enableDad), the link up, IPv6 addresses settled, then every result route — out of ifName, via the
 * route's gateway or else the first gateway of the route's family, as upstream does.
 */
export async function configureIface(
  contSock: NetlinkSocket,
  contNs: NetNS,
  ifName: string,
  result: Result,
): Promise<void> {
  if (!result.interfaces?.length) throw fail(`configuring ${ifName}: no interfaces to configure`);
  const link = wrap(`configuring ${ifName}`, () => linkByName(contSock, ifName));
  if (!link) throw fail(`configuring ${ifName}: failed to lookup ${JSON.stringify(ifName)}: no such link`);
  const ips = ipsForIface(result, ifName);
  const nets = ips.map((ipc) => mustNet(ipc.address, `adding IP address to ${ifName}`));
  const hasV6 = nets.some((n) => n.family === 6);
  if (hasV6) enableIPv6(contNs, ifName);

  const gateways: { 4?: string; 6?: string } = {};
  for (const ipc of ips) {
    wrap(`configuring ${ifName}`, () =>
      addrAdd(contSock, { index: link.index, devName: ifName, address: ipc.address }),
    );
    const gw = ipc.gateway === undefined ? undefined : parseIP(ipc.gateway);
    if (gw) gateways[ipFamily(gw)] ??= ipc.gateway;
  }
  wrap(`configuring ${ifName}`, () => linkSetUp(contSock, link.index));
  // An IPv6 route with a source or via one of our addresses needs them out of the tentative state.
  if (hasV6) await settleAddresses(contSock, link.index, ifName);

  for (const r of result.routes ?? []) {
    const family = mustNet(r.dst, `adding route on ${ifName}`).family;
    const o: RouteOptions = { ...routeOptions(r), index: link.index, devName: ifName };
    o.gw = r.gw ?? gateways[family];
    wrap(`configuring ${ifName}`, () => routeAppend(contSock, o));
  }
}

function routeOptions(r: Route): RouteOptions {
  const o: RouteOptions = { dst: r.dst };
  if (r.gw !== undefined) o.gw = r.gw;
  if (r.table !== undefined) o.table = r.table;
  if (r.scope !== undefined) o.scope = r.scope;
  if (r.priority !== undefined) o.priority = r.priority;
  if (r.mtu !== undefined) o.mtu = r.mtu;
  if (r.advmss !== undefined) o.advmss = r.advmss;
  return o;
}

/**
 * IPv6 on for lo and the interface (upstream). DAD is the caller's business: bridge turns it off
 * unless enabledad, ptp leaves the kernel's default, as upstream.
 */
function enableIPv6(contNs: NetNS, ifName: string): void {
  withNetns(contNs, () => {
    for (const dev of ["lo", ifName]) {
      const key = `net/ipv6/conf/${dev}/disable_ipv6`;
      let value: string;
      try {
        value = sysctlGet(key);
      } catch {
        continue; // upstream only logs a failed read
      }
      if (value === "0") continue;
      wrap(`enabling IPv6 on ${dev}`, () => sysctlSet(key, 0));
    }
  });
}

function isLinkLocal6(ip: string): boolean {
  return /^fe[89ab]/i.test(ip);
}

/**
 * Waits until the link's addresses leave the tentative state (upstream ip.SettleAddresses). Link-local
 * addresses are skipped like newer upstream: the kernel makes them on link up, with DAD.
 */
export async function settleAddresses(
  sock: NetlinkSocket,
  index: number,
  ifName: string,
  timeoutMs = SETTLE_TIMEOUT_MS,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const addrs = wrap(`settling addresses of ${ifName}`, () => addrList(sock, { index })).filter(
      (a) => !(a.version === 6 && isLinkLocal6(a.ip)),
    );
    const failed = addrs.find((a) => a.dadfailed);
    if (failed) throw fail(`${ifName}: duplicate address detection failed for ${failed.address}`);
    if (!addrs.some((a) => a.tentative)) return;
    if (Date.now() >= deadline) {
      throw fail(`link ${ifName} still has tentative addresses after ${timeoutMs / 1000} seconds`);
    }
    await Bun.sleep(SETTLE_POLL_MS);
  }
}

// ---- CHECK ----

/** Throws unless every IP of `ips` is on `ifName` and a route to its subnet exists. */
export function checkIfaceIPs(contSock: NetlinkSocket, ifName: string, ips: readonly IPConfig[]): void {
  const link = wrap(`checking ${ifName}`, () => linkByName(contSock, ifName));
  if (!link) throw fail(`Cannot find container link ${ifName}`);
  const addrs = wrap(`checking ${ifName}`, () => addrList(contSock, { index: link.index }));
  const routes = wrap(`checking ${ifName}`, () => routeList(contSock));
  for (const ipc of ips) {
    const want = mustNet(ipc.address, `checking ${ifName}`);
    const found = addrs.some((a) => a.prefixLen === want.prefix && sameIP(a.ip, want.ip));
    if (!found) throw fail(`Failed to match addr ${ipc.address} on interface ${ifName}`);
    const toSubnet = routes.some(
      (r) => r.version === want.family && parseNet(r.dst)?.network === want.network,
    );
    if (!toSubnet) {
      throw fail(`Failed to find a route to ${want.network} for ${ipc.address} on interface ${ifName}`);
    }
  }
}

function routeMatches(have: RouteInfo, want: Route, wantNet: Net): boolean {
  if (have.version !== wantNet.family) return false;
  if (parseNet(have.dst)?.network !== wantNet.network) return false;
  // Upstream matches a default route on its destination only.
  if (wantNet.prefix === 0 || want.gw === undefined) return true;
  return sameIP(have.gw, want.gw);
}

/** Throws unless every route of `routes` (destination and gateway) is in its table (main by default). */
export function checkRoutes(contSock: NetlinkSocket, routes: readonly Route[]): void {
  const byTable = new Map<number, RouteInfo[]>();
  for (const want of routes) {
    const wantNet = parseNet(want.dst);
    if (!wantNet) throw fail(`Invalid static route found ${JSON.stringify(want)}`);
    const table = want.table ?? RT_TABLE.main;
    let have = byTable.get(table);
    if (!have) {
      have = wrap("checking routes", () => routeList(contSock, { table }));
      byTable.set(table, have);
    }
    if (!have.some((h) => routeMatches(h, want, wantNet))) {
      const via = want.gw ? ` via ${want.gw}` : "";
      throw fail(`Expected Route ${want.dst}${via} not found in routing table`);
    }
  }
}

/**
 * CHECK of an interface: checkIfaceIPs for the result IPs that point at it (or at no interface, as in
 * results converted from versions before 0.3.0), then checkRoutes for the result routes.
 */
export function checkIface(contSock: NetlinkSocket, ifName: string, result: Result): void {
  const mine = new Set(ipsForIface(result, ifName));
  const ips = (result.ips ?? []).filter((ipc) => ipc.interface === undefined || mine.has(ipc));
  checkIfaceIPs(contSock, ifName, ips);
  checkRoutes(contSock, result.routes ?? []);
}
