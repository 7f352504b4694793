/**
 * Warm-path prototype (bench only, issue 19 part 3): a resident process that runs our plugins for the
 * launcher (launcher.c). One request at a time: a plugin call switches the thread's netns to the
 * launcher's (/proc/<pid>/ns/net) and awaits inside it, so two calls must never interleave. A
 * production helper would take the peer from SO_PEERCRED, not from the request, and run a pool.
 *
 *   bun bench/warm/helper.ts SOCKET SELF   (SELF: the multicall binary the CNI_PATH links point at)
 */
import { chmodSync, rmSync } from "node:fs";
import { loadPlugin } from "../../src/cli/registry.ts";
import { setInProcessResolver } from "../../src/skel/inprocess.ts";
import { pluginMain } from "../../src/skel/skel.ts";
import { CLONE_NEWNET, close, O_RDONLY, open, setns } from "../../src/sys/libc.ts";
import { THREAD_NETNS_PATH } from "../../src/sys/netns.ts";

const [sockPath = "/run/tscni/warm.sock", self = ""] = process.argv.slice(2);
setInProcessResolver(loadPlugin, self);

interface Request {
  pid: number;
  name: string;
  env: Record<string, string>;
  stdin: Uint8Array;
}

function parse(b: Uint8Array): Request {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let o = 0;
  const u32 = () => {
    const x = v.getUint32(o, true);
    o += 4;
    return x;
  };
  const pid = u32();
  const nameLen = u32();
  const name = new TextDecoder().decode(b.subarray(o, o + nameLen));
  o += nameLen;
  const envLen = u32();
  const env: Record<string, string> = {};
  for (const kv of new TextDecoder().decode(b.subarray(o, o + envLen)).split("\0")) {
    const i = kv.indexOf("=");
    if (i > 0) env[kv.slice(0, i)] = kv.slice(i + 1);
  }
  o += envLen;
  const inLen = u32();
  return { pid, name, env, stdin: b.slice(o, o + inLen) };
}

function frame(code: number, out: string, err: string): Uint8Array {
  const o = new TextEncoder().encode(out);
  const e = new TextEncoder().encode(err);
  const b = new Uint8Array(12 + o.length + e.length);
  const v = new DataView(b.buffer);
  v.setUint32(0, code, true);
  v.setUint32(4, o.length, true);
  b.set(o, 8);
  v.setUint32(8 + o.length, e.length, true);
  b.set(e, 12 + o.length);
  return b;
}

async function run(req: Request): Promise<Uint8Array> {
  const plugin = await loadPlugin(req.name);
  if (!plugin) return frame(1, "", `no plugin ${req.name}\n`);
  let out = "";
  let err = "";
  const original = open(THREAD_NETNS_PATH, O_RDONLY);
  const target = open(`/proc/${req.pid}/ns/net`, O_RDONLY);
  try {
    setns(target, CLONE_NEWNET);
    const code = await pluginMain(plugin, {
      env: req.env,
      stdin: req.stdin,
      stdout: (t) => {
        out += t;
      },
      stderr: (t) => {
        err += t;
      },
    });
    return frame(code, out, err);
  } finally {
    setns(original, CLONE_NEWNET);
    close(target);
    close(original);
  }
}

let queue: Promise<unknown> = Promise.resolve();
rmSync(sockPath, { force: true });
Bun.listen<{ chunks: Uint8Array[]; size: number }>({
  unix: sockPath,
  socket: {
    open(s) {
      s.data = { chunks: [], size: 0 };
    },
    data(s, chunk) {
      s.data.chunks.push(new Uint8Array(chunk));
      s.data.size += chunk.length;
      const all = Buffer.concat(s.data.chunks);
      if (all.length < 4 || all.length < 4 + all.readUInt32LE(0)) return;
      const req = parse(all.subarray(4, 4 + all.readUInt32LE(0)));
      queue = queue.then(async () => {
        s.write(await run(req).catch((e) => frame(1, "", `helper: ${e}\n`)));
        s.end();
      });
    },
  },
});
chmodSync(sockPath, 0o600);
process.stdout.write("ready\n");
