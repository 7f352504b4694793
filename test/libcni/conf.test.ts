import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { confFiles, loadConfList, NoConfigsFoundError, NotFoundError } from "../../src/libcni/conf.ts";
import { rejection } from "../helpers/errors.ts";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "tscni-conf-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function put(name: string, obj: unknown): void {
  writeFileSync(join(dir, name), JSON.stringify(obj));
}

const list = (name: string, marker: string, extra: Record<string, unknown> = {}) => ({
  cniVersion: "1.0.0",
  name,
  plugins: [{ type: "noop", marker }],
  ...extra,
});
const single = (name: string, marker: string) => ({ cniVersion: "0.4.0", name, type: "noop", marker });

describe("confFiles", () => {
  test("regular files with the extensions, sorted lexically; [] for a missing dir", async () => {
    put("b.conf", {});
    put("a.conflist", {});
    put("c.json", {});
    put("d.txt", {});
    mkdirSync(join(dir, "e.conf"));
    symlinkSync("/nonexistent", join(dir, "f.conf"));
    symlinkSync(join(dir, "b.conf"), join(dir, "g.conf"));
    symlinkSync(join(dir, "e.conf"), join(dir, "h.conf"));
    expect(await confFiles(dir)).toEqual(
      ["a.conflist", "b.conf", "c.json", "g.conf"].map((n) => join(dir, n)),
    );
    expect(await confFiles(dir, [".conf"])).toEqual([join(dir, "b.conf"), join(dir, "g.conf")]);
    expect(await confFiles(join(dir, "missing"))).toEqual([]);
  });
});

describe("loadConfList", () => {
  test("a .conflist wins over a .conf of the same name even when the .conf sorts first", async () => {
    put("00-net.conf", single("net", "conf"));
    put("99-net.conflist", list("net", "conflist"));
    const l = await loadConfList(dir, "net");
    expect(l.plugins.map((p) => p.marker)).toEqual(["conflist"]);
    expect(l.cniVersion).toBe("1.0.0");
  });

  test("among files of one kind, the lexically first match wins", async () => {
    put("20-b.conflist", list("net", "second"));
    put("10-a.conflist", list("net", "first"));
    put("10-x.conf", single("single", "x1"));
    put("05-y.json", single("single", "y0"));
    expect((await loadConfList(dir, "net")).plugins[0]?.marker).toBe("first");
    // .conf and .json are one group
    const s = await loadConfList(dir, "single");
    expect(s.plugins[0]?.marker).toBe("y0");
    expect(s.name).toBe("single");
    expect(s.cniVersion).toBe("0.4.0");
  });

  test("appends <dir>/<name>/*.conf plugins in lexical order", async () => {
    put("net.conflist", list("net", "inline"));
    mkdirSync(join(dir, "net"));
    writeFileSync(join(dir, "net", "2-b.conf"), JSON.stringify({ type: "noop", marker: "b" }));
    writeFileSync(join(dir, "net", "1-a.conf"), JSON.stringify({ type: "noop", marker: "a" }));
    writeFileSync(join(dir, "net", "3-ignored.json"), JSON.stringify({ type: "noop", marker: "json" }));
    const l = await loadConfList(dir, "net");
    expect(l.plugins.map((p) => p.marker)).toEqual(["inline", "a", "b"]);
    expect(l.plugins.every((p) => p.name === "net" && p.cniVersion === "1.0.0")).toBe(true);
    // the raw list (what the cache records) holds them too
    expect((l.raw.plugins as { marker: string }[]).map((p) => p.marker)).toEqual(["inline", "a", "b"]);
  });

  test("a list without plugins takes them all from its directory", async () => {
    put("net.conflist", { cniVersion: "1.1.0", name: "net" });
    mkdirSync(join(dir, "net"));
    writeFileSync(join(dir, "net", "a.conf"), JSON.stringify({ type: "noop", marker: "a" }));
    expect((await loadConfList(dir, "net")).plugins.map((p) => p.marker)).toEqual(["a"]);
  });

  test("loadOnlyInlinedPlugins ignores the directory", async () => {
    put("net.conflist", list("net", "inline", { loadOnlyInlinedPlugins: true }));
    mkdirSync(join(dir, "net"));
    writeFileSync(join(dir, "net", "a.conf"), JSON.stringify({ type: "noop", marker: "a" }));
    const l = await loadConfList(dir, "net");
    expect(l.loadOnlyInlinedPlugins).toBe(true);
    expect(l.plugins.map((p) => p.marker)).toEqual(["inline"]);
  });

  test("a list with no plugins anywhere is an error naming the file", async () => {
    put("net.conflist", { cniVersion: "1.1.0", name: "net" });
    const err = await rejection(loadConfList(dir, "net"));
    expect(err.msg).toContain("net.conflist");
    expect(err.msg).toContain("no plugins");
  });

  test("a broken plugin file is an error naming it", async () => {
    put("net.conflist", list("net", "inline"));
    mkdirSync(join(dir, "net"));
    writeFileSync(join(dir, "net", "a.conf"), "{oops");
    expect((await rejection(loadConfList(dir, "net"))).msg).toContain(join(dir, "net", "a.conf"));
  });

  test("not found: names the network and the dir; an empty dir is NoConfigsFound", async () => {
    const none = await rejection(loadConfList(dir, "net"));
    expect(none).toBeInstanceOf(NoConfigsFoundError);
    expect(none.msg).toContain(dir);
    put("other.conflist", list("other", "x"));
    const err = await rejection(loadConfList(dir, "net"));
    expect(err).toBeInstanceOf(NotFoundError);
    expect(err).not.toBeInstanceOf(NoConfigsFoundError);
    expect(err.msg).toBe(`no net configuration with name "net" in ${dir}`);
    expect((err as NotFoundError).networkName).toBe("net");
  });
});
