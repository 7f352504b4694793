/**
 * A netlink socket: sequence numbers, request/ack, dumps. Calls are synchronous (blocking recv on the
 * JS thread); a plugin does a handful of requests and blocking is the fastest path.
 * A socket opened inside a netns stays bound to it and can be used from anywhere afterwards.
 */

import { SysError } from "../sys/errno.ts";
import {
  AF_NETLINK,
  bind,
  close,
  MSG_PEEK,
  MSG_TRUNC,
  recv,
  SO_RCVBUF,
  SO_SNDBUF,
  SOCK_RAW,
  SOL_NETLINK,
  SOL_SOCKET,
  sendto,
  setsockoptInt,
  socket,
} from "../sys/libc.ts";
import { withNetnsFd } from "../sys/netns.ts";
import {
  type Attr,
  encodeMessage,
  NLM_F_ACK,
  NLM_F_ACK_TLVS,
  NLM_F_CAPPED,
  NLM_F_DUMP,
  NLM_F_DUMP_INTR,
  NLM_F_MULTI,
  NLM_F_REQUEST,
  NLMSG_DONE,
  NLMSG_ERROR,
  NLMSG_HDRLEN,
  NLMSGERR_ATTR_MSG,
  type NlMsg,
  parseAttrs,
  parseMessages,
  read,
  structView,
} from "./codec.ts";

export const NETLINK_ROUTE = 0;
export const NETLINK_NETFILTER = 12;
const NETLINK_EXT_ACK = 11;
const NETLINK_GET_STRICT_CHK = 12;

/** Dumps interrupted by a concurrent change (NLM_F_DUMP_INTR) are retried this many times. */
const DUMP_RETRIES = 10;

/** One message of a batch (see NetlinkSocket.batch). */
export interface BatchMessage {
  type: number;
  flags: number;
  header: Uint8Array;
  attrs: Attr[];
}

export interface OpenOptions {
  protocol?: number;
  /** fd of a network namespace: the socket is created inside it. */
  netnsFd?: number;
}

let nextSeq = (Date.now() & 0xffff) << 8;

export class NetlinkSocket {
  readonly fd: number;
  private buf = new Uint8Array(64 * 1024);

  private constructor(fd: number) {
    this.fd = fd;
  }

  static open(opts: OpenOptions = {}): NetlinkSocket {
    const make = () => socket(AF_NETLINK, SOCK_RAW, opts.protocol ?? NETLINK_ROUTE);
    const fd = opts.netnsFd === undefined ? make() : withNetnsFd(opts.netnsFd, make);
    try {
      setsockoptInt(fd, SOL_SOCKET, SO_SNDBUF, 1 << 20);
      setsockoptInt(fd, SOL_SOCKET, SO_RCVBUF, 1 << 20);
      setsockoptInt(fd, SOL_NETLINK, NETLINK_EXT_ACK, 1);
      try {
        setsockoptInt(fd, SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1);
      } catch {
        // older kernels: dumps are just not filtered in the kernel
      }
      const addr = new Uint8Array(12); // sockaddr_nl: family, pad, pid=0 (kernel assigns), groups=0
      new DataView(addr.buffer).setUint16(0, AF_NETLINK, true);
      bind(fd, addr);
    } catch (err) {
      close(fd);
      throw err;
    }
    return new NetlinkSocket(fd);
  }

  close(): void {
    close(this.fd);
  }

  private send(type: number, flags: number, header: Uint8Array, attrs: Attr[]): number {
    const seq = ++nextSeq >>> 0;
    const msg = encodeMessage(type, flags | NLM_F_REQUEST, seq, header, attrs);
    const to = new Uint8Array(12);
    new DataView(to.buffer).setUint16(0, AF_NETLINK, true);
    sendto(this.fd, msg, to);
    return seq;
  }

  private receive(): NlMsg[] {
    // Peek the size first so a big dump datagram is never truncated.
    const size = recv(this.fd, this.buf.subarray(0, 0), MSG_PEEK | MSG_TRUNC);
    if (size > this.buf.byteLength) this.buf = new Uint8Array(align(size));
    const n = recv(this.fd, this.buf, 0);
    // Messages are kept after the next recv: copy out of the reusable buffer.
    return parseMessages(this.buf.slice(0, n));
  }

  /**
   * Sends a request with NLM_F_ACK and waits for the ack. Returns the messages received before it
   * (replies to GET or NLM_F_ECHO). `op` names what is being done, for the error message.
   */
  request(type: number, flags: number, header: Uint8Array, attrs: Attr[], op: string): NlMsg[] {
    const seq = this.send(type, flags | NLM_F_ACK, header, attrs);
    const replies: NlMsg[] = [];
    for (;;) {
      for (const m of this.receive()) {
        if (m.seq !== seq) continue;
        if (m.type === NLMSG_ERROR) {
          const errno = -structView(m.data).getInt32(0, true);
          if (errno === 0) return replies;
          throw new SysError(op, errno, extAckMessage(m));
        }
        replies.push(m);
        if (m.type === NLMSG_DONE) return replies;
      }
    }
  }

