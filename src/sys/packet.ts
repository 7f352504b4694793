/**
 * Sockets the DHCP client and its plugin need that libc.ts does not bind: AF_PACKET raw sockets (a
 * DHCP client talks before its interface has an address), a classic BPF filter on them, poll(2), and a
 * probe of an AF_UNIX socket (is a daemon listening?). Like libc.ts, every
 * wrapper checks the return value, reads errno at once and throws a SysError naming the operation.
 * Its own dlopen, made on first use, so processes that never touch these pay nothing.
 */
import { dlopen, FFIType, type Pointer, ptr, read } from "bun:ffi";
import { SysError } from "./errno.ts";

const { i32, u32, u64, i64_fast, ptr: p } = FFIType;

function load() {
  return dlopen("libc.so.6", {
    __errno_location: { args: [], returns: p },
    socket: { args: [i32, i32, i32], returns: i32 },
    bind: { args: [i32, p, u32], returns: i32 },
    connect: { args: [i32, p, u32], returns: i32 },
    setsockopt: { args: [i32, i32, i32, p, u32], returns: i32 },
    sendto: { args: [i32, p, u64, i32, p, u32], returns: i64_fast },
    recvfrom: { args: [i32, p, u64, i32, p, p], returns: i64_fast },
    poll: { args: [p, u64, i32], returns: i32 },
    close: { args: [i32], returns: i32 },
  }).symbols;
}

let libc: ReturnType<typeof load> | undefined;
let errnoPtr: Pointer | undefined;

function fn(): ReturnType<typeof load> {
  if (libc === undefined) {
    libc = load();
    errnoPtr = libc.__errno_location() as Pointer;
  }
  return libc;
}

function errno(): number {
  return read.i32(errnoPtr!, 0);
}

function check(ret: number, op: string): number {
  if (ret < 0) throw new SysError(op, errno());
  return ret;
}

const AF_UNIX = 1;
const AF_PACKET = 17;
const SOCK_STREAM = 1;
const SOCK_RAW = 3;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_ATTACH_FILTER = 26;
const MSG_DONTWAIT = 0x40;
const EINTR = 4;
const EAGAIN = 11;
const POLLIN = 1;
const POLLERR = 8;
const POLLHUP = 16;

/** sll_pkttype of a received frame: sent to us, broadcast, multicast, to another host, sent by us. */
export const PACKET_HOST = 0;
export const PACKET_BROADCAST = 1;
export const PACKET_MULTICAST = 2;
export const PACKET_OTHERHOST = 3;
export const PACKET_OUTGOING = 4;

function htons(n: number): number {
  return ((n & 0xff) << 8) | ((n >> 8) & 0xff);
}

/** struct sockaddr_ll: family, protocol (network order), ifindex, hatype, pkttype, halen, addr[8]. */
function sockaddrLL(ifindex: number, protocol: number, mac?: Uint8Array): Uint8Array {
  const b = new Uint8Array(20);
  const v = new DataView(b.buffer);
  v.setUint16(0, AF_PACKET, true);
  v.setUint16(2, protocol, false);
  v.setInt32(4, ifindex, true);
  if (mac) {
    b[11] = mac.length;
    b.set(mac.subarray(0, 8), 12);
  }
  return b;
}

/**
 * A non-blocking raw packet socket for Ethernet frames of `protocol` (ETH_P_IP, ETH_P_ARP), bound to
 * interface `ifindex`. It belongs to the netns of the calling thread: open it inside withNetns.
 */
export function openPacketSocket(ifindex: number, protocol: number): number {
  const fd = check(
    fn().socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, htons(protocol)),
    "opening a packet socket",
  );
  try {
    const addr = sockaddrLL(ifindex, protocol);
    check(fn().bind(fd, addr, addr.byteLength), `binding a packet socket to ifindex ${ifindex}`);
  } catch (err) {
    fn().close(fd);
    throw err;
  }
  return fd;
}

/** One classic BPF instruction: [code, jt, jf, k]. */
export type BpfInsn = readonly [number, number, number, number];

