/**
 * Validation of names that come from the runtime, before they reach the file system or the kernel
 * (upstream pkg/utils): container ids and network names end up in file paths, interface names in
 * netlink requests.
 */
import { CniError, ErrCode } from "./errors.ts";

/** Upstream's cniValidNameChars: a letter or digit, then letters, digits, "_", "." or "-". */
const VALID_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

/** Linux IFNAMSIZ (16) minus the terminating NUL. */
export const MAX_INTERFACE_NAME_LENGTH = 15;

/** Go's unicode.IsSpace: JavaScript's \s without U+FEFF, plus U+0085. */
const SPACE_OR_SEPARATOR = /[/:\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/;

const encoder = new TextEncoder();

/** Missing → code 3 (unknown container); bad characters → code 4 (it comes from CNI_CONTAINERID). */
export function validateContainerID(containerID: string): void {
  if (containerID === "") {
    throw new CniError(ErrCode.UnknownContainer, "missing containerID");
  }
  if (!VALID_NAME.test(containerID)) {
    throw new CniError(ErrCode.InvalidEnvironmentVariables, "invalid characters in containerID", containerID);
  }
}

/** Network names become cache file names: code 7 when missing or when they hold other characters. */
export function validateNetworkName(name: string): void {
  if (name === "") {
    throw new CniError(ErrCode.InvalidNetworkConfig, "missing network name");
  }
  if (!VALID_NAME.test(name)) {
    throw new CniError(ErrCode.InvalidNetworkConfig, "invalid characters found in network name", name);
  }
}

/** Interface names as the kernel accepts them; code 4 (they come from CNI_IFNAME). */
export function validateInterfaceName(ifName: string): void {
  const fail = (msg: string, details = JSON.stringify(ifName)) =>
    new CniError(ErrCode.InvalidEnvironmentVariables, msg, details);
  if (ifName === "") throw fail("interface name is empty", "");
  // The kernel counts bytes, not characters.
  if (encoder.encode(ifName).length > MAX_INTERFACE_NAME_LENGTH) {
    throw fail(
      "interface name is too long",
      `interface name ${JSON.stringify(ifName)} should be less than ${MAX_INTERFACE_NAME_LENGTH + 1} characters`,
    );
  }
  if (ifName === "." || ifName === "..") throw fail("interface name is . or ..");
  if (SPACE_OR_SEPARATOR.test(ifName)) {
    throw fail("interface name contains / or : or whitespace characters");
  }
}