  /**
   * Sends several messages in one datagram (a netfilter batch: BEGIN, commands, END) and waits for the
   * answer to every message that asks for an ack. The kernel answers all of them, also when the batch
   * aborts; the first error (in message order) is thrown, naming `op`. A batch-level error (an answer
   * to a message that asked for no ack, e.g. EPERM on BEGIN) ends the wait too.
   */
  batch(msgs: readonly BatchMessage[], op: string): void {
    const seqs: number[] = [];
    const parts = msgs.map((m) => {
      const seq = ++nextSeq >>> 0;
      seqs.push(seq);
      return encodeMessage(m.type, m.flags | NLM_F_REQUEST, seq, m.header, m.attrs);
    });
    let size = 0;
    for (const p of parts) size += p.byteLength;
    const out = new Uint8Array(size);
    let off = 0;
    for (const p of parts) {
      out.set(p, off);
      off += p.byteLength;
    }
    const to = new Uint8Array(12);
    new DataView(to.buffer).setUint16(0, AF_NETLINK, true);
    sendto(this.fd, out, to);
    const pending = new Set(seqs.filter((_, i) => msgs[i]!.flags & NLM_F_ACK));
    const errors = new Map<number, SysError>();
    let batchError: SysError | undefined;
    while (pending.size > 0 && batchError === undefined) {
      for (const m of this.receive()) {
        if (m.type !== NLMSG_ERROR) continue;
        const errno = -structView(m.data).getInt32(0, true);
        const err = errno === 0 ? undefined : new SysError(op, errno, extAckMessage(m));
        if (pending.delete(m.seq)) {
          if (err) errors.set(m.seq, err);
        } else if (err && seqs.includes(m.seq)) {
          batchError = err;
        }
      }
    }
    if (batchError) throw batchError;
    for (const seq of seqs) {
      const err = errors.get(seq);
      if (err) throw err;
    }
  }

  /** A GET that expects exactly one reply message; undefined when the kernel answers ENODEV/ENOENT. */
  get(type: number, header: Uint8Array, attrs: Attr[], op: string): NlMsg | undefined {
    try {
      return this.request(type, 0, header, attrs, op)[0];
    } catch (err) {
      if (err instanceof SysError && (err.code === "ENODEV" || err.code === "ENOENT")) return undefined;
      throw err;
    }
  }

  /** A dump; restarted when the kernel marks it interrupted by a concurrent change. */
  dump(type: number, header: Uint8Array, attrs: Attr[], op: string): NlMsg[] {
    for (let attempt = 0; ; attempt++) {
      const { msgs, interrupted } = this.dumpOnce(type, header, attrs, op);
      if (!interrupted) return msgs;
      if (attempt >= DUMP_RETRIES) throw new SysError(op, 4 /* EINTR */, "dump kept being interrupted");
    }
  }

  private dumpOnce(type: number, header: Uint8Array, attrs: Attr[], op: string) {
    const seq = this.send(type, NLM_F_DUMP, header, attrs);
    const msgs: NlMsg[] = [];
    let interrupted = false;
    for (;;) {
      for (const m of this.receive()) {
        if (m.seq !== seq) continue;
        if (m.flags & NLM_F_DUMP_INTR) interrupted = true;
        if (m.type === NLMSG_DONE) return { msgs, interrupted };
        if (m.type === NLMSG_ERROR) {
          const errno = -structView(m.data).getInt32(0, true);
          if (errno === 0) return { msgs, interrupted };
          throw new SysError(op, errno, extAckMessage(m));
        }
        msgs.push(m);
        if (!(m.flags & NLM_F_MULTI)) return { msgs, interrupted };
      }
    }
  }
}

function align(n: number): number {
  return (n + 4095) & ~4095;
}

/** The kernel's extended-ack text ("Unknown device type", …) from an NLMSG_ERROR, if present. */
function extAckMessage(m: NlMsg): string {
  if (!(m.flags & NLM_F_ACK_TLVS)) return "";
  // nlmsgerr: int error + the original nlmsghdr (+ its payload unless NLM_F_CAPPED)
  let off = 4 + NLMSG_HDRLEN;
  if (!(m.flags & NLM_F_CAPPED)) off = 4 + structView(m.data).getUint32(4, true);
  const attrs = parseAttrs(m.data.subarray((off + 3) & ~3));
  const msg = attrs.get(NLMSGERR_ATTR_MSG);
  return msg ? read.str(msg) : "";
}
