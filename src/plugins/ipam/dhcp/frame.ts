/**
 * Ethernet II + IPv4 + UDP framing for DHCP over a raw AF_PACKET socket: the client speaks before its
 * interface has an address, so it builds the whole frame itself (like upstream's nclient4 raw conn).
 * Pure TypeScript.
 */
import { bytesToIp, bytesToMac, ipToBytes, macToBytes } from "./message.ts";

export const ETH_P_IP = 0x0800;
export const ETH_P_ARP = 0x0806;
export const BROADCAST_MAC = "ff:ff:ff:ff:ff:ff";
export const DHCP_SERVER_PORT = 67;
export const DHCP_CLIENT_PORT = 68;
const ETH_HLEN = 14;
const IP_HLEN = 20;
const UDP_HLEN = 8;
const IPPROTO_UDP = 17;

export interface UdpFrame {
  srcMac: string;
  dstMac: string;
  srcIp: string;
  dstIp: string;
  srcPort: number;
  dstPort: number;
  payload: Uint8Array;
}

/** One's-complement sum of 16-bit words (the Internet checksum before the final inversion). */
function sum16(b: Uint8Array, initial = 0): number {
  let s = initial;
  for (let i = 0; i + 1 < b.length; i += 2) s += (b[i]! << 8) | b[i + 1]!;
  if (b.length & 1) s += b[b.length - 1]! << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

function checksum(b: Uint8Array, initial = 0): number {
  return ~sum16(b, initial) & 0xffff;
}

let ipId = (Math.random() * 0xffff) | 0;

export function encodeUdpFrame(f: UdpFrame): Uint8Array {
  const total = ETH_HLEN + IP_HLEN + UDP_HLEN + f.payload.length;
  const out = new Uint8Array(total);
  const v = new DataView(out.buffer);
  out.set(macToBytes(f.dstMac), 0);
  out.set(macToBytes(f.srcMac), 6);
  v.setUint16(12, ETH_P_IP);
  // IPv4 header
  const ip = ETH_HLEN;
  const src = ipToBytes(f.srcIp);
  const dst = ipToBytes(f.dstIp);
  out[ip] = 0x45; // version 4, IHL 5
  out[ip + 1] = 0x10; // DSCP: low delay, as ISC dhclient
  v.setUint16(ip + 2, IP_HLEN + UDP_HLEN + f.payload.length);
  ipId = (ipId + 1) & 0xffff;
  v.setUint16(ip + 4, ipId);
  v.setUint16(ip + 6, 0); // fragments: none
  out[ip + 8] = 64; // TTL
  out[ip + 9] = IPPROTO_UDP;
  out.set(src, ip + 12);
  out.set(dst, ip + 16);
  v.setUint16(ip + 10, checksum(out.subarray(ip, ip + IP_HLEN)));
  // UDP header + payload
  const udp = ip + IP_HLEN;
  const udpLen = UDP_HLEN + f.payload.length;
  v.setUint16(udp, f.srcPort);
  v.setUint16(udp + 2, f.dstPort);
  v.setUint16(udp + 4, udpLen);
  out.set(f.payload, udp + UDP_HLEN);
  const pseudo = new Uint8Array(12);
  pseudo.set(src, 0);
  pseudo.set(dst, 4);
  pseudo[9] = IPPROTO_UDP;
  new DataView(pseudo.buffer).setUint16(10, udpLen);
  const sum = checksum(out.subarray(udp, udp + udpLen), sum16(pseudo));
  v.setUint16(udp + 6, sum === 0 ? 0xffff : sum);
  return out;
}

/**
 * The UDP datagram in an Ethernet frame, or undefined when it is not one (another protocol, an IPv4
 * fragment, a truncated packet). Checksums are not verified: frames a local sender hands to a veth
 * carry a partial UDP checksum (offload) when a packet socket sees them.
 */
export function decodeUdpFrame(b: Uint8Array): UdpFrame | undefined {
  if (b.length < ETH_HLEN + IP_HLEN + UDP_HLEN) return undefined;
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (v.getUint16(12) !== ETH_P_IP) return undefined;
  const ip = ETH_HLEN;
  if (b[ip]! >> 4 !== 4) return undefined;
  const ihl = (b[ip]! & 0x0f) * 4;
  if (ihl < IP_HLEN || b[ip + 9] !== IPPROTO_UDP) return undefined;
  const frag = v.getUint16(ip + 6);
  if (frag & 0x2000 || (frag & 0x1fff) !== 0) return undefined; // more fragments / an offset
  const ipLen = v.getUint16(ip + 2);
  if (ipLen < ihl + UDP_HLEN || ip + ipLen > b.length) return undefined;
  const udp = ip + ihl;
  const udpLen = v.getUint16(udp + 4);
  if (udpLen < UDP_HLEN || udp + udpLen > ip + ipLen) return undefined;
  return {
    dstMac: bytesToMac(b.subarray(0, 6)),
    srcMac: bytesToMac(b.subarray(6, 12)),
    srcIp: bytesToIp(b, ip + 12),
    dstIp: bytesToIp(b, ip + 16),
    srcPort: v.getUint16(udp),
    dstPort: v.getUint16(udp + 2),
    payload: b.subarray(udp + UDP_HLEN, udp + udpLen),
  };
}

/** Whether the IPv4 header checksum of a frame is right (for tests of our own encoder). */
export function ipHeaderChecksumOk(b: Uint8Array): boolean {
  const ihl = (b[ETH_HLEN]! & 0x0f) * 4;
  return sum16(b.subarray(ETH_HLEN, ETH_HLEN + ihl)) === 0xffff;
}

/** Whether the UDP checksum of a frame is right (0 = none is right too). */
export function udpChecksumOk(b: Uint8Array): boolean {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const ihl = (b[ETH_HLEN]! & 0x0f) * 4;
  const udp = ETH_HLEN + ihl;
  if (v.getUint16(udp + 6) === 0) return true;
  const udpLen = v.getUint16(udp + 4);
  const pseudo = new Uint8Array(12);
  pseudo.set(b.subarray(ETH_HLEN + 12, ETH_HLEN + 20), 0);
  pseudo[9] = IPPROTO_UDP;
  new DataView(pseudo.buffer).setUint16(10, udpLen);
  return sum16(b.subarray(udp, udp + udpLen), sum16(pseudo)) === 0xffff;
}

export interface ArpPacket {
  op: 1 | 2;
  senderMac: string;
  senderIp: string;
  targetMac: string;
  targetIp: string;
}

/** An Ethernet ARP frame (RFC 826), for the address conflict probe before DECLINE (RFC 5227). */
export function encodeArpFrame(a: ArpPacket, dstMac = BROADCAST_MAC): Uint8Array {
  const out = new Uint8Array(ETH_HLEN + 28);
  const v = new DataView(out.buffer);
  out.set(macToBytes(dstMac), 0);
  out.set(macToBytes(a.senderMac), 6);
  v.setUint16(12, ETH_P_ARP);
  v.setUint16(14, 1); // hardware: Ethernet
  v.setUint16(16, ETH_P_IP);
  out[18] = 6;
  out[19] = 4;
  v.setUint16(20, a.op);
  out.set(macToBytes(a.senderMac), 22);
  out.set(ipToBytes(a.senderIp), 28);
  out.set(macToBytes(a.targetMac), 32);
  out.set(ipToBytes(a.targetIp), 38);
  return out;
}

export function decodeArpFrame(b: Uint8Array): ArpPacket | undefined {
  if (b.length < ETH_HLEN + 28) return undefined;
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (v.getUint16(12) !== ETH_P_ARP || v.getUint16(14) !== 1 || v.getUint16(16) !== ETH_P_IP)
    return undefined;
  if (b[18] !== 6 || b[19] !== 4) return undefined;
  const op = v.getUint16(20);
  if (op !== 1 && op !== 2) return undefined;
  return {
    op,
    senderMac: bytesToMac(b.subarray(22, 28)),
    senderIp: bytesToIp(b, 28),
    targetMac: bytesToMac(b.subarray(32, 38)),
    targetIp: bytesToIp(b, 38),
  };
}
