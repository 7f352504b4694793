/**
 * The DHCPv4 client's exchanges (RFC 2131 §4.4): DISCOVER → OFFER → REQUEST → ACK, renewing
 * (unicast REQUEST to the server at T1), rebinding (broadcast REQUEST at T2), RELEASE. Each
 * exchange opens its own PacketConn inside the container netns and closes it when done.
 *
 * Retransmission follows upstream's backoffRetry: four fast retries 2 s ± 1 s apart, then 4 s
 * doubling up to `resendMax`, ± 1 s; one transmission waits at most `timeout` for its answer; the
 * whole exchange gives up at `deadline`.
 */

import type { DhcpMessage } from "./message.ts";
import { FLAG_BROADCAST, MsgType, messageType, newRequest, Opt, optIP, optUint32 } from "./message.ts";
import { PacketConn, type Received } from "./transport.ts";

export interface ClientTiming {
  /** Longest wait for the answer to one transmission (upstream's -timeout, 10 s). */
  timeoutMs: number;
  /** Longest gap between retransmissions (upstream's -resendmax, 62 s). */
  resendMaxMs: number;
}

export interface Attachment {
  clientID: string;
  /** netns path as the daemon opens it (host prefix applied). */
  netns: string;
  ifName: string;
  /** Options sent in every DISCOVER/REQUEST: parameter request list, provided options. */
  options: [number, Uint8Array][];
  broadcast: boolean;
  /** RFC 5227 conflict probe after an ACK, this long (0: none, like upstream); a conflict is DECLINEd. */
  arpCheckMs?: number;
}

/** A bound lease: the ACK and when it was received. */
export interface Bound {
  ack: DhcpMessage;
  ip: string;
  serverId: string;
  /** Ethernet address the ACK came from (the server, or its relay): where unicast renewals go. */
  serverMac: string;
  mac: string;
  boundAt: number;
  renewAt: number;
  rebindAt: number;
  expireAt: number;
}

export class DhcpError extends Error {
  constructor(msg: string) {
    super(msg);
    this.name = "DhcpError";
  }
}

export class NakError extends DhcpError {}

const DEFAULT_LEASE_S = 3600;

export function clientIdOption(clientID: string): Uint8Array {
  // Upstream's withClientID: type 0 (not a hardware address), then the text.
  const text = new TextEncoder().encode(clientID);
  const out = new Uint8Array(1 + text.length);
  out.set(text, 1);
  return out;
}

function randomXid(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0]!;
}

function jitter(spanMs: number): number {
  return spanMs * (2 * Math.random() - 1);
}

/** Upstream's retransmission delays: fast 2 s ×4, then 4 s doubling to resendMax, each ± 1 s. */
export function* retransmitDelays(resendMaxMs: number): Generator<number> {
  for (let i = 0; i < 4; i++) yield 2000 + jitter(1000);
  let base = 4000;
  for (;;) {
    yield base + jitter(1000);
    if (base < resendMaxMs) base = Math.min(base * 2, resendMaxMs);
  }
}

export function leaseTimes(
  ack: DhcpMessage,
  now: number,
): Pick<Bound, "boundAt" | "renewAt" | "rebindAt" | "expireAt"> {
  const lease = optUint32(ack, Opt.LeaseTime) ?? DEFAULT_LEASE_S;
  const t1 = optUint32(ack, Opt.RenewalTime) ?? Math.floor(lease / 2);
  const t2 = optUint32(ack, Opt.RebindingTime) ?? Math.floor((lease * 85) / 100);
  // 0xffffffff is an infinite lease: never renew (a timer that far out overflows; cap at ~24 days).
  const cap = (s: number) => Math.min(s, 0x7fffffff / 1000);
  return {
    boundAt: now,
    renewAt: now + cap(t1) * 1000,
    rebindAt: now + cap(Math.max(t2, t1)) * 1000,
    expireAt: now + cap(Math.max(lease, t2)) * 1000,
  };
}

interface Exchange {
  conn: PacketConn;
  xid: number;
  start: number;
}

