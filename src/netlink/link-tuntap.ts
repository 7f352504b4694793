/**
 * Creating tun/tap links. The kernel refuses RTM_NEWLINK for kind "tun" ("tun/tap creation via
 * rtnetlink is not supported"), so this is the /dev/net/tun ioctl path: TUNSETIFF names and creates the
 * device in the netns of the opener, TUNSETPERSIST keeps it after the fd closes.
 */
import { SysError } from "../sys/errno.ts";
import { close, ioctl, O_RDWR, open } from "../sys/libc.ts";
import { withNetnsFd } from "../sys/netns.ts";
import { IFF_MULTI_QUEUE, IFF_NO_PI, IFF_TAP, IFF_TUN, IFF_VNET_HDR } from "./link-consts.ts";
import type { TuntapSpec } from "./link-kinds.ts";
import type { NetlinkSocket } from "./socket.ts";

const TUNSETIFF = 0x400454ca;
const TUNSETPERSIST = 0x400454cb;
const TUNSETOWNER = 0x400454cc;
const TUNSETGROUP = 0x400454ce;
/** Returns an fd of the socket's own network namespace. */
const SIOCGSKNS = 0x894c;
const IFNAMSIZ = 16;

/** An fd of the netns `sock` lives in (close it when done). */
export function socketNetnsFd(sock: NetlinkSocket): number {
  return ioctl(sock.fd, SIOCGSKNS, 0, "getting the netns of a netlink socket");
}

/** Creates a persistent tun/tap named `spec.name` in the netns of `sock`. Other attributes: netlink. */
export function createTuntap(sock: NetlinkSocket, spec: TuntapSpec, op: string): void {
  const name = new TextEncoder().encode(spec.name);
  if (name.byteLength >= IFNAMSIZ)
    throw new SysError(op, 22 /* EINVAL */, `name longer than ${IFNAMSIZ - 1} bytes`);
  let flags = spec.mode === "tun" ? IFF_TUN : IFF_TAP;
  if (!spec.pi) flags |= IFF_NO_PI;
  if (spec.multiQueue) flags |= IFF_MULTI_QUEUE;
  if (spec.vnetHdr) flags |= IFF_VNET_HDR;
  const ifr = new Uint8Array(40); // struct ifreq: name[16] + short flags
  ifr.set(name);
  new DataView(ifr.buffer).setUint16(IFNAMSIZ, flags, true);

  const nsFd = socketNetnsFd(sock);
  try {
    // The device is created in the netns the fd was opened in.
    const fd = withNetnsFd(nsFd, () => open("/dev/net/tun", O_RDWR));
    try {
      ioctl(fd, TUNSETIFF, ifr, op);
      if (spec.owner !== undefined) ioctl(fd, TUNSETOWNER, spec.owner, op);
      if (spec.group !== undefined) ioctl(fd, TUNSETGROUP, spec.group, op);
      ioctl(fd, TUNSETPERSIST, 1, op);
    } finally {
      close(fd);
    }
  } finally {
    close(nsFd);
  }
}
