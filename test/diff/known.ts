/**
 * Known differences that touch one attribute among many: each id (docs/differences.md) has an
 * adjustment that takes that one difference out of OUR normalised run, so the rest of the case is still
 * compared. It applies only to cases whose `expect.difference` names the id, and reports whether it
 * changed anything (a listed id that changes nothing is a stale mark).
 *
 *   KNOWN_ADJUSTMENTS[id](ours, upstream) → boolean   mutates `ours`
 */
import type { NRun } from "./compare.ts";
import type { NSide, NState } from "./normalise.ts";

type Obj = Record<string, unknown>;
type Adjust = (ours: NRun, up: NRun) => boolean;

function states(r: NRun): NState[] {
  return [r.before, r.afterAdd, r.afterDel];
}

function sides(s: NState): NSide[] {
  return [s.container, s.host];
}

/** Runs `fn` over every link and addr entry of every state; true if any call returned true. */
function eachLink(r: NRun, fn: (l: Obj, side: "container" | "host", state: number) => boolean): boolean {
  let changed = false;
  states(r).forEach((s, i) => {
    for (const side of ["container", "host"] as const) {
      for (const l of [...s[side].links, ...s[side].addrs] as Obj[]) changed = fn(l, side, i) || changed;
    }
  });
  return changed;
}

/** Takes ours' txqlen 1000 out where upstream's container link has none (it sent IFLA_TXQLEN 0). */
function zeroTxqlen(ours: NRun, up: NRun): boolean {
  return eachLink(ours, (l, side, i) => {
    if (side !== "container" || l.txqlen !== 1000) return false;
    const twin = ([up.before, up.afterAdd, up.afterDel][i]?.container.links ?? []).find(
      (x) => (x as Obj).ifname === l.ifname,
    ) as Obj | undefined;
    if (!twin || "txqlen" in twin) return false;
    delete l.txqlen;
    return true;
  });
}

export const KNOWN_ADJUSTMENTS: Record<string, Adjust> = {
  /** Ours adds IPv6 gateway addresses (bridge, ptp host veth) with IFA_F_NODAD. */
  "ipv6-gateway-nodad": (ours) =>
    eachLink(ours, (l) => {
      let changed = false;
      for (const a of (l.addr_info as Obj[] | undefined) ?? []) {
        if (a.family === "inet6" && a.nodad === true) {
          delete a.nodad;
          changed = true;
        }
      }
      return changed;
    }),

  /** Ours records the network name for GC: tuning's backup file key "network", bandwidth's ifb alias. */
  "gc-support": (ours) => {
    let changed = false;
    for (const s of states(ours)) {
      for (const [f, text] of Object.entries(s.store)) {
        if (!f.startsWith("tuning/")) continue;
        const o = JSON.parse(text) as Obj;
        if (!("network" in o)) continue;
        delete o.network;
        s.store[f] = JSON.stringify(o, null, 1);
        changed = true;
      }
      for (const side of sides(s)) {
        for (const l of [...side.links, ...side.addrs] as Obj[]) {
          if (String(l.ifname).startsWith("bwp") && "ifalias" in l) {
            delete l.ifalias;
            changed = true;
          }
        }
      }
    }
    return changed;
  },

  /** Ours records which addresses a firewall attachment was given (<dataDir>/<network>/<hash>). */
  "firewall-records": (ours) => {
    let changed = false;
    for (const s of states(ours)) {
      for (const f of Object.keys(s.store)) {
        if (!f.startsWith("firewall/")) continue;
        delete s.store[f];
        changed = true;
      }
    }
    return changed;
  },

  /** Ours writes upstream 1.9's isolation comments ("same-bridge|isolated"); 1.1.1 writes "same-bridge". */
  "firewall-isolation-comments": (ours) => {
    let changed = false;
    for (const s of states(ours)) {
      for (const fam of [s.firewall.iptables.v4, s.firewall.iptables.v6]) {
        for (const [table, lines] of Object.entries(fam)) {
          fam[table] = lines.map((l) => {
            const m = l.replace("(ingressPolicy: same-bridge|isolated)", "(ingressPolicy: same-bridge)");
            if (m !== l) changed = true;
            return m;
          });
        }
      }
    }
    return changed;
  },

  /** Upstream 1.1.1 creates macvlans with IFLA_TXQLEN 0 (a zero LinkAttrs); ours, like 1.9, the kernel's 1000. */
  "macvlan-txqlen-1.1.1": (ours, up) => zeroTxqlen(ours, up),
  /** The same for 1.1.1's ipvlan and vlan links. */
  "ipvlan-vlan-txqlen-1.1.1": (ours, up) => zeroTxqlen(ours, up),

  /**
   * Upstream 1.1.1's host-device DEL returns the device with the alias its ADD set (the original name)
   * still on it; ours clears it, leaving the device as it found it. Gives ours upstream's alias back.
   */
  "host-device-alias-1.1.1": (ours, up) => {
    let changed = false;
    for (const l of ours.afterDel.host.links as Obj[]) {
      const twin = up.afterDel.host.links.find((x) => (x as Obj).ifname === l.ifname) as Obj | undefined;
      if ("ifalias" in l || twin === undefined || twin.ifalias !== l.ifname) continue;
      l.ifalias = twin.ifalias;
      changed = true;
    }
    return changed;
  },

  /**
   * At 1.1.0 ours omits an empty dns, as upstream cni ≥ 1.2's types100 MarshalJSON does; Debian's 1.1.1
   * cannot speak 1.1.0 and runs such cases at 1.0.0, where it prints "dns": {}.
   */
  "dns-omitted-1.1.0": (ours, up) => {
    const o = ours.add.ok ? (ours.add.result as Obj | undefined) : undefined;
    const u = up.add.ok ? (up.add.result as Obj | undefined) : undefined;
    if (!o || !u || "dns" in o || !("dns" in u)) return false;
    o.dns = u.dns;
    return true;
  },
};
