import { describe, expect, test } from "bun:test";
import { validateContainerID, validateInterfaceName, validateNetworkName } from "../../src/spec/validate.ts";
import { failure } from "../helpers/errors.ts";

describe("validateContainerID", () => {
  test("accepts the runtimes' ids", () => {
    for (const id of ["abc", "0123456789abcdef", "pod_1.a-b", "A"])
      expect(() => validateContainerID(id)).not.toThrow();
  });
  test("missing is code 3, bad characters code 4 naming the id", () => {
    expect(failure(() => validateContainerID("")).code).toBe(3);
    for (const id of ["../etc", "a/b", "-lead", ".hidden", "a b", "a\n"]) {
      const e = failure(() => validateContainerID(id));
      expect(e.code).toBe(4);
      expect(e.details).toBe(id);
    }
  });
});

describe("validateNetworkName", () => {
  test("accepts ordinary names", () => {
    for (const n of ["podman", "cbr0", "my-net.1_x"]) expect(() => validateNetworkName(n)).not.toThrow();
  });
  test("rejects with code 7 naming the value", () => {
    expect(failure(() => validateNetworkName("")).code).toBe(7);
    const e = failure(() => validateNetworkName("../x"));
    expect(e.code).toBe(7);
    expect(e.details).toBe("../x");
    expect(e.message).toContain("../x");
  });
});

describe("validateInterfaceName", () => {
  test("accepts kernel-valid names up to 15 bytes", () => {
    for (const n of ["eth0", "net1", "a".repeat(15), "veth-1.2_x"])
      expect(() => validateInterfaceName(n)).not.toThrow();
  });
  test("rejects with code 4", () => {
    const bad = [
      "",
      "a".repeat(16),
      "é".repeat(8),
      ".",
      "..",
      "a/b",
      "a:b",
      "a b",
      "a\tb",
      "a\u00a0b",
      "a\u0085b",
    ];
    for (const n of bad) expect(failure(() => validateInterfaceName(n)).code).toBe(4);
    expect(failure(() => validateInterfaceName("x".repeat(16))).details).toContain("x".repeat(16));
  });
});
