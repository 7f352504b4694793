/**
 * A real firewalld (Debian's 1.3, python) for tests, with its own dbus-daemon, inside a throwaway
 * network namespace and a private mount namespace — the machine's firewall and system bus are never
 * touched:
 *
 *   startFirewalld(hostNetns) → {busAddress, sources(zone), stop()}
 *     dbus-daemon  listens on <tmp>/bus (a permissive system-bus config: no polkit on this bus)
 *     firewalld    `ip netns exec <host> sh -c 'mount -t tmpfs … /run; exec firewalld --nofork --nopid
 *                  --system-config <tmp>/etc --log-target console'` with DBUS_SYSTEM_BUS_ADDRESS set; its
 *                  nftables tables live in <host>, the tmpfs keeps its run files from the machine's /run
 *   firewalldSkipReason() → why the tests cannot run (firewalld or dbus-daemon missing), else undefined
 *
 * stop() (also run at the end of the test run) kills both by pid and removes the temp dir.
 */
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DBusConnection } from "../../src/firewall/dbus.ts";
import { onTestRunEnd } from "./teardown.ts";

export interface Firewalld {
  busAddress: string;
  /** The zone's runtime sources, through firewalld's D-Bus API (getSources). */
  sources(zone: string): Promise<string[]>;
  log(): string;
  stop(): Promise<void>;
}

export function firewalldSkipReason(): string | undefined {
  if (!Bun.which("firewalld", { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" })) return "firewalld is not installed";
  if (!Bun.which("dbus-daemon", { PATH: "/usr/bin:/bin" })) return "dbus-daemon is not installed";
  if (!existsSync("/etc/firewalld/firewalld.conf") && !existsSync("/usr/lib/firewalld/firewalld.conf")) {
    return "no firewalld.conf to start from";
  }
  return undefined;
}

const BUS_CONFIG = (
  socket: string,
) => `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=${socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
`;

async function call(
  bus: string,
  member: string,
  args: string[],
  iface = "org.fedoraproject.FirewallD1.zone",
) {
  const conn = await DBusConnection.connect(bus);
  try {
    return await conn.call({
      destination: iface.startsWith("org.freedesktop")
        ? "org.freedesktop.DBus"
        : "org.fedoraproject.FirewallD1",
      path: iface.startsWith("org.freedesktop") ? "/org/freedesktop/DBus" : "/org/fedoraproject/FirewallD1",
      interface: iface,
      member,
      args,
    });
  } finally {
    conn.close();
  }
}

export async function startFirewalld(hostNetns: string, timeoutMs = 90_000): Promise<Firewalld> {
  const dir = mkdtempSync(join(tmpdir(), "tscni-firewalld-"));
  const socket = join(dir, "bus");
  const etc = join(dir, "etc");
  mkdirSync(etc);
  const src = existsSync("/etc/firewalld/firewalld.conf")
    ? "/etc/firewalld/firewalld.conf"
    : "/usr/lib/firewalld/firewalld.conf";
  copyFileSync(src, join(etc, "firewalld.conf"));
  writeFileSync(join(dir, "bus.xml"), BUS_CONFIG(socket));
  const busAddress = `unix:path=${socket}`;
  const dbus = Bun.spawn(
    ["dbus-daemon", `--config-file=${join(dir, "bus.xml")}`, "--nofork", "--nopidfile"],
    {
      stdin: "ignore",
      stdout: "ignore",
      stderr: "ignore",
    },
  );
  const logFile = join(dir, "firewalld.log");
  let fwd: ReturnType<typeof Bun.spawn> | undefined;
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    if (fwd) {
      fwd.kill("SIGTERM");
      const t = setTimeout(() => fwd?.kill("SIGKILL"), 10_000);
      await fwd.exited;
      clearTimeout(t);
    }
    dbus.kill("SIGTERM");
    await dbus.exited;
    rmSync(dir, { recursive: true, force: true });
  };
  onTestRunEnd(() => {
    if (stopped) return;
    fwd?.kill("SIGKILL");
    dbus.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  });
  const readLog = () => {
    try {
      return readFileSync(logFile, "utf8");
    } catch {
      return "";
    }
  };
  try {
    const deadline = Date.now() + timeoutMs;
    while (!existsSync(socket)) {
      if (Date.now() > deadline) throw new Error("dbus-daemon did not create its socket");
      await Bun.sleep(50);
    }
    fwd = Bun.spawn(
      [
        "ip",
        "netns",
        "exec",
        hostNetns,
        "sh",
        "-c",
        `mount -t tmpfs tscni-firewalld /run && exec firewalld --nofork --nopid --system-config ${etc} --log-target console >${logFile} 2>&1`,
      ],
      {
        stdin: "ignore",
        stdout: "ignore",
        stderr: "ignore",
        env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: busAddress },
      },
    );
    // Ready when it answers on its own interface (it takes the name before loading its rules).
    for (;;) {
      if (Date.now() > deadline) throw new Error(`firewalld did not come up: ${readLog()}`);
      if (fwd.exitCode !== null) throw new Error(`firewalld exited (${fwd.exitCode}): ${readLog()}`);
      try {
        const state = await call(socket, "getDefaultZone", [], "org.fedoraproject.FirewallD1");
        if (typeof state === "string") break;
      } catch {
        // not yet
      }
      await Bun.sleep(200);
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    busAddress,
    log: readLog,
    async sources(zone) {
      const conn = await DBusConnection.connect(socket);
      try {
        const r = await conn.call({
          destination: "org.fedoraproject.FirewallD1",
          path: "/org/fedoraproject/FirewallD1",
          interface: "org.fedoraproject.FirewallD1.zone",
          member: "getSources",
          args: [zone],
        });
        return (r as string[] | undefined) ?? [];
      } finally {
        conn.close();
      }
    },
    stop,
  };
}
