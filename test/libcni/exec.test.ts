import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  chmodSync,
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  rmSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execPlugin, findInPath } from "../../src/libcni/exec.ts";
import { rejection } from "../helpers/errors.ts";

let dir: string;
const enc = new TextEncoder();
const dec = new TextDecoder();

function script(name: string, body: string): string {
  const p = join(dir, name);
  writeFileSync(p, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  return p;
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "tscni-exec-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("findInPath", () => {
  test("returns the first dir's regular file, skipping dirs and missing entries", async () => {
    const a = join(dir, "a");
    const b = join(dir, "b");
    mkdirSync(join(a, "plug"), { recursive: true }); // a directory with the plugin's name is not it
    mkdirSync(b, { recursive: true });
    writeFileSync(join(b, "plug"), "#!/bin/sh\n", { mode: 0o755 });
    expect(await findInPath("plug", [join(dir, "none"), a, b])).toBe(join(b, "plug"));
  });

  test("names the plugin and every dir searched when missing", async () => {
    const err = await rejection(findInPath("ghost", ["/x/one", "/x/two"]));
    expect(err.code).toBe(50);
    expect(err.msg).toBe('failed to find plugin "ghost" in path [/x/one /x/two]');
  });

  test("refuses names with a slash and empty names", async () => {
    expect((await rejection(findInPath("../bin/sh", ["/usr"]))).msg).toContain("invalid plugin name");
    expect((await rejection(findInPath("", ["/usr"]))).msg).toContain("no plugin name");
  });
});

describe("execPlugin", () => {
  test("passes stdin and CNI_* env (overriding inherited values) and returns stdout", async () => {
    process.env.CNI_IFNAME = "inherited";
    const p = script(
      "echo",
      'printf \'{"cmd":"%s","if":"%s","in":%s}\' "$CNI_COMMAND" "$CNI_IFNAME" "$(cat)"',
    );
    const out = await execPlugin({
      pluginPath: p,
      env: { CNI_COMMAND: "ADD", CNI_IFNAME: "eth0" },
      stdin: enc.encode('{"x":1}'),
    });
    delete process.env.CNI_IFNAME;
    expect(JSON.parse(dec.decode(out))).toEqual({ cmd: "ADD", if: "eth0", in: { x: 1 } });
  });

  test("a failing plugin's error JSON becomes a CniError with its code, msg and details", async () => {
    const p = script(
      "fail",
      'echo \'{"cniVersion":"1.0.0","code":11,"msg":"busy","details":"try later"}\'; exit 1',
    );
    const err = await rejection(execPlugin({ pluginPath: p, env: {}, stdin: enc.encode("{}") }));
    expect([err.code, err.msg, err.details]).toEqual([11, "busy", "try later"]);
  });

  test("non-JSON stdout on failure is a 999 quoting it and stderr", async () => {
    const p = script("garble", "echo 'oops'; echo 'the reason' >&2; exit 3");
    const err = await rejection(execPlugin({ pluginPath: p, env: {}, stdin: new Uint8Array() }));
    expect(err.code).toBe(999);
    expect(err.msg).toContain('"oops"');
    expect(err.msg).toContain("exit status 3");
    expect(err.details).toBe("the reason");
  });

  test("stderr only on failure is a 999 carrying the stderr text", async () => {
    const p = script("stderr", "echo 'went wrong' >&2; exit 2");
    const err = await rejection(execPlugin({ pluginPath: p, env: {}, stdin: new Uint8Array() }));
    expect(err.code).toBe(999);
    expect(err.msg).toContain("went wrong");
  });

  test("a plugin that ignores stdin still works", async () => {
    const p = script("nostdin", "echo '{}'");
    const out = await execPlugin({ pluginPath: p, env: {}, stdin: new Uint8Array(1 << 20) });
    expect(dec.decode(out).trim()).toBe("{}");
  });

  test("timeout kills the plugin and says so", async () => {
    const p = script("slow", "exec sleep 30");
    const started = Date.now();
    const err = await rejection(
      execPlugin({ pluginPath: p, env: {}, stdin: new Uint8Array(), timeoutMs: 200 }),
    );
    expect(err.msg).toContain("timed out");
    expect(Date.now() - started).toBeLessThan(5000);
  });

  test("an aborted signal cancels the plugin", async () => {
    const p = script("slow2", "exec sleep 30");
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    const err = await rejection(
      execPlugin({ pluginPath: p, env: {}, stdin: new Uint8Array(), signal: ac.signal }),
    );
    expect(err.msg).toContain("cancelled");
  });

  test("a missing executable is plugin-not-available", async () => {
    const err = await rejection(
      execPlugin({ pluginPath: join(dir, "nope"), env: {}, stdin: new Uint8Array() }),
    );
    expect(err.code).toBe(50);
  });

  test("retries while the executable is still open for writing (ETXTBSY)", async () => {
    const p = join(dir, "busy");
    const fd = openSync(p, "w", 0o755);
    writeSync(fd, "#!/bin/sh\necho '{\"ok\":true}'\n");
    chmodSync(p, 0o755);
    setTimeout(() => closeSync(fd), 150);
    const out = await execPlugin({ pluginPath: p, env: {}, stdin: new Uint8Array() });
    expect(JSON.parse(dec.decode(out))).toEqual({ ok: true });
  });
});
