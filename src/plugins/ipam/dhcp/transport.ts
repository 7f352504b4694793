/**
 * One DHCP conversation's socket: an AF_PACKET socket opened inside the container's netns, bound to
 * the container interface, that sends whole Ethernet/IPv4/UDP frames and receives the frames for UDP
 * port 68 (a classic BPF filter drops the rest in the kernel). It works before the interface has an
 * address, like upstream's nclient4 raw connection.
 *
 * The socket is opened per exchange and closed after it: a packet socket holds its netns, and a
 * daemon that kept one per lease would keep a deleted container's netns (and its veth) alive.
 *
 * Receiving is asynchronous: every socket waiting for a frame joins one poller, which polls them all
 * in short blocking turns while any is waiting (Bun's event loop cannot watch a raw fd).
 */
import { type Link, linkByName, linkSetUp } from "../../../netlink/link.ts";
import { NetlinkSocket } from "../../../netlink/socket.ts";
import { openNetns } from "../../../ns/index.ts";
import { withNetnsFd } from "../../../sys/netns.ts";
import {
  attachFilter,
  type BpfInsn,
  closeFd,
  openPacketSocket,
  PACKET_OUTGOING,
  pollReadable,
  recvFrame,
  sendFrame,
} from "../../../sys/packet.ts";
import {
  BROADCAST_MAC,
  DHCP_CLIENT_PORT,
  DHCP_SERVER_PORT,
  decodeArpFrame,
  decodeUdpFrame,
  ETH_P_ARP,
  ETH_P_IP,
  encodeArpFrame,
  encodeUdpFrame,
} from "./frame.ts";
import { DhcpDecodeError, type DhcpMessage, decodeMessage, encodeMessage, macToBytes } from "./message.ts";

/** `udp dst port 68`, IPv4 first fragments only (tcpdump -dd, by hand). */
const FILTER_UDP_DST_68: readonly BpfInsn[] = [
  [0x28, 0, 0, 12], // ldh [12]            ethertype
  [0x15, 0, 8, 0x0800], // jeq IPv4, else drop
  [0x30, 0, 0, 23], // ldb [23]            protocol
  [0x15, 0, 6, 17], // jeq UDP, else drop
  [0x28, 0, 0, 20], // ldh [20]            fragment offset
  [0x45, 4, 0, 0x1fff], // jset → drop
  [0xb1, 0, 0, 14], // ldxb 4*([14]&0xf)   IP header length
  [0x48, 0, 0, 16], // ldh [x+16]          UDP destination port
  [0x15, 0, 1, DHCP_CLIENT_PORT], // jeq 68, else drop
  [0x06, 0, 0, 0x40000], // accept
  [0x06, 0, 0, 0], // drop
];

// ---- the poller ----

/**
 * Each turn blocks in poll(2) for at most this long, then yields to the event loop: a reply wakes
 * the poll at once (a timer would add up to its period per exchange), and other work (requests,
 * timers) waits at most this long. The CPU sleeps in poll, it does not spin.
 */
const BLOCK_MS = 1;
const waiting = new Map<number, () => void>();
let polling = false;

function pollOnce(): void {
  if (waiting.size === 0) {
    polling = false;
    return;
  }
  let ready: Set<number>;
  try {
    ready = pollReadable([...waiting.keys()], BLOCK_MS);
  } catch {
    ready = new Set(waiting.keys()); // let each reader see its own error
  }
  for (const fd of ready) waiting.get(fd)?.();
  setImmediate(pollOnce);
}

function watch(fd: number, onReadable: () => void): () => void {
  waiting.set(fd, onReadable);
  if (!polling) {
    polling = true;
    setImmediate(pollOnce);
  }
  return () => {
    if (waiting.get(fd) === onReadable) waiting.delete(fd);
  };
}

// ---- the connection ----

/** How long open() waits for a link that was just set up to become operational. */
const OPER_WAIT_MS = 3000;

function operational(link: Link): boolean {
  // "unknown": drivers that do not report operstate (dummy, some tun setups) — treat as usable.
  return link.up && (link.operstate === "up" || link.operstate === "unknown");
}

export interface Received {
  msg: DhcpMessage;
  srcMac: string;
  srcIp: string;
}

export interface SendTo {
  /** Ethernet destination; broadcast when omitted. */
  dstMac?: string;
  srcIp?: string;
  dstIp?: string;
}

export class LinkGoneError extends Error {
  constructor(what: string) {
    super(what);
    this.name = "LinkGoneError";
  }
}

export class PacketConn {
  private readonly buf = new Uint8Array(4096);
  private closed = false;

  private constructor(
    private readonly fd: number,
    readonly ifindex: number,
    readonly mac: string,
    /** ETH_P_ARP socket for the conflict probe, when asked for. */
    private readonly arpFd: number | undefined,
  ) {}

