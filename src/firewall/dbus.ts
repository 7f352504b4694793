/**
 * A minimal D-Bus client: enough to call methods with string arguments on the system bus and read a
 * string or boolean back (firewalld's zone API, org.freedesktop.DBus.GetNameOwner). The wire format
 * (D-Bus specification, "Message Protocol"): SASL EXTERNAL auth, Hello, then little-endian messages —
 * a 16-byte header, header fields as an array of (byte, variant), the body, each value aligned to its
 * size counted from the message start.
 *
 * The bus is $DBUS_SYSTEM_BUS_ADDRESS (unix:path=… entries) or /run/dbus/system_bus_socket.
 */
import { CniError, ErrCode } from "../spec/errors.ts";

const SYSTEM_BUS_DEFAULT = "unix:path=/run/dbus/system_bus_socket";

const METHOD_CALL = 1;
const METHOD_RETURN = 2;
const ERROR = 3;

const F_PATH = 1;
const F_INTERFACE = 2;
const F_MEMBER = 3;
const F_ERROR_NAME = 4;
const F_REPLY_SERIAL = 5;
const F_DESTINATION = 6;
const F_SIGNATURE = 8;

/** A D-Bus error reply: `name` like "org.fedoraproject.FirewallD1.Exception", `message` its text. */
export class DBusError extends Error {
  constructor(
    readonly errorName: string,
    readonly text: string,
  ) {
    super(`${errorName}: ${text}`);
    this.name = "DBusError";
  }
}

/** The unix socket path of the system bus (the first unix:path= entry of the address). */
export function systemBusPath(): string {
  const addr = process.env.DBUS_SYSTEM_BUS_ADDRESS || SYSTEM_BUS_DEFAULT;
  for (const entry of addr.split(";")) {
    if (!entry.startsWith("unix:")) continue;
    for (const kv of entry.slice(5).split(",")) {
      if (kv.startsWith("path=")) return decodeURIComponent(kv.slice(5));
    }
  }
  throw new CniError(ErrCode.Internal, `D-Bus address ${JSON.stringify(addr)} has no unix:path= entry`);
}

