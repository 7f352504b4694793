/**
 * `tscni demo [--keep] [--state-dir DIR]`: create a netns, attach it to the built-in networks
 * (loopback, then bridge tscni0 + host-local on 10.99.99.0/24 with ipMasq), print the result, prove a
 * packet crosses (ping from the netns to the bridge gateway), then DEL everything and remove the netns.
 */
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { nftApply, nftJSON } from "../firewall/nft.ts";
import { NFT_MASQ_TABLE } from "../ip/ipmasq-nft.ts";
import { CNIConfig, type RuntimeConf } from "../libcni/index.ts";
import { linkByName, linkDel } from "../netlink/link.ts";
import { NetlinkSocket } from "../netlink/socket.ts";
import { createNamedNetns, deleteNamedNetns } from "../ns/index.ts";
import { CniError } from "../spec/errors.ts";
import { formatResult } from "../spec/result.ts";
import type { Result } from "../spec/types.ts";
import {
  builtinNetwork,
  DEFAULT_STATE_DIR,
  DEMO_BRIDGE,
  DEMO_GATEWAY,
  DEMO_LOOPBACK,
  DEMO_NETWORK,
} from "./builtin.ts";
import { cliExec } from "./exec.ts";
import { cnitoolContainerID, ensureBuiltinBin, UsageError } from "./shared.ts";

interface DemoOptions {
  keep: boolean;
  stateDir: string;
}

function parseArgs(args: string[]): DemoOptions {
  const opts: DemoOptions = { keep: false, stateDir: DEFAULT_STATE_DIR };
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--keep") opts.keep = true;
    else if (args[i] === "--state-dir" && args[i + 1]) opts.stateDir = args[++i]!;
    else throw new UsageError(`unknown argument ${args[i]} (usage: tscni demo [--keep] [--state-dir DIR])`);
  }
  return opts;
}

function say(line = ""): void {
  process.stdout.write(`${line}\n`);
}

function summary(result: Result): string[] {
  const ifaces = result.interfaces ?? [];
  const lines = ifaces.map(
    (i, n) =>
      `  interface ${n}: ${i.name.padEnd(15)} ${i.mac ?? ""}${i.sandbox ? `  (in ${i.sandbox})` : "  (host)"}`,
  );
  for (const ip of result.ips ?? []) {
    const on = ip.interface === undefined ? "" : ` on ${ifaces[ip.interface]?.name ?? ip.interface}`;
    lines.push(`  address    ${ip.address}${on}${ip.gateway ? `, gateway ${ip.gateway}` : ""}`);
  }
  for (const r of result.routes ?? []) lines.push(`  route      ${r.dst}${r.gw ? ` via ${r.gw}` : ""}`);
  return lines;
}

/** What the demo may create on the host; afterwards it removes only what was not there before. */
interface HostState {
  bridge: boolean;
  masqTable: boolean;
  store: boolean;
}

async function hostState(stateDir: string): Promise<HostState> {
  const sock = NetlinkSocket.open();
  try {
    return {
      bridge: linkByName(sock, DEMO_BRIDGE) !== undefined,
      masqTable:
        (await nftJSON(["list", "table", "inet", NFT_MASQ_TABLE], { missingOk: true })) !== undefined,
      store: existsSync(join(stateDir, "networks", DEMO_NETWORK)),
    };
  } finally {
    sock.close();
  }
}

/** Removes the bridge, masquerade table and store the demo made (DEL leaves them, like upstream). */
async function removeCreated(before: HostState, stateDir: string): Promise<void> {
  if (!before.bridge) {
    const sock = NetlinkSocket.open();
    try {
      if (linkByName(sock, DEMO_BRIDGE)) linkDel(sock, DEMO_BRIDGE);
    } finally {
      sock.close();
    }
    say(`removed bridge ${DEMO_BRIDGE}`);
  }
  if (!before.masqTable) {
    await nftApply(`delete table inet ${NFT_MASQ_TABLE}\n`, { what: "removing the demo's masquerade table" });
    say(`removed nft table inet ${NFT_MASQ_TABLE}`);
  }
  if (!before.store) rmSync(join(stateDir, "networks", DEMO_NETWORK), { recursive: true, force: true });
}

/** ping from inside the netns: the packet really crosses the veth and the bridge. */
function ping(netnsPath: string, address: string): boolean {
  const p = Bun.spawnSync(
    ["nsenter", `--net=${netnsPath}`, "ping", "-c", "3", "-i", "0.2", "-W", "2", address],
    {
      stdout: "pipe",
      stderr: "pipe",
    },
  );
  for (const l of `${p.stdout}${p.stderr}`.trim().split("\n")) say(`  | ${l}`);
  return p.exitCode === 0;
}

export async function runDemo(argv: string[]): Promise<number> {
  const opts = parseArgs(argv);
  const cniPath = process.env.CNI_PATH ? process.env.CNI_PATH.split(":") : [ensureBuiltinBin()];
  const cni = new CNIConfig({ path: cniPath, cacheDir: opts.stateDir, exec: cliExec() });
  const lo = builtinNetwork(DEMO_LOOPBACK, opts.stateDir)!;
  const net = builtinNetwork(DEMO_NETWORK, opts.stateDir)!;
  const name = `tscni-demo-${process.pid}`;

  const before = await hostState(opts.stateDir);
  say(`creating network namespace ${name}`);
  const netnsPath = createNamedNetns(name);
  const rt = (ifName: string): RuntimeConf => ({
    containerID: cnitoolContainerID(netnsPath),
    netNS: netnsPath,
    ifName,
  });
  let ok = false;
  try {
    await cni.addNetworkList(lo, rt("lo"));
    say(`ADD ${DEMO_LOOPBACK}: lo is up`);
    const result = await cni.addNetworkList(net, rt("eth0"));
    say(`ADD ${DEMO_NETWORK} (bridge ${DEMO_BRIDGE}, host-local, ipMasq):`);
    for (const l of summary(result)) say(l);
    say("\nresult (CNI 1.1.0 JSON):");
    say(formatResult(result, net.cniVersion));
    say(`\nping ${DEMO_GATEWAY} (the bridge) from inside ${name}:`);
    ok = ping(netnsPath, DEMO_GATEWAY);
    say(ok ? "packets crossed: the namespace is on the network" : "ping FAILED");
  } catch (err) {
    const e = CniError.from(err);
    say(`demo failed: ${e.message} (code ${e.code})`);
  } finally {
    if (opts.keep) {
      const env = opts.stateDir === DEFAULT_STATE_DIR ? "" : `CNI_CACHE_DIR=${opts.stateDir} `;
      say(`\n--keep: left ${name} attached. Clean up later with:`);
      say(
        `  ${env}tscni del ${DEMO_NETWORK} ${name} && ${env}tscni del ${DEMO_LOOPBACK} ${name} -i lo && ip netns del ${name}`,
      );
    } else {
      say("\ntearing down");
      let deleted = true;
      for (const [list, ifName] of [
        [net, "eth0"],
        [lo, "lo"],
      ] as const) {
        try {
          await cni.delNetworkList(list, rt(ifName));
          say(`DEL ${list.name}: done`);
        } catch (err) {
          ok = false;
          deleted = false;
          say(`DEL ${list.name} failed: ${CniError.from(err).message}`);
        }
      }
      deleteNamedNetns(name);
      say(`removed ${name}`);
      // Only once every DEL worked: otherwise leave the rest for `tscni del` to find.
      if (deleted) await removeCreated(before, opts.stateDir);
    }
  }
  return ok ? 0 : 1;
}
