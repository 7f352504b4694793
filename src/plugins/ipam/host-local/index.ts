/**
 * host-local IPAM: hands out addresses from range sets, one per set (several sets = dual stack),
 * recorded as files in <dataDir>/<network> exactly like upstream's host-local (see store.ts).
 * GC and STATUS, which upstream 1.1.1 lacks, follow the CNI 1.1 spec.
 */

import { type Addr, formatAddr } from "../../../ipam-common/ipmath.ts";
import type { CmdArgs, Plugin } from "../../../skel/types.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import { CNI_VERSIONS, type IPConfig, type Result } from "../../../spec/types.ts";
import { validateContainerID } from "../../../spec/validate.ts";
import { access, mkdir, W_OK } from "../../../sys/fs.ts";
import { allocate } from "./allocator.ts";
import { type HostLocalConf, loadHostLocalConf } from "./config.ts";
import { readResolvConf } from "./dns.ts";
import { reservationContent } from "./files.ts";
import { allocatableCount, isAllocatable, rangeSetContains, rangeSetString } from "./range.ts";
import { type LockedStore, networkDir, storeExists, withStore } from "./store.ts";

function load(args: CmdArgs): HostLocalConf {
  return loadHostLocalConf(args.stdinData, args.args);
}

/** Takes, for each range set, the first requested address it contains. */
function assignRequested(conf: HostLocalConf): { perSet: (Addr | undefined)[]; leftover: Addr[] } {
  const leftover = [...conf.requestedIPs];
  const perSet = conf.ranges.map((set) => {
    const at = leftover.findIndex((ip) => rangeSetContains(set, ip));
    return at < 0 ? undefined : leftover.splice(at, 1)[0];
  });
  return { perSet, leftover };
}

/** One address per range set; on any failure the addresses reserved so far are released. */
function allocateAll(store: LockedStore, conf: HostLocalConf, args: CmdArgs): IPConfig[] {
  const { perSet, leftover } = assignRequested(conf);
  const reserved: string[] = [];
  const content = reservationContent(args.containerID, args.ifName).trim();
  try {
    const ips = conf.ranges.map((set, idx) => {
      try {
        const a = allocate(store, set, idx, args.containerID, args.ifName, perSet[idx]);
        reserved.push(formatAddr(a.ip));
        return {
          address: `${formatAddr(a.ip)}/${a.range.subnet.prefix}`,
          gateway: formatAddr(a.range.gateway),
        };
      } catch (err) {
        throw CniError.from(err, `failed to allocate for range ${idx}`);
      }
    });
    if (leftover.length > 0) {
      throw new CniError(
        ErrCode.InvalidNetworkConfig,
        `failed to allocate all requested IPs: ${leftover.map(formatAddr).join(" ")}`,
      );
    }
    return ips;
  } catch (err) {
    for (const name of reserved) store.remove({ name, content });
    throw err;
  }
}

function cmdAdd(args: CmdArgs): Result {
  const conf = load(args);
  validateContainerID(args.containerID);
  const result: Result = { cniVersion: conf.cniVersion || "0.1.0" };
  if (conf.resolvConf) result.dns = readResolvConf(conf.resolvConf);
  result.ips = withStore(conf.dataDir, conf.name, (store) => allocateAll(store, conf, args));
  if (conf.routes.length > 0) result.routes = conf.routes;
  return result;
}

/** Releases the container's addresses; nothing found is success (DEL is idempotent). */
function cmdDel(args: CmdArgs): void {
  const conf = load(args);
  // no store (or a symlink we refuse to follow): nothing of this container is reserved here
  if (!storeExists(conf.dataDir, conf.name)) return;
  withStore(conf.dataDir, conf.name, (store) => store.releaseByID(args.containerID, args.ifName));
}

function cmdCheck(args: CmdArgs): void {
  const conf = load(args);
  const found = withStore(conf.dataDir, conf.name, (store) => store.findByID(args.containerID, args.ifName));
  if (found.length === 0) {
    throw new CniError(
      ErrCode.UnknownContainer,
      `host-local: Failed to find address added by container ${args.containerID}`,
    );
  }
}

/** Releases every reservation whose attachment the runtime no longer lists as valid. */
function cmdGC(args: CmdArgs): void {
  const conf = load(args);
  if (!conf.validAttachments) {
    throw new CniError(ErrCode.InvalidNetworkConfig, "GC: config is missing cni.dev/valid-attachments");
  }
  const valid = new Set(conf.validAttachments.map((a) => `${a.containerID}\n${a.ifname}`));
  const validIDs = new Set(conf.validAttachments.map((a) => a.containerID));
  withStore(conf.dataDir, conf.name, (store) => {
    for (const r of store.all()) {
      // Files from before upstream recorded the ifname name only the container.
      const keep =
        r.ifname === undefined ? validIDs.has(r.containerID) : valid.has(`${r.containerID}\n${r.ifname}`);
      if (!keep) store.remove(r);
    }
  });
}

/** Not available (50) when the store cannot be written or a range set has no free address left. */
function cmdStatus(args: CmdArgs): void {
  const conf = load(args);
  const dir = networkDir(conf.dataDir, conf.name);
  try {
    mkdir(dir, { recursive: true, mode: 0o755 });
    access(dir, W_OK);
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    throw new CniError(ErrCode.PluginNotAvailable, `host-local: data dir ${dir} is not writable: ${msg}`);
  }
  const reserved = withStore(conf.dataDir, conf.name, (store) => store.reservedAddrs());
  // ADD needs one address from every set, so one full set is enough to make ADD fail.
  for (const set of conf.ranges) {
    const size = set.reduce((n, r) => n + allocatableCount(r), 0n);
    const used = reserved.filter((ip) => set.some((r) => isAllocatable(r, ip))).length;
    if (BigInt(used) >= size) {
      throw new CniError(
        ErrCode.PluginNotAvailable,
        `host-local: no IP addresses available in range set: ${rangeSetString(set)}`,
      );
    }
  }
}

export const plugin: Plugin = {
  supportedVersions: CNI_VERSIONS,
  about: "host-local IPAM: allocates addresses from local range sets, stored in files",
  add: cmdAdd,
  del: cmdDel,
  check: cmdCheck,
  gc: cmdGC,
  status: cmdStatus,
};
