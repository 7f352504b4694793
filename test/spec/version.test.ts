import { describe, expect, test } from "bun:test";
import { CniError } from "../../src/spec/errors.ts";
import {
  checkVersionCompatible,
  compareVersions,
  decodeVersionInfo,
  isSupportedVersion,
  parseVersion,
  pickVersion,
  supportsCheck,
  supportsGCStatus,
  validateVersion,
  versionInfo,
} from "../../src/spec/version.ts";
import { codeOf } from "../helpers/errors.ts";

describe("parseVersion / compareVersions", () => {
  test("empty is 0.1.0 and missing parts are zero, like upstream", () => {
    expect(parseVersion("")).toEqual([0, 1, 0]);
    expect(parseVersion("1")).toEqual([1, 0, 0]);
    expect(parseVersion("0.4")).toEqual([0, 4, 0]);
  });
  test("orders numerically, not lexically", () => {
    expect(compareVersions("0.10.0", "0.9.0")).toBe(1);
    expect(compareVersions("0.3.1", "0.4.0")).toBe(-1);
    expect(compareVersions("1.1.0", "1.1.0")).toBe(0);
    expect(compareVersions("1.0", "1.0.0")).toBe(0);
  });
  test("garbage and too many parts are decoding errors (6)", () => {
    expect(codeOf(() => parseVersion("1.x.0"))).toBe(6);
    expect(codeOf(() => parseVersion("1.2.3.4"))).toBe(6);
  });
});

describe("version support", () => {
  test("known versions", () => {
    expect(isSupportedVersion("0.3.1")).toBe(true);
    expect(isSupportedVersion("0.5.0")).toBe(false);
    expect(validateVersion("1.1.0")).toBe("1.1.0");
    expect(codeOf(() => validateVersion("2.0.0"))).toBe(1);
  });
  test("verb availability", () => {
    expect(supportsCheck("0.3.1")).toBe(false);
    expect(supportsCheck("0.4.0")).toBe(true);
    expect(supportsGCStatus("1.0.0")).toBe(false);
    expect(supportsGCStatus("1.1.0")).toBe(true);
  });
  test("pickVersion takes the highest supported candidate", () => {
    expect(pickVersion(["0.3.1", "1.0.0", "0.4.0"])).toBe("1.0.0");
    expect(pickVersion(["1.0.0", "9.9.9"], ["0.4.0", "1.0.0"])).toBe("1.0.0");
    expect(pickVersion(["0.4.0", "1.1.0"], ["0.4.0", "1.0.0"])).toBe("0.4.0");
    expect(pickVersion(["9.9.9"])).toBeUndefined();
  });
  test("incompatible config version names both sides like upstream", () => {
    try {
      checkVersionCompatible("0.2.0", ["1.0.0", "1.1.0"]);
      throw new Error("not thrown");
    } catch (err) {
      expect(err).toBeInstanceOf(CniError);
      const e = err as CniError;
      expect(e.code).toBe(1);
      expect(e.msg).toBe("incompatible CNI versions");
      expect(e.details).toBe('config is "0.2.0", plugin supports ["1.0.0" "1.1.0"]');
    }
    expect(() => checkVersionCompatible("1.0.0", ["1.0.0"])).not.toThrow();
  });
});

describe("VERSION info", () => {
  test("reply defaults to the latest version", () => {
    expect(versionInfo(["0.4.0", "1.0.0"])).toEqual({
      cniVersion: "1.1.0",
      supportedVersions: ["0.4.0", "1.0.0"],
    });
    expect(versionInfo(["1.0.0"], "1.0.0").cniVersion).toBe("1.0.0");
  });
  test("decoding a plugin's reply; legacy 0.2.0 plugins omit supportedVersions", () => {
    expect(
      decodeVersionInfo({ cniVersion: "1.0.0", supportedVersions: ["1.0.0"] }).supportedVersions,
    ).toEqual(["1.0.0"]);
    expect(decodeVersionInfo({ cniVersion: "0.2.0" }).supportedVersions).toEqual(["0.1.0", "0.2.0"]);
    expect(codeOf(() => decodeVersionInfo({ cniVersion: "0.4.0" }))).toBe(6);
    expect(codeOf(() => decodeVersionInfo({ supportedVersions: ["1.0.0"] }))).toBe(6);
  });
});
