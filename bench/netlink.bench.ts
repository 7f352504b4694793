/**
 * The kernel work of a veth-based ADD + DEL, in-process over netlink vs the same steps as `ip` commands:
 * a veth pair with its peer made straight in a container netns, an address on the peer, the peer up,
 * a default route, then deleting the host end (the peer, its address and route go with it).
 * The tscni side opens its netns fds and sockets inside the timed part, as a plugin invocation would.
 * Both sides run interleaved in throwaway netns (a "host" and a "container" one). Run:
 * `bun bench/netlink.bench.ts [iterations]`.
 */
import { addrAdd } from "../src/netlink/addr.ts";
import { linkAdd, linkByName, linkDel, linkSetUp } from "../src/netlink/link.ts";
import { routeAdd } from "../src/netlink/route.ts";
import { NetlinkSocket } from "../src/netlink/socket.ts";
import { createNamedNetns, deleteNamedNetns, openNetns } from "../src/ns/index.ts";
import { fmtMs, interleaved, machineLine, type Side, table, writeSection } from "./lib.ts";

const iterations = Number(process.argv[2] ?? 50);
const tag = Math.random().toString(36).slice(2, 8);
const hostName = `tscni-bh-${tag}`;
const contName = `tscni-bc-${tag}`;
const hostPath = createNamedNetns(hostName);
const contPath = createNamedNetns(contName);

interface Opened {
  hs: NetlinkSocket;
  close(): void;
}

/** Create + address + route; returns the host socket (still open) for the delete. */
function tscniAdd(): Opened {
  const host = openNetns(hostPath);
  const cont = openNetns(contPath);
  const hs = NetlinkSocket.open({ netnsFd: host.fd });
  const cs = NetlinkSocket.open({ netnsFd: cont.fd });
  const close = () => {
    hs.close();
    cs.close();
    host.close();
    cont.close();
  };
  try {
    linkAdd(hs, { kind: "veth", name: "vbench0", peerName: "eth0", peerNetnsFd: cont.fd, up: true });
    // The peer's index is only known inside the container.
    const index = linkByName(cs, "eth0")?.index ?? 0;
    linkSetUp(cs, index);
    addrAdd(cs, { index, address: "10.199.0.2/24" });
    routeAdd(cs, { dst: "default", gw: "10.199.0.1", index });
  } catch (err) {
    close();
    throw err;
  }
  return { hs, close };
}

function tscniCycle(): void {
  const o = tscniAdd();
  try {
    linkDel(o.hs, "vbench0");
  } finally {
    o.close();
  }
}

let pending: Opened | undefined;

function ip(...args: string[]): void {
  const p = Bun.spawnSync(["ip", ...args], { stdout: "ignore", stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`ip ${args.join(" ")}: ${p.stderr.toString().trim()}`);
}

function ipAdd(): void {
  ip(
    "-n",
    hostName,
    "link",
    "add",
    "vbench0",
    "up",
    "type",
    "veth",
    "peer",
    "name",
    "eth0",
    "netns",
    contName,
  );
  ip("-n", contName, "link", "set", "eth0", "up");
  ip("-n", contName, "addr", "add", "10.199.0.2/24", "dev", "eth0");
  ip("-n", contName, "route", "add", "default", "via", "10.199.0.1", "dev", "eth0");
}

const ipDel = () => ip("-n", hostName, "link", "del", "vbench0");

const cycle: Side[] = [
  { name: "tscni", run: tscniCycle },
  {
    name: "ip",
    run: () => {
      ipAdd();
      ipDel();
    },
  },
];

// The same without the delete in the timing: deleting a veth waits for the kernel (RCU grace
// periods) and costs both sides the same ~15 ms, which hides the difference in the setup.
const addOnly: Side[] = [
  {
    name: "tscni",
    run: () => {
      pending = tscniAdd();
    },
    after: () => {
      if (!pending) return;
      try {
        linkDel(pending.hs, "vbench0");
      } finally {
        pending.close();
        pending = undefined;
      }
    },
  },
  { name: "ip", run: ipAdd, after: ipDel },
];

try {
  const full = await interleaved(cycle, iterations);
  const add = await interleaved(addOnly, iterations);
  const body = [
    "## netlink: veth pair into a netns + address + default route + delete",
    "",
    machineLine(),
    "",
    "One iteration: veth with the peer created in a container netns, peer up, address, default route,",
    "then delete. tscni: in-process netlink, opening 2 netns fds + 2 sockets included, as a plugin",
    "would. ip: the same steps as `ip -n …` commands (process start included).",
    "",
    "### Create + address + route + delete",
    "",
    table(full, "ip"),
    "",
    "### Create + address + route (the delete runs untimed)",
    "",
    "Deleting a veth waits on the kernel (~15 ms of RCU grace periods here) for both sides alike.",
    "",
    table(add, "ip"),
  ].join("\n");
  writeSection("netlink", body);
  console.log(body);
  for (const [label, r] of [
    ["full cycle", full],
    ["setup only", add],
  ] as const) {
    const [ours, theirs] = r;
    if (ours && theirs) {
      console.log(
        `${label}: tscni ${fmtMs(ours.medianMs)} vs ip ${fmtMs(theirs.medianMs)} (${(theirs.medianMs / ours.medianMs).toFixed(1)}× faster)`,
      );
    }
  }
} finally {
  deleteNamedNetns(hostName);
  deleteNamedNetns(contName);
}
