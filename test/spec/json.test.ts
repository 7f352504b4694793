import { describe, expect, test } from "bun:test";
import {
  field,
  getArray,
  getBool,
  getInt,
  getNumber,
  getObject,
  getString,
  getStringArray,
  getStringMap,
  parseJSON,
  parseJSONObject,
} from "../../src/spec/json.ts";
import { failure } from "../helpers/errors.ts";

describe("parseJSON", () => {
  test("bytes and strings", () => {
    expect(parseJSON(new TextEncoder().encode('{"a":1}'), "x")).toEqual({ a: 1 });
    expect(parseJSON("[1]", "x")).toEqual([1]);
  });
  test("bad JSON is code 6 saying what was decoded", () => {
    const e = failure(() => parseJSON("{bad", "network config"));
    expect(e.code).toBe(6);
    expect(e.msg).toStartWith("decoding network config: ");
    expect(failure(() => parseJSON("", "network config")).msg).toBe(
      "decoding network config: unexpected end of JSON input",
    );
  });
  test("parseJSONObject refuses non-objects", () => {
    expect(failure(() => parseJSONObject("[]", "result")).msg).toContain("got array");
  });
});

describe("Go-style field matching", () => {
  test("keys match ignoring case; the last match wins like Go", () => {
    expect(field({ HostPort: 1 }, "hostPort")).toBe(1);
    expect(field({ hostport: 2 }, "hostPort")).toBe(2);
    expect(field({ hostPort: 1, HOSTPORT: 3 }, "hostPort")).toBe(3);
    expect(field({ other: 1 }, "hostPort")).toBeUndefined();
  });
  test("null and absent are undefined", () => {
    expect(getString({ a: null }, "a")).toBeUndefined();
    expect(getInt({}, "a")).toBeUndefined();
  });
  test("typed getters return the value", () => {
    const o = { s: "x", n: 1.5, i: 7, b: false, a: [1], o: { k: 1 }, sa: ["a"], sm: { k: "v", z: null } };
    expect(getString(o, "S")).toBe("x");
    expect(getNumber(o, "n")).toBe(1.5);
    expect(getInt(o, "i")).toBe(7);
    expect(getBool(o, "b")).toBe(false);
    expect(getArray(o, "a")).toEqual([1]);
    expect(getObject(o, "o")).toEqual({ k: 1 });
    expect(getStringArray(o, "sa")).toEqual(["a"]);
    expect(getStringMap(o, "sm")).toEqual({ k: "v", z: "" });
  });
  test("type mismatches are code 6 naming the full path", () => {
    const pm = { HostPort: "8080" };
    const e = failure(() => getInt(pm, "hostPort", "runtimeConfig.portMappings[0]"));
    expect(e.code).toBe(6);
    expect(e.msg).toBe("runtimeConfig.portMappings[0].hostPort: expected number, got string");
    expect(failure(() => getInt({ p: 1.5 }, "p", "x")).msg).toBe("x.p: expected integer, got 1.5");
    expect(failure(() => getString({ name: 1 }, "name")).msg).toBe("name: expected string, got number");
    expect(failure(() => getBool({ b: "true" }, "b")).msg).toContain("expected boolean, got string");
    expect(failure(() => getArray({ a: {} }, "a")).msg).toContain("expected array, got object");
    expect(failure(() => getObject({ o: [] }, "o")).msg).toContain("expected object, got array");
    expect(failure(() => getStringArray({ a: ["x", 2] }, "a", "p")).msg).toBe(
      "p.a[1]: expected string, got number",
    );
  });
});
