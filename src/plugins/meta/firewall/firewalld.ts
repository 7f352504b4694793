/**
 * The firewalld backend (upstream firewalld.go): each container address ("10.0.0.5/32", "fd00::5/128")
 * becomes a source of the zone (firewalldZone, default "trusted") through firewalld's D-Bus API
 * (org.fedoraproject.FirewallD1.zone addSource / removeSource / querySource) — runtime configuration,
 * gone when firewalld restarts, as upstream.
 */
import { DBusConnection, DBusError } from "../../../firewall/dbus.ts";
import { CniError, ErrCode } from "../../../spec/errors.ts";
import type { FwAddr } from "./config.ts";

const FIREWALLD = "org.fedoraproject.FirewallD1";
const PATH = "/org/fedoraproject/FirewallD1";
const ZONE_IF = `${FIREWALLD}.zone`;

function source(a: FwAddr): string {
  return `${a.ip}/${a.family === 4 ? 32 : 128}`;
}

async function withBus<T>(what: string, fn: (c: DBusConnection) => Promise<T>): Promise<T> {
  let conn: DBusConnection;
  try {
    conn = await DBusConnection.connect();
  } catch (err) {
    throw CniError.from(err, `${what}: connecting to the system bus`);
  }
  try {
    return await fn(conn);
  } finally {
    conn.close();
  }
}

/** Whether firewalld owns its name on the system bus (upstream's isFirewalldRunning). */
export async function firewalldRunning(): Promise<boolean> {
  let conn: DBusConnection;
  try {
    conn = await DBusConnection.connect();
  } catch {
    return false;
  }
  try {
    await conn.call({
      destination: "org.freedesktop.DBus",
      path: "/org/freedesktop/DBus",
      interface: "org.freedesktop.DBus",
      member: "GetNameOwner",
      args: [FIREWALLD],
    });
    return true;
  } catch {
    return false;
  } finally {
    conn.close();
  }
}

function zoneCall(conn: DBusConnection, member: string, zone: string, a: FwAddr) {
  return conn.call({
    destination: FIREWALLD,
    path: PATH,
    interface: ZONE_IF,
    member,
    args: [zone, source(a)],
  });
}

export async function firewalldAdd(zone: string, addrs: readonly FwAddr[]): Promise<void> {
  await withBus(`adding sources to firewalld zone ${zone}`, async (conn) => {
    for (const a of addrs) {
      try {
        await zoneCall(conn, "addSource", zone, a);
      } catch (err) {
        if (err instanceof DBusError && err.text.includes("ZONE_ALREADY_SET")) continue;
        throw CniError.from(err, `failed to add the address ${source(a)} to ${zone} zone`);
      }
    }
  });
}

/** Removes the sources; ones not in the zone (or firewalld not running) count as removed, as upstream. */
export async function firewalldDel(zone: string, addrs: readonly FwAddr[]): Promise<void> {
  if (addrs.length === 0) return;
  let conn: DBusConnection;
  try {
    conn = await DBusConnection.connect();
  } catch {
    return;
  }
  try {
    for (const a of addrs) {
      try {
        await zoneCall(conn, "removeSource", zone, a);
      } catch (err) {
        if (!(err instanceof DBusError)) throw CniError.from(err, `removing ${source(a)} from zone ${zone}`);
      }
    }
  } finally {
    conn.close();
  }
}

export async function firewalldCheck(zone: string, addrs: readonly FwAddr[]): Promise<void> {
  await withBus(`checking firewalld zone ${zone}`, async (conn) => {
    for (const a of addrs) {
      let found: unknown;
      try {
        found = await zoneCall(conn, "querySource", zone, a);
      } catch (err) {
        throw CniError.from(err, `failed to find the address ${source(a)} in ${zone} zone`);
      }
      if (found !== true) {
        throw new CniError(ErrCode.Internal, `failed to find the address ${source(a)} in ${zone} zone`);
      }
    }
  });
}
