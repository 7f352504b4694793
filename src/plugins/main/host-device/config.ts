/**
 * The host-device plugin's configuration (upstream plugins/main/host-device NetConf, v1.9): the device
 * chosen by `device`, `hwaddr`, `kernelpath` or `pciBusID`, or by runtimeConfig.deviceID (a PCI or
 * auxiliary-bus device); ipam and dns. A PCI device bound to a userspace driver is DPDK mode: nothing
 * to move, only IPAM.
 */
import { isHardwareAddr } from "../../../spec/args.ts";
import { parseConfDNS } from "../../../spec/conf.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import { field, getObject, getString, parseJSONObject } from "../../../spec/json.ts";
import { parsePrevResult } from "../../../spec/result.ts";
import type { DNS, NetConf, Result } from "../../../spec/types.ts";
import { validateNetworkName } from "../../../spec/validate.ts";
import { exists, readdir } from "../../../sys/fs.ts";
import { realpath } from "../../../sys/libc.ts";

export const SYS_BUS_PCI = "/sys/bus/pci/devices";
export const SYS_BUS_AUXILIARY = "/sys/bus/auxiliary/devices";
const USERSPACE_DRIVERS = ["vfio-pci", "uio_pci_generic", "igb_uio"];

/** How the host device is chosen, in upstream's order of precedence. */
export type DeviceSelector =
  | { by: "device"; name: string }
  | { by: "hwaddr"; mac: string }
  | { by: "kernelpath"; path: string }
  | { by: "pciBusID"; address: string }
  | { by: "auxDevice"; name: string };

export interface HostDeviceConf {
  name: string;
  cniVersion: string;
  select: DeviceSelector;
  /** The PCI device is bound to a userspace (DPDK) driver: it has no netdev to move. */
  dpdkMode: boolean;
  ipamType?: string;
  dns?: DNS;
  prevResult?: Result;
}

function invalid(msg: string): CniError {
  return new CniError(ErrCode.InvalidNetworkConfig, msg);
}

/** A sysfs path component from the config: no separators, no dot names. */
function safeComponent(s: string, key: string): string {
  if (s === "." || s === ".." || s.includes("/") || s.includes("\0")) {
    throw invalid(`${key}: invalid device id ${JSON.stringify(s)}`);
  }
  return s;
}

function hasDpdkDriver(pciAddr: string): boolean {
  let driver: string;
  try {
    driver = realpath(`${SYS_BUS_PCI}/${pciAddr}/driver`);
  } catch (err) {
    throw CniError.from(err, `error with host device: no driver for PCI device ${pciAddr}`);
  }
  return USERSPACE_DRIVERS.includes(driver.slice(driver.lastIndexOf("/") + 1));
}

/** The device's selector; runtimeConfig.deviceID replaces pciBusID (or names an auxiliary device). */
function selector(conf: Record<string, unknown>): DeviceSelector {
  const rc = getObject(conf, "runtimeConfig");
  const deviceID = (rc && getString(rc, "deviceID", "runtimeConfig")) || "";
  let pci = getString(conf, "pciBusID") ?? "";
  let aux = "";
  if (deviceID !== "") {
    safeComponent(deviceID, "runtimeConfig.deviceID");
    if (exists(`${SYS_BUS_PCI}/${deviceID}`)) pci = deviceID;
    else if (exists(`${SYS_BUS_AUXILIARY}/${deviceID}`)) {
      pci = "";
      aux = deviceID;
    } else throw invalid(`runtime config DeviceID ${deviceID} not found or unsupported`);
  }
  const device = getString(conf, "device") ?? "";
  const hwaddr = getString(conf, "hwaddr") ?? "";
  const kernelpath = getString(conf, "kernelpath") ?? "";
  if (device !== "") return { by: "device", name: device };
  if (hwaddr !== "") {
    if (!isHardwareAddr(hwaddr, 6)) throw invalid(`failed to parse MAC address ${JSON.stringify(hwaddr)}`);
    return { by: "hwaddr", mac: hwaddr.toLowerCase().replace(/-/g, ":") };
  }
  if (kernelpath !== "") {
    const parts = kernelpath.split("/");
    if (!kernelpath.startsWith("/sys/devices/") || parts.includes("..") || parts.includes(".")) {
      throw invalid(
        `kernel device path ${JSON.stringify(kernelpath)} must be absolute and begin with /sys/devices/`,
      );
    }
    return { by: "kernelpath", path: kernelpath };
  }
  if (pci !== "") return { by: "pciBusID", address: safeComponent(pci, "pciBusID") };
  if (aux !== "") return { by: "auxDevice", name: aux };
  throw invalid('specify either "device", "hwaddr", "kernelpath" or "pciBusID"');
}

export function loadHostDeviceConf(stdin: Uint8Array): HostDeviceConf {
  const conf = parseJSONObject(stdin, "network configuration");
  const name = getString(conf, "name") ?? "";
  validateNetworkName(name);
  const select = selector(conf);
  const ipam = getObject(conf, "ipam");
  const ipamType = (ipam && getString(ipam, "type", "ipam")) || undefined;
  const out: HostDeviceConf = {
    name,
    cniVersion: getString(conf, "cniVersion") ?? "",
    select,
    dpdkMode: select.by === "pciBusID" && hasDpdkDriver(select.address),
  };
  if (ipamType) out.ipamType = ipamType;
  const dns = parseConfDNS(conf);
  if (dns) out.dns = dns;
  if (field(conf, "prevResult") !== undefined) {
    const prev = parsePrevResult(conf as NetConf);
    if (prev) out.prevResult = prev;
  }
  return out;
}

/** The first netdev under a sysfs device's `net` directory (upstream linkFromPath). */
export function netdevUnder(dir: string): string {
  let entries: string[];
  try {
    entries = readdir(dir)
      .filter((e) => e !== "." && e !== "..")
      .sort();
  } catch (err) {
    throw CniError.from(err, `failed to read directory ${dir}`);
  }
  const first = entries[0];
  if (first === undefined)
    throw new CniError(ErrCode.Internal, `failed to find network device in path ${dir}`);
  return first;
}

/** The `net` directory of a PCI device, or of its virtio child. */
export function pciNetDir(address: string): string {
  const direct = `${SYS_BUS_PCI}/${address}/net`;
  if (exists(direct)) return direct;
  let children: string[] = [];
  try {
    children = readdir(`${SYS_BUS_PCI}/${address}`);
  } catch {
    // no such device
  }
  const virtio = children.filter((c) => c.startsWith("virtio")).sort()[0];
  if (virtio && exists(`${SYS_BUS_PCI}/${address}/${virtio}/net`))
    return `${SYS_BUS_PCI}/${address}/${virtio}/net`;
  throw new CniError(ErrCode.Internal, `no net directory under pci device ${address}`);
}