  /**
   * Opens the socket on `ifName` inside the netns at `netnsPath`, bringing the link up when it is
   * down (upstream does the same) and waiting until it is operational: frames sent before the
   * kernel's linkwatch activates the device go to its no-op qdisc and are lost, which would cost a
   * 2 s retransmission. A missing netns or link is a LinkGoneError. `arp`: also open an ARP socket
   * for arpConflict().
   */
  static async open(netnsPath: string, ifName: string, arp = false): Promise<PacketConn> {
    let ns: ReturnType<typeof openNetns>;
    try {
      ns = openNetns(netnsPath);
    } catch (err) {
      throw new LinkGoneError(err instanceof Error ? err.message : String(err));
    }
    try {
      const sock = NetlinkSocket.open({ netnsFd: ns.fd });
      let index: number;
      let mac: string;
      try {
        const find = () => {
          const link = linkByName(sock, ifName);
          if (!link) throw new LinkGoneError(`interface ${ifName} not found in netns ${netnsPath}`);
          return link;
        };
        let link = find();
        if (!link.mac) throw new Error(`interface ${ifName} has no hardware address`);
        if (!link.up) linkSetUp(sock, link.index);
        for (const deadline = Date.now() + OPER_WAIT_MS; !operational(link) && Date.now() < deadline; ) {
          await Bun.sleep(5);
          link = find();
        }
        index = link.index;
        mac = link.mac;
      } finally {
        sock.close();
      }
      const fd = withNetnsFd(ns.fd, () => openPacketSocket(index, ETH_P_IP));
      let arpFd: number | undefined;
      try {
        attachFilter(fd, FILTER_UDP_DST_68);
        if (arp) arpFd = withNetnsFd(ns.fd, () => openPacketSocket(index, ETH_P_ARP));
      } catch (err) {
        closeFd(fd);
        throw err;
      }
      return new PacketConn(fd, index, mac, arpFd);
    } finally {
      ns.close();
    }
  }

  send(msg: DhcpMessage, to: SendTo = {}): void {
    const dstMac = to.dstMac ?? BROADCAST_MAC;
    const frame = encodeUdpFrame({
      srcMac: this.mac,
      dstMac,
      srcIp: to.srcIp ?? "0.0.0.0",
      dstIp: to.dstIp ?? "255.255.255.255",
      srcPort: DHCP_CLIENT_PORT,
      dstPort: DHCP_SERVER_PORT,
      payload: encodeMessage(msg),
    });
    sendFrame(this.fd, frame, this.ifindex, ETH_P_IP, macToBytes(dstMac));
  }

  /** Drains the queue: the first DHCP reply that `accept` takes, or undefined. */
  private take(accept: (r: Received) => boolean): Received | undefined {
    for (;;) {
      const f = recvFrame(this.fd, this.buf);
      if (!f) return undefined;
      if (f.pkttype === PACKET_OUTGOING) continue;
      const udp = decodeUdpFrame(f.data);
      if (!udp || udp.srcPort !== DHCP_SERVER_PORT || udp.dstPort !== DHCP_CLIENT_PORT) continue;
      let msg: DhcpMessage;
      try {
        msg = decodeMessage(udp.payload);
      } catch (err) {
        if (err instanceof DhcpDecodeError) continue;
        throw err;
      }
      const r = { msg, srcMac: udp.srcMac, srcIp: udp.srcIp };
      if (accept(r)) return r;
    }
  }

  /** The first reply `accept` takes within `timeoutMs`, undefined on timeout or abort. */
  receive(
    accept: (r: Received) => boolean,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<Received | undefined> {
    return this.waitFor(this.fd, () => this.take(accept), timeoutMs, signal);
  }

  /**
   * RFC 5227's probe: an ARP request for `ip` from 0.0.0.0, then `waitMs` for another host to say
   * it has `ip` (its reply, or its own probe or announcement). The MAC of that host, or undefined.
   */
  async arpConflict(ip: string, waitMs: number, signal?: AbortSignal): Promise<string | undefined> {
    const fd = this.arpFd;
    if (fd === undefined) throw new Error("arpConflict: opened without an ARP socket");
    const probe = {
      op: 1 as const,
      senderMac: this.mac,
      senderIp: "0.0.0.0",
      targetMac: "00:00:00:00:00:00",
      targetIp: ip,
    };
    sendFrame(fd, encodeArpFrame(probe), this.ifindex, ETH_P_ARP, macToBytes(BROADCAST_MAC));
    const take = () => {
      for (;;) {
        const f = recvFrame(fd, this.buf);
        if (!f) return undefined;
        if (f.pkttype === PACKET_OUTGOING) continue;
        const a = decodeArpFrame(f.data);
        if (!a || a.senderMac === this.mac) continue;
        // someone using ip, or probing for it at the same time
        if (a.senderIp === ip || (a.op === 1 && a.senderIp === "0.0.0.0" && a.targetIp === ip))
          return a.senderMac;
      }
    };
    return this.waitFor(fd, take, waitMs, signal);
  }

  private waitFor<T>(
    fd: number,
    take: () => T | undefined,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<T | undefined> {
    const now = take();
    if (now !== undefined || this.closed) return Promise.resolve(now);
    return new Promise((resolve, reject) => {
      let done = false;
      const finish = (r: T | undefined, err?: unknown) => {
        if (done) return;
        done = true;
        unwatch();
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        if (err) reject(err);
        else resolve(r);
      };
      const onAbort = () => finish(undefined);
      const timer = setTimeout(() => finish(undefined), Math.max(0, timeoutMs));
      const unwatch = watch(fd, () => {
        try {
          const r = take();
          if (r !== undefined) finish(r);
        } catch (err) {
          finish(undefined, err);
        }
      });
      if (signal?.aborted) onAbort();
      else signal?.addEventListener("abort", onAbort);
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    waiting.delete(this.fd);
    closeFd(this.fd);
    if (this.arpFd !== undefined) {
      waiting.delete(this.arpFd);
      closeFd(this.arpFd);
    }
  }
}