class Writer {
  private buf = new Uint8Array(256);
  len = 0;
  private ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.len + n));
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }
  align(n: number): void {
    const pad = (n - (this.len % n)) % n;
    this.ensure(pad);
    this.buf.fill(0, this.len, this.len + pad);
    this.len += pad;
  }
  byte(b: number): void {
    this.ensure(1);
    this.buf[this.len++] = b;
  }
  u32(v: number): void {
    this.align(4);
    this.ensure(4);
    new DataView(this.buf.buffer).setUint32(this.len, v, true);
    this.len += 4;
  }
  setU32(at: number, v: number): void {
    new DataView(this.buf.buffer).setUint32(at, v, true);
  }
  raw(bytes: Uint8Array): void {
    this.ensure(bytes.length);
    this.buf.set(bytes, this.len);
    this.len += bytes.length;
  }
  /** s and o: u32 length, bytes, NUL. */
  str(s: string): void {
    const b = new TextEncoder().encode(s);
    this.u32(b.length);
    this.raw(b);
    this.byte(0);
  }
  /** g: byte length, bytes, NUL. */
  sig(s: string): void {
    this.byte(s.length);
    this.raw(new TextEncoder().encode(s));
    this.byte(0);
  }
  bytes(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

export interface MethodCall {
  destination: string;
  path: string;
  interface: string;
  member: string;
  /** String arguments (signature "s…"). */
  args?: readonly string[];
}

function encodeCall(c: MethodCall, serial: number): Uint8Array {
  const args = c.args ?? [];
  const body = new Writer();
  for (const a of args) body.str(a);
  const w = new Writer();
  w.raw(new Uint8Array([0x6c /* 'l' */, METHOD_CALL, 0, 1]));
  w.u32(body.len);
  w.u32(serial);
  const lenAt = w.len;
  w.u32(0);
  const start = w.len;
  const field = (code: number, type: string, write: () => void) => {
    w.align(8);
    w.byte(code);
    w.sig(type);
    write();
  };
  field(F_PATH, "o", () => w.str(c.path));
  field(F_INTERFACE, "s", () => w.str(c.interface));
  field(F_MEMBER, "s", () => w.str(c.member));
  field(F_DESTINATION, "s", () => w.str(c.destination));
  if (args.length > 0) field(F_SIGNATURE, "g", () => w.sig("s".repeat(args.length)));
  w.setU32(lenAt, w.len - start);
  w.align(8);
  w.raw(body.bytes());
  return w.bytes();
}

interface Message {
  type: number;
  replySerial?: number;
  errorName?: string;
  signature: string;
  /** The body's first value, if it is a string (s, o, g), a boolean/uint32 (b, u) or a string array (as). */
  first?: DBusValue;
}

/** What a reply's first value can be. */
export type DBusValue = string | boolean | number | string[];

class Reader {
  constructor(
    private v: DataView,
    private le: boolean,
    public pos: number,
  ) {}
  align(n: number): void {
    this.pos += (n - (this.pos % n)) % n;
  }
  byte(): number {
    return this.v.getUint8(this.pos++);
  }
  u32(): number {
    this.align(4);
    const x = this.v.getUint32(this.pos, this.le);
    this.pos += 4;
    return x;
  }
  str(): string {
    const n = this.u32();
    const s = new TextDecoder().decode(new Uint8Array(this.v.buffer, this.v.byteOffset + this.pos, n));
    this.pos += n + 1;
    return s;
  }
  sig(): string {
    const n = this.byte();
    const s = new TextDecoder().decode(new Uint8Array(this.v.buffer, this.v.byteOffset + this.pos, n));
    this.pos += n + 1;
    return s;
  }
  value(type: string): string | number | boolean | undefined {
    switch (type) {
      case "s":
      case "o":
        return this.str();
      case "g":
        return this.sig();
      case "u":
        return this.u32();
      case "b":
        return this.u32() !== 0;
      case "y":
        return this.byte();
      default:
        return undefined;
    }
  }
}

/** The length of the complete message at the start of `buf`, or undefined when more is needed. */
function messageLength(buf: Uint8Array): number | undefined {
  if (buf.length < 16) return undefined;
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const le = buf[0] === 0x6c;
  const bodyLen = v.getUint32(4, le);
  const fieldsLen = v.getUint32(12, le);
  const total = 16 + fieldsLen + ((8 - ((16 + fieldsLen) % 8)) % 8) + bodyLen;
  return buf.length >= total ? total : undefined;
}

function decodeMessage(buf: Uint8Array): Message {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const le = buf[0] === 0x6c;
  const fieldsLen = v.getUint32(12, le);
  const r = new Reader(v, le, 16);
  const msg: Message = { type: buf[1]!, signature: "" };
  const end = 16 + fieldsLen;
  while (r.pos < end) {
    r.align(8);
    if (r.pos >= end) break;
    const code = r.byte();
    const type = r.sig();
    const value = r.value(type);
    if (value === undefined) throw new Error(`D-Bus header field ${code} of unsupported type ${type}`);
    if (code === F_REPLY_SERIAL) msg.replySerial = value as number;
    else if (code === F_ERROR_NAME) msg.errorName = value as string;
    else if (code === F_SIGNATURE) msg.signature = value as string;
  }
  r.pos = end;
  r.align(8);
  if (msg.signature.startsWith("as")) {
    const n = r.u32();
    const stop = r.pos + n;
    const list: string[] = [];
    while (r.pos < stop) list.push(r.str());
    msg.first = list;
  } else if (msg.signature.length > 0) {
    msg.first = r.value(msg.signature[0]!);
  }
  return msg;
}

/** One connection to a bus, authenticated and registered (Hello). */
export class DBusConnection {
  private pending = new Uint8Array(0);
  private waiters: (() => void)[] = [];
  private closed = false;
  private serial = 0;

  private constructor(private sock: Bun.Socket<undefined>) {}

  /** Connects to the unix socket at `path` (default: the system bus). */
  static async connect(path = systemBusPath()): Promise<DBusConnection> {
    let conn: DBusConnection | undefined;
    const early: Uint8Array[] = [];
    const sock = await Bun.connect({
      unix: path,
      socket: {
        data(_s, data) {
          if (conn) conn.feed(data);
          else early.push(new Uint8Array(data));
        },
        close() {
          conn?.markClosed();
        },
        error() {
          conn?.markClosed();
        },
      },
    });
    conn = new DBusConnection(sock);
    for (const d of early) conn.feed(d);
    try {
      await conn.auth();
      await conn.call({
        destination: "org.freedesktop.DBus",
        path: "/org/freedesktop/DBus",
        interface: "org.freedesktop.DBus",
        member: "Hello",
      });
    } catch (err) {
      conn.close();
      throw err;
    }
    return conn;
  }

  private feed(data: Uint8Array): void {
    const next = new Uint8Array(this.pending.length + data.length);
    next.set(this.pending);
    next.set(data, this.pending.length);
    this.pending = next;
    this.wake();
  }

  private markClosed(): void {
    this.closed = true;
    this.wake();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private async more(what: string): Promise<void> {
    if (this.closed) throw new CniError(ErrCode.Internal, `D-Bus connection closed while ${what}`);
    await new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  private write(bytes: Uint8Array | string): void {
    this.sock.write(bytes);
    this.sock.flush();
  }

  private async auth(): Promise<void> {
    const uid = String(process.getuid?.() ?? 0);
    const hex = Buffer.from(uid).toString("hex");
    this.write(`\0AUTH EXTERNAL ${hex}\r\n`);
    for (;;) {
      const text = new TextDecoder().decode(this.pending);
      const nl = text.indexOf("\r\n");
      if (nl >= 0) {
        const line = text.slice(0, nl);
        this.pending = this.pending.subarray(nl + 2);
        if (!line.startsWith("OK "))
          throw new CniError(ErrCode.Internal, `D-Bus authentication failed: ${line}`);
        this.write("BEGIN\r\n");
        return;
      }
      await this.more("authenticating");
    }
  }

  /** Calls a method and returns the reply's first value; an error reply throws DBusError. */
  async call(c: MethodCall): Promise<DBusValue | undefined> {
    const serial = ++this.serial;
    this.write(encodeCall(c, serial));
    for (;;) {
      const len = messageLength(this.pending);
      if (len !== undefined) {
        const msg = decodeMessage(this.pending.subarray(0, len));
        this.pending = this.pending.subarray(len);
        if (msg.replySerial !== serial) continue; // signals (NameAcquired) and the like
        if (msg.type === ERROR) {
          throw new DBusError(msg.errorName ?? "unknown", typeof msg.first === "string" ? msg.first : "");
        }
        if (msg.type === METHOD_RETURN) return msg.first;
        continue;
      }
      await this.more(`calling ${c.interface}.${c.member}`);
    }
  }

  close(): void {
    if (!this.closed) this.sock.end();
    this.closed = true;
  }
}
