/**
 * Traffic for the portmap tests, run inside a netns with `ip netns exec NS bun portmap-probe.ts …`:
 *
 *   serve LABEL        TCP and UDP echo servers on port 80 (IPv4 and IPv6); each reply is
 *                      "LABEL <peer address> <data>", so a test sees whether the source was NATed.
 *                      Prints "ready" once listening.
 *   probe JSON         JSON: [{proto: "tcp"|"udp", host, port, srcPort?}]; sends "ping" to each, all at
 *                      once, and prints a JSON array of {ok: true, reply} | {ok: false, error}.
 *                      Each probe gives up after 2 s.
 */
import { createSocket } from "node:dgram";
import { createConnection, createServer } from "node:net";

interface Probe {
  proto: "tcp" | "udp";
  host: string;
  port: number;
  srcPort?: number;
}

type Outcome = { ok: true; reply: string } | { ok: false; error: string };

const TIMEOUT_MS = 2000;

function peer(addr: string | undefined): string {
  return (addr ?? "?").replace(/^::ffff:/, "");
}

async function serve(label: string): Promise<void> {
  const listening: Promise<void>[] = [];
  for (const host of ["0.0.0.0", "::"]) {
    const tcp = createServer((s) => {
      s.on("data", (d) => s.end(`${label} ${peer(s.remoteAddress)} ${d.toString()}`));
      s.on("error", () => {});
    });
    listening.push(new Promise((ok) => tcp.listen({ host, port: 80, ipv6Only: host === "::" }, () => ok())));
    const udp = createSocket({ type: host === "::" ? "udp6" : "udp4", ipv6Only: host === "::" });
    udp.on("message", (msg, rinfo) => {
      udp.send(`${label} ${peer(rinfo.address)} ${msg.toString()}`, rinfo.port, rinfo.address);
    });
    listening.push(new Promise((ok) => udp.bind({ port: 80, address: host }, () => ok())));
  }
  await Promise.all(listening);
  process.stdout.write("ready\n");
}

function probeTCP(p: Probe): Promise<Outcome> {
  return new Promise((resolve) => {
    const s = createConnection({ host: p.host, port: p.port });
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ ok: false, error: "timeout" });
    }, TIMEOUT_MS);
    s.on("connect", () => s.write("ping"));
    s.on("data", (d) => {
      clearTimeout(timer);
      s.destroy();
      resolve({ ok: true, reply: d.toString() });
    });
    s.on("error", (err) => {
      clearTimeout(timer);
      resolve({ ok: false, error: err.message });
    });
  });
}

function probeUDP(p: Probe): Promise<Outcome> {
  return new Promise((resolve) => {
    const s = createSocket(p.host.includes(":") ? "udp6" : "udp4");
    const done = (o: Outcome) => {
      clearTimeout(timer);
      s.close();
      resolve(o);
    };
    const timer = setTimeout(() => done({ ok: false, error: "timeout" }), TIMEOUT_MS);
    s.on("message", (msg) => done({ ok: true, reply: msg.toString() }));
    s.on("error", (err) => done({ ok: false, error: err.message }));
    const send = () => s.send("ping", p.port, p.host);
    if (p.srcPort === undefined) send();
    else s.bind({ port: p.srcPort }, send);
  });
}

const [mode, arg] = process.argv.slice(2);
if (mode === "serve") {
  await serve(arg ?? "server");
} else if (mode === "probe") {
  const probes = JSON.parse(arg ?? "[]") as Probe[];
  const out = await Promise.all(probes.map((p) => (p.proto === "tcp" ? probeTCP(p) : probeUDP(p))));
  process.stdout.write(`${JSON.stringify(out)}\n`);
  process.exit(0);
} else {
  process.stderr.write("usage: portmap-probe.ts serve LABEL | probe JSON\n");
  process.exit(2);
}