function request(a: Attachment, ex: Exchange, type: number, extra: [number, Uint8Array][], ciaddr?: string) {
  const secs = Math.min(0xffff, Math.floor((Date.now() - ex.start) / 1000));
  return newRequest({
    xid: ex.xid,
    chaddr: ex.conn.mac,
    type,
    ciaddr,
    secs,
    flags: a.broadcast && !ciaddr ? FLAG_BROADCAST : 0,
    options: [[Opt.ClientIdentifier, clientIdOption(a.clientID)], ...extra, ...a.options],
  });
}

/**
 * Sends `build()` and waits for the reply `accept` takes, retransmitting until `deadline` (epoch ms).
 * Rebuilds the message each time (secs grows).
 */
async function transact(
  ex: Exchange,
  build: () => DhcpMessage,
  to: Parameters<PacketConn["send"]>[1],
  accept: (r: Received) => boolean,
  timing: ClientTiming,
  deadline: number,
  signal: AbortSignal | undefined,
  what: string,
): Promise<Received> {
  for (const delay of retransmitDelays(timing.resendMaxMs)) {
    if (signal?.aborted) throw new DhcpError(`${what}: cancelled`);
    ex.conn.send(build(), to);
    const wait = Math.min(delay, timing.timeoutMs, deadline - Date.now());
    const r = await ex.conn.receive(accept, wait, signal);
    if (r) return r;
    if (Date.now() >= deadline) break;
  }
  throw new DhcpError(`${what}: no answer from a DHCP server`);
}

function isReply(ex: Exchange, types: number[]): (r: Received) => boolean {
  return (r) =>
    r.msg.op === 2 &&
    r.msg.xid === ex.xid &&
    r.msg.chaddr === ex.conn.mac &&
    types.includes(messageType(r.msg) ?? -1);
}

function bound(r: Received, mac: string, serverIdFallback?: string): Bound {
  const serverId = optIP(r.msg, Opt.ServerIdentifier) ?? serverIdFallback ?? r.srcIp;
  return {
    ack: r.msg,
    ip: r.msg.yiaddr,
    serverId,
    serverMac: r.srcMac,
    mac,
    ...leaseTimes(r.msg, Date.now()),
  };
}

function nakText(r: Received): string {
  const m = r.msg.options.get(Opt.Message);
  return m ? `: ${new TextDecoder().decode(m)}` : "";
}

/**
 * DISCOVER → OFFER → REQUEST → ACK. `requestedIp` asks for an address again (after a restart or an
 * expiry). A NAK to the REQUEST starts over with a DISCOVER; so does an address another host
 * answers an ARP probe for (after a DHCPDECLINE), when `arpCheckMs` asks for the probe. At most
 * three rounds.
 */
