import { afterEach, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { linkAdd } from "../../src/netlink/link.ts";
import { NetlinkSocket } from "../../src/netlink/socket.ts";
import {
  createNamedNetns,
  currentNetns,
  deleteNamedNetns,
  NsNotFoundError,
  netnsPath,
  nsIdentity,
  openNetns,
  sameNetns,
  withNetns,
  withNetnsPath,
} from "../../src/ns/index.ts";
import { SysError } from "../../src/sys/errno.ts";
import { cleanupAll, makeNetns, tempDir } from "../helpers/netns.ts";

afterEach(() => cleanupAll());

function ipNetnsNames(): string[] {
  const p = Bun.spawnSync(["ip", "-j", "netns", "list"]);
  const out = p.stdout.toString().trim();
  return out ? (JSON.parse(out) as { name: string }[]).map((x) => x.name) : [];
}

describe("named netns", () => {
  test("create and delete, seen by ip netns list", () => {
    const name = `tscni-ns-${Math.random().toString(36).slice(2, 8)}`;
    try {
      const path = createNamedNetns(name);
      expect(path).toBe(`/var/run/netns/${name}`);
      expect(ipNetnsNames()).toContain(name);
      // ip can enter it: it is a real netns with only lo
      const links = Bun.spawnSync(["ip", "-n", name, "-j", "link", "show"]).stdout.toString();
      expect((JSON.parse(links) as { ifname: string }[]).map((l) => l.ifname)).toEqual(["lo"]);
      expect(() => createNamedNetns(name)).toThrow(SysError);
      try {
        createNamedNetns(name);
      } catch (err) {
        expect((err as SysError).code).toBe("EEXIST");
      }
    } finally {
      deleteNamedNetns(name);
    }
    expect(ipNetnsNames()).not.toContain(name);
    expect(() => deleteNamedNetns(name)).not.toThrow(); // deleting a missing one is fine
  });

  test("invalid names are refused before touching the file system", () => {
    expect(() => createNamedNetns("../etc")).toThrow(/invalid netns name/);
    expect(() => createNamedNetns("")).toThrow(/invalid netns name/);
  });

  test("netnsPath", () => {
    expect(netnsPath("x")).toBe("/var/run/netns/x");
    expect(netnsPath("/proc/1/ns/net")).toBe("/proc/1/ns/net");
  });
});

describe("open and identity", () => {
  test("a named path and /proc/<pid>/ns/net of a process inside are the same netns", async () => {
    const n = makeNetns();
    const child = Bun.spawn(["ip", "netns", "exec", n.name, "sleep", "5"]);
    try {
      // `ip netns exec` setns()es then execs sleep in the same pid; wait until it has switched.
      const procPath = `/proc/${child.pid}/ns/net`;
      for (let i = 0; i < 100 && !sameNetns(procPath, n.path); i++) await Bun.sleep(10);
      const byProc = openNetns(procPath);
      const byName = openNetns(n.path);
      try {
        expect(sameNetns(byProc, byName)).toBe(true);
        expect(nsIdentity(byProc)).toEqual(nsIdentity(n.path));
        expect(sameNetns(byProc, currentNetns())).toBe(false);
        expect(sameNetns(`/proc/${process.pid}/ns/net`, byName)).toBe(false);
      } finally {
        byProc.close();
        byName.close();
      }
    } finally {
      child.kill();
      await child.exited;
    }
  });

  test("two different netns differ", () => {
    const a = makeNetns();
    const b = makeNetns();
    expect(sameNetns(a.ns, b.ns)).toBe(false);
    expect(sameNetns(a.ns, a.path)).toBe(true);
  });

  test("a missing path is NsNotFoundError", () => {
    expect(() => openNetns("/var/run/netns/tscni-does-not-exist")).toThrow(NsNotFoundError);
  });

  test("a plain file is not a netns", () => {
    const d = tempDir("tscni-ns-");
    const file = join(d.path, "fake");
    writeFileSync(file, "");
    expect(() => openNetns(file)).toThrow(NsNotFoundError);
  });

  test("close is idempotent", () => {
    const n = makeNetns();
    const ns = openNetns(n.path);
    ns.close();
    expect(() => ns.close()).not.toThrow();
  });
});

describe("withNetns", () => {
  test("runs the body inside, then returns", () => {
    const n = makeNetns();
    const before = currentNetns();
    try {
      const inside = withNetns(n.ns, () => {
        const here = currentNetns();
        try {
          // A socket opened in here belongs to the netns: a link made through it shows up there.
          const sock = NetlinkSocket.open();
          try {
            linkAdd(sock, { kind: "veth", name: "inside0", peerName: "inside1" });
          } finally {
            sock.close();
          }
          return sameNetns(here, n.ns);
        } finally {
          here.close();
        }
      });
      expect(inside).toBe(true);
      expect((n.ip("link", "show", "inside0") as { ifname: string }[])[0]?.ifname).toBe("inside0");
      expect(sameNetns("/proc/thread-self/ns/net", before)).toBe(true);
    } finally {
      before.close();
    }
  });

  test("a failing body leaves the thread in its original netns", () => {
    const n = makeNetns();
    const before = nsIdentity("/proc/thread-self/ns/net");
    expect(() =>
      withNetns(n.ns, () => {
        throw new Error("boom");
      }),
    ).toThrow("boom");
    expect(nsIdentity("/proc/thread-self/ns/net")).toEqual(before);
  });

  test("an async body is refused and the thread still returns", () => {
    const n = makeNetns();
    const before = nsIdentity("/proc/thread-self/ns/net");
    expect(() => withNetns(n.ns, async () => 1)).toThrow(/must be synchronous/);
    expect(nsIdentity("/proc/thread-self/ns/net")).toEqual(before);
  });

  test("withNetnsPath opens, runs inside and closes", () => {
    const n = makeNetns();
    const same = withNetnsPath(n.path, (ns) => sameNetns("/proc/thread-self/ns/net", ns));
    expect(same).toBe(true);
    expect(() => withNetnsPath("/var/run/netns/tscni-missing", () => 1)).toThrow(NsNotFoundError);
  });
});