/** Attaches a classic BPF program (SO_ATTACH_FILTER): the kernel drops what it rejects. */
export function attachFilter(fd: number, program: readonly BpfInsn[]): void {
  const insns = new Uint8Array(program.length * 8);
  const iv = new DataView(insns.buffer);
  program.forEach(([code, jt, jf, k], i) => {
    iv.setUint16(i * 8, code, true);
    insns[i * 8 + 2] = jt;
    insns[i * 8 + 3] = jf;
    iv.setUint32(i * 8 + 4, k >>> 0, true);
  });
  const fprog = new Uint8Array(16); // struct sock_fprog { u16 len; (pad); struct sock_filter *filter; }
  const fv = new DataView(fprog.buffer);
  fv.setUint16(0, program.length, true);
  fv.setBigUint64(8, BigInt(ptr(insns)), true);
  check(fn().setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, fprog, 16), "attaching a socket filter");
}

/** Sends one whole frame out of `ifindex` (the frame carries its own Ethernet header). */
export function sendFrame(
  fd: number,
  frame: Uint8Array,
  ifindex: number,
  protocol: number,
  dstMac: Uint8Array,
): void {
  const addr = sockaddrLL(ifindex, protocol, dstMac);
  for (;;) {
    const n = fn().sendto(fd, frame, frame.byteLength, 0, addr, addr.byteLength);
    if (n >= 0) return;
    const e = errno();
    if (e !== EINTR) throw new SysError(`sending a frame on ifindex ${ifindex}`, e);
  }
}

export interface ReceivedFrame {
  data: Uint8Array;
  pkttype: number;
}

/** The next queued frame, or undefined when none is waiting (never blocks). */
export function recvFrame(fd: number, buf: Uint8Array): ReceivedFrame | undefined {
  const from = new Uint8Array(20);
  const fromLen = new Uint32Array([20]);
  for (;;) {
    const n = fn().recvfrom(fd, buf, buf.byteLength, MSG_DONTWAIT, from, fromLen);
    if (n >= 0) return { data: buf.slice(0, Number(n)), pkttype: from[10]! };
    const e = errno();
    if (e === EAGAIN) return undefined;
    if (e !== EINTR) throw new SysError("receiving a frame", e);
  }
}

/** poll(2) for readability: the fds of `fds` that are readable (or in error), waiting up to timeoutMs. */
export function pollReadable(fds: readonly number[], timeoutMs: number): Set<number> {
  const out = new Set<number>();
  if (fds.length === 0) return out;
  const pfds = new Uint8Array(fds.length * 8); // struct pollfd { int fd; short events; short revents; }
  const v = new DataView(pfds.buffer);
  fds.forEach((fd, i) => {
    v.setInt32(i * 8, fd, true);
    v.setInt16(i * 8 + 4, POLLIN, true);
  });
  for (;;) {
    const r = fn().poll(pfds, fds.length, timeoutMs);
    if (r >= 0) break;
    const e = errno();
    if (e !== EINTR) throw new SysError("poll", e);
  }
  fds.forEach((fd, i) => {
    if (v.getInt16(i * 8 + 6, true) & (POLLIN | POLLERR | POLLHUP)) out.add(fd);
  });
  return out;
}

export function closeFd(fd: number): void {
  check(fn().close(fd), "close");
}

// ---- AF_UNIX stream client ----

function sockaddrUn(path: string): Uint8Array {
  const bytes = new TextEncoder().encode(path);
  if (bytes.length > 107) throw new SysError(`socket path ${path}`, 36 /* ENAMETOOLONG */);
  const b = new Uint8Array(2 + bytes.length + 1);
  new DataView(b.buffer).setUint16(0, AF_UNIX, true);
  b.set(bytes, 2);
  return b;
}

/** Whether something accepts connections on the AF_UNIX socket at `path` (a live daemon). */
export function unixSocketAlive(path: string): boolean {
  const fd = check(fn().socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), "opening a unix socket");
  try {
    const addr = sockaddrUn(path);
    return fn().connect(fd, addr, addr.byteLength) === 0;
  } finally {
    fn().close(fd);
  }
}