export async function acquire(
  a: Attachment,
  timing: ClientTiming,
  deadline: number,
  signal?: AbortSignal,
  requestedIp?: string,
  onDecline?: (ip: string, owner: string) => void,
): Promise<Bound> {
  const conn = await PacketConn.open(a.netns, a.ifName, (a.arpCheckMs ?? 0) > 0);
  try {
    for (let naks = 0; ; naks++) {
      const ex: Exchange = { conn, xid: randomXid(), start: Date.now() };
      const hint: [number, Uint8Array][] =
        requestedIp && naks === 0 ? [[Opt.RequestedIP, ipBytes(requestedIp)]] : [];
      const offer = await transact(
        ex,
        () => request(a, ex, MsgType.Discover, hint),
        {},
        isReply(ex, [MsgType.Offer]),
        timing,
        deadline,
        signal,
        `${a.clientID}: DHCPDISCOVER`,
      );
      const serverId = optIP(offer.msg, Opt.ServerIdentifier);
      if (!serverId) continue; // RFC 2131: an OFFER must name its server; wait for a proper one
      const ip = offer.msg.yiaddr;
      const sel: [number, Uint8Array][] = [
        [Opt.RequestedIP, ipBytes(ip)],
        [Opt.ServerIdentifier, ipBytes(serverId)],
      ];
      const ack = await transact(
        ex,
        () => request(a, ex, MsgType.Request, sel),
        {},
        (r) =>
          isReply(ex, [MsgType.Ack, MsgType.Nak])(r) &&
          (optIP(r.msg, Opt.ServerIdentifier) ?? serverId) === serverId,
        timing,
        deadline,
        signal,
        `${a.clientID}: DHCPREQUEST for ${ip}`,
      );
      if (messageType(ack.msg) === MsgType.Nak) {
        if (naks >= 2) throw new NakError(`${a.clientID}: DHCPNAK for ${ip} from ${serverId}${nakText(ack)}`);
        continue;
      }
      const got = ack.msg.yiaddr;
      const owner = a.arpCheckMs ? await conn.arpConflict(got, a.arpCheckMs, signal) : undefined;
      if (owner !== undefined) {
        // RFC 2131 §4.4.1: the address is in use — DHCPDECLINE it and start over.
        conn.send(
          newRequest({
            xid: ex.xid,
            chaddr: conn.mac,
            type: MsgType.Decline,
            options: [
              [Opt.RequestedIP, ipBytes(got)],
              [Opt.ServerIdentifier, ipBytes(serverId)],
              [Opt.ClientIdentifier, clientIdOption(a.clientID)],
            ],
          }),
        );
        onDecline?.(got, owner);
        if (naks >= 2)
          throw new DhcpError(`${a.clientID}: ${got} from ${serverId} is in use by ${owner} (declined)`);
        continue;
      }
      return bound(ack, conn.mac, serverId);
    }
  } finally {
    conn.close();
  }
}

/**
 * RENEWING (unicast to the server, `rebind` false) or REBINDING (broadcast): a REQUEST with ciaddr,
 * until `deadline`. A NAK is a NakError: the lease is gone.
 */
export async function extend(
  a: Attachment,
  lease: Bound,
  rebind: boolean,
  timing: ClientTiming,
  deadline: number,
  signal?: AbortSignal,
): Promise<Bound> {
  const conn = await PacketConn.open(a.netns, a.ifName);
  try {
    const ex: Exchange = { conn, xid: randomXid(), start: Date.now() };
    const to = rebind
      ? { srcIp: lease.ip }
      : { dstMac: lease.serverMac, srcIp: lease.ip, dstIp: lease.serverId };
    const r = await transact(
      ex,
      () => request(a, ex, MsgType.Request, [], lease.ip),
      to,
      isReply(ex, [MsgType.Ack, MsgType.Nak]),
      timing,
      deadline,
      signal,
      `${a.clientID}: DHCPREQUEST (${rebind ? "rebinding" : "renewing"} ${lease.ip})`,
    );
    if (messageType(r.msg) === MsgType.Nak) {
      throw new NakError(`${a.clientID}: DHCPNAK for ${lease.ip}${nakText(r)}`);
    }
    return bound(r, conn.mac, lease.serverId);
  } finally {
    conn.close();
  }
}

/** DHCPRELEASE, unicast to the server (RFC 2131 §4.4.6): no answer comes back. */
export async function release(
  a: Attachment,
  lease: Pick<Bound, "ip" | "serverId" | "serverMac">,
): Promise<void> {
  const conn = await PacketConn.open(a.netns, a.ifName);
  try {
    const msg = newRequest({
      xid: randomXid(),
      chaddr: conn.mac,
      type: MsgType.Release,
      ciaddr: lease.ip,
      options: [
        [Opt.ServerIdentifier, ipBytes(lease.serverId)],
        [Opt.ClientIdentifier, clientIdOption(a.clientID)],
      ],
    });
    conn.send(msg, { dstMac: lease.serverMac, srcIp: lease.ip, dstIp: lease.serverId });
  } finally {
    conn.close();
  }
}

function ipBytes(ip: string): Uint8Array {
  return Uint8Array.from(ip.split(".").map(Number));
}
