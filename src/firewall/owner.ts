/**
 * Who owns a firewall rule or element, the same way for every backend (ipMasq, portmap, firewall):
 *
 * - nftables elements carry the comment "<hash16(network)>-<hash16(ifname:containerID)> net: …, if:
 *   …, id: …" (upstream's nftables rule comments) and, in maps, a 32-bit tag of that owner as their
 *   value — the compare-and-delete guard of nft-elems.ts compares it;
 * - iptables chains are named like upstream's utils.FormatChainName: "CNI-" + prefix +
 *   sha512(network + containerID) in hex, cut to 28 characters.
 */
import { sha512hex } from "../ip/hash.ts";

/** One attachment of a container to a network. */
export interface Owner {
  network: string;
  containerID: string;
  /** The container-side interface name. */
  ifName: string;
}

/** nft's limit on comment length. */
export const NFT_COMMENT_MAX = 128;

/** The owner-ID prefix of every element of `network`: "<hash16(network)>-". */
export function networkPrefix(network: string): string {
  return `${sha512hex(network).slice(0, 16)}-`;
}

/** "<hash16(network)>-<hash16(ifname:containerID)>". */
export function ownerID(o: Owner): string {
  return `${networkPrefix(o.network)}${sha512hex(`${o.ifName}:${o.containerID}`).slice(0, 16)}`;
}

/** The element comment: the owner ID, then the names in clear (cut to nft's limit). */
export function ownerComment(o: Owner): string {
  return `${ownerID(o)} net: ${o.network}, if: ${o.ifName}, id: ${o.containerID}`.slice(0, NFT_COMMENT_MAX);
}

/** The 32-bit map value that stands for an owner ID. */
export function ownerTag(id: string): number {
  return Number.parseInt(sha512hex(id).slice(0, 8), 16);
}

/** The owner ID at the start of an element comment. */
export function ownerOfComment(comment: string): string {
  return comment.split(" ", 1)[0] ?? "";
}

/** The owner IDs of a GC's live attachments of `network`. */
export function liveOwnerIDs(
  network: string,
  valid: readonly { containerID: string; ifname: string }[],
): Set<string> {
  return new Set(valid.map((a) => ownerID({ network, ifName: a.ifname, containerID: a.containerID })));
}

/** Upstream's utils.FormatChainName / MustFormatChainNameWithPrefix. */
export function iptablesChainName(network: string, containerID: string, prefix = ""): string {
  return `CNI-${prefix}${sha512hex(network + containerID)}`.slice(0, 28);
}
