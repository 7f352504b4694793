/**
 * MAC spoof check (upstream pkg/link/spoofcheck.go, same table, chains and comments so either
 * implementation can remove the other's rules): frames entering the bridge from the container's host
 * veth must carry the container interface's MAC as source, everything else is dropped.
 *
 *   table bridge nat {
 *     chain PREROUTING { type filter hook prerouting priority -300; policy accept;
 *       iifname "<host veth>" jump cni-br-iface-<id> comment "macspoofchk-<id>" }
 *     chain cni-br-iface-<id>     { jump cni-br-iface-<id>-mac comment "macspoofchk-<id>" }
 *     chain cni-br-iface-<id>-mac { ether saddr <mac> return comment "…"; drop comment "…" }
 *   }
 *
 * <id> is "<containerID>-<ifName>". Setup is one `nft -f -` transaction (upstream needs two); teardown
 * reads the table once and deletes this attachment's rule and chains in one transaction.
 */
import { type NftObject, nftApply, nftJSON, nftQuote } from "../../../firewall/nft.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";

const TABLE = "bridge nat";
const BASE_CHAIN = "PREROUTING";
/** Teardown rereads and retries when a concurrent change invalidated the handles it read. */
const ATTEMPTS = 3;

export interface SpoofCheckOwner {
  containerID: string;
  ifName: string;
  /** Run nft in this netns instead of the current one. */
  netnsPath?: string;
}

/** Upstream's refID: "<containerID>-<ifName>". */
export function spoofCheckID(o: SpoofCheckOwner): string {
  return `${o.containerID}-${o.ifName}`;
}

function names(o: SpoofCheckOwner): { id: string; iface: string; mac: string; comment: string } {
  const id = spoofCheckID(o);
  // nft 1.0 cannot parse quoted chain names, so the id must be a bare nft identifier.
  if (!/^[A-Za-z0-9_.-]+$/.test(id)) {
    throw new CniError(
      ErrCode.InvalidEnvironmentVariables,
      `macspoofchk: container id and interface name must be made of letters, digits, "_", "." and "-": ${JSON.stringify(id)}`,
    );
  }
  const iface = `cni-br-iface-${id}`;
  return { id, iface, mac: `${iface}-mac`, comment: nftQuote(`macspoofchk-${id}`) };
}

/** Installs the check for frames from `hostIfName`, allowing only source MAC `mac`. */
export async function setupSpoofCheck(
  o: SpoofCheckOwner & { hostIfName: string; mac: string },
): Promise<void> {
  const n = names(o);
  if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(o.mac)) {
    throw new CniError(ErrCode.Internal, `macspoofchk: invalid MAC ${JSON.stringify(o.mac)}`);
  }
  const script = [
    `add table ${TABLE}`,
    `add chain ${TABLE} ${BASE_CHAIN} { type filter hook prerouting priority -300; policy accept; }`,
    `add chain ${TABLE} ${n.iface}`,
    `add chain ${TABLE} ${n.mac}`,
    `flush chain ${TABLE} ${n.iface}`,
    `flush chain ${TABLE} ${n.mac}`,
    `add rule ${TABLE} ${BASE_CHAIN} iifname ${nftQuote(o.hostIfName)} jump ${n.iface} comment ${n.comment}`,
    `add rule ${TABLE} ${n.iface} jump ${n.mac} comment ${n.comment}`,
    `add rule ${TABLE} ${n.mac} ether saddr ${o.mac} return comment ${n.comment}`,
    `add rule ${TABLE} ${n.mac} drop comment ${n.comment}`,
    "",
  ].join("\n");
  await nftApply(script, { netnsPath: o.netnsPath, what: `failed to setup spoof-check for ${o.hostIfName}` });
}

interface Found {
  ruleHandles: number[];
  chains: string[];
}

function findOwned(objs: NftObject[], n: ReturnType<typeof names>): Found {
  const comment = `macspoofchk-${n.id}`;
  const out: Found = { ruleHandles: [], chains: [] };
  for (const o of objs) {
    const rule = o.rule as { chain?: string; handle?: number; comment?: string } | undefined;
    if (rule?.chain === BASE_CHAIN && rule.comment === comment && typeof rule.handle === "number") {
      out.ruleHandles.push(rule.handle);
    }
    const chain = o.chain as { name?: string } | undefined;
    if (chain?.name === n.iface || chain?.name === n.mac) out.chains.push(chain.name);
  }
  return out;
}

/** Removes the attachment's rule and chains; nothing there counts as removed (DEL is idempotent). */
export async function teardownSpoofCheck(o: SpoofCheckOwner): Promise<void> {
  const n = names(o);
  const what = `failed to teardown spoof-check for ${n.id}`;
  for (let attempt = 1; ; attempt++) {
    const objs = await nftJSON(["list", "table", TABLE], { netnsPath: o.netnsPath, missingOk: true, what });
    if (!objs) return;
    const found = findOwned(objs, n);
    if (found.ruleHandles.length === 0 && found.chains.length === 0) return;
    // The jump into the iface chain goes first, then the chains (emptied: a chain with rules is busy).
    const chains = [n.iface, n.mac].filter((c) => found.chains.includes(c));
    const script = [
      ...found.ruleHandles.map((h) => `delete rule ${TABLE} ${BASE_CHAIN} handle ${h}`),
      ...chains.map((c) => `flush chain ${TABLE} ${c}`),
      ...chains.map((c) => `delete chain ${TABLE} ${c}`),
      "",
    ].join("\n");
    try {
      await nftApply(script, { netnsPath: o.netnsPath, what });
      return;
    } catch (err) {
      if (attempt >= ATTEMPTS) throw err;
    }
  }
}
