/**
 * What ipmasq.ts and its two backends (ipmasq-iptables.ts, ipmasq-nft.ts) share: the owner of a
 * masquerade, a GC's live attachments, a parsed container address and the multicast exclusion. A leaf
 * module, so the front end imports the backends and the backends import only this.
 */
export type { Owner as IPMasqOwner } from "../firewall/owner.ts";
export type { GCAttachment } from "../spec/types.ts";

/** A container address, parsed: family, the address and its subnet (network address / prefix). */
export interface MasqAddr {
  family: 4 | 6;
  /** "10.22.0.5" */
  ip: string;
  /** "10.22.0.0/16" */
  subnet: string;
}

/** Destinations never masqueraded (upstream's ipmasq exclusion). */
export const MULTICAST = { 4: "224.0.0.0/4", 6: "ff00::/8" } as const;
