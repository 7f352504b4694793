/**
 * CNI spec versions: parsing and ordering like upstream pkg/version, picking a version from a
 * conflist's cniVersions, and the VERSION reply.
 */
import { CniError, ErrCode } from "./errors.ts";
import { field, isObject } from "./json.ts";
import { CNI_VERSIONS, type CniVersion, CURRENT_VERSION } from "./types.ts";

/** [major, minor, micro]; "" counts as 0.1.0 and missing parts as 0, as upstream ParseVersion does. */
export function parseVersion(v: string): [number, number, number] {
  if (v === "") return [0, 1, 0];
  const parts = v.split(".");
  if (parts.length > 3) {
    throw new CniError(ErrCode.DecodingFailure, `invalid version "${v}": too many parts`);
  }
  const nums = parts.map((p) => {
    // Go's strconv.Atoi: optional sign, decimal digits.
    if (!/^[+-]?[0-9]+$/.test(p)) {
      throw new CniError(ErrCode.DecodingFailure, `invalid version "${v}": "${p}" is not a number`);
    }
    return Number(p);
  });
  return [nums[0] ?? 0, nums[1] ?? 0, nums[2] ?? 0];
}

/** Negative when a < b, 0 when equal, positive when a > b. Throws CniError 6 for unparseable versions. */
export function compareVersions(a: string, b: string): number {
  const x = parseVersion(a);
  const y = parseVersion(b);
  for (let i = 0; i < 3; i++) {
    const d = x[i]! - y[i]!;
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  return 0;
}

/** Whether v is one of the spec versions this implementation knows (0.1.0 … 1.1.0). */
export function isSupportedVersion(v: string): v is CniVersion {
  return (CNI_VERSIONS as readonly string[]).includes(v);
}

/** The highest of `candidates` that is in `supported`, or undefined when none is. */
export function pickVersion(
  candidates: readonly string[],
  supported: readonly string[] = CNI_VERSIONS,
): string | undefined {
  let best: string | undefined;
  for (const v of candidates) {
    if (!supported.includes(v)) continue;
    if (best === undefined || compareVersions(v, best) > 0) best = v;
  }
  return best;
}

/** CHECK exists from spec 0.4.0 on. */
export function supportsCheck(v: string): boolean {
  return compareVersions(v, "0.4.0") >= 0;
}

/** GC and STATUS exist from spec 1.1.0 on. */
export function supportsGCStatus(v: string): boolean {
  return compareVersions(v, "1.1.0") >= 0;
}

/** Returns v as a known CniVersion, or throws CniError 1 (incompatible version). */
export function validateVersion(v: string): CniVersion {
  if (isSupportedVersion(v)) return v;
  throw new CniError(
    ErrCode.IncompatibleVersion,
    `unsupported CNI version "${v}"`,
    `supported versions are ${goQuoteList(CNI_VERSIONS)}`,
  );
}

/** Go's %q of a []string: ["a" "b"]. Used where upstream messages print version lists. */
export function goQuoteList(items: readonly string[]): string {
  return `[${items.map((s) => JSON.stringify(s)).join(" ")}]`;
}

/**
 * Throws CniError 1 "incompatible CNI versions" unless the config's version is one the plugin speaks
 * (upstream version.Reconciler: exact membership, no ranges).
 */
export function checkVersionCompatible(configVersion: string, supported: readonly string[]): void {
  if (supported.includes(configVersion)) return;
  throw new CniError(
    ErrCode.IncompatibleVersion,
    "incompatible CNI versions",
    `config is ${JSON.stringify(configVersion)}, plugin supports ${goQuoteList(supported)}`,
  );
}

export interface VersionInfo {
  cniVersion: string;
  supportedVersions: string[];
}

/** The VERSION reply: the version spoken (default: the latest) and the versions the plugin supports. */
export function versionInfo(supported: readonly string[], cniVersion: string = CURRENT_VERSION): VersionInfo {
  return { cniVersion, supportedVersions: [...supported] };
}

/**
 * Decodes a plugin's VERSION reply like upstream's PluginDecoder: cniVersion is required; a 0.2.0 plugin
 * that omits supportedVersions supports 0.1.0 and 0.2.0.
 */
export function decodeVersionInfo(json: unknown): VersionInfo {
  const what = "decoding version info";
  if (!isObject(json)) throw new CniError(ErrCode.DecodingFailure, `${what}: expected a JSON object`);
  const cniVersion = field(json, "cniVersion");
  if (typeof cniVersion !== "string" || cniVersion === "") {
    throw new CniError(ErrCode.DecodingFailure, `${what}: missing field cniVersion`);
  }
  const sv = field(json, "supportedVersions");
  if (sv === undefined || sv === null || (Array.isArray(sv) && sv.length === 0)) {
    if (cniVersion === "0.2.0") return { cniVersion, supportedVersions: ["0.1.0", "0.2.0"] };
    throw new CniError(ErrCode.DecodingFailure, `${what}: missing field supportedVersions`);
  }
  if (!Array.isArray(sv) || !sv.every((v) => typeof v === "string")) {
    throw new CniError(ErrCode.DecodingFailure, `${what}: supportedVersions must be a list of strings`);
  }
  return { cniVersion, supportedVersions: sv as string[] };
}
