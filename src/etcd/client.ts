/**
 * A small etcd v3 client over etcd's JSON gRPC gateway (HTTP/1.1 POST to /v3/…, keys and values in
 * base64, 64-bit numbers as strings). No dependency: Bun's fetch, TLS options passed through.
 *
 *   const c = new EtcdClient({endpoints: ["http://10.0.0.1:2379"], username, password, tls});
 *   await c.range("/k")                         → {kvs, count, revision}
 *   await c.range("/p/", {prefix: true})
 *   await c.put("/k", "v", {lease})
 *   await c.txn({compare: [...], success: [...], failure: [...]}) → {succeeded, revision, responses}
 *   await c.leaseGrant(ttl) / leaseRevoke(id) / deleteRange(key, opts) / status()
 *
 * Endpoints fail over: a request that cannot reach an endpoint (connection refused, timeout, a 5xx
 * such as "etcdserver: no leader") is sent to the next one; the endpoint that answered is tried
 * first next time. etcd's own errors (bad request, auth) are not retried. Every failure is an
 * EtcdError naming the endpoints tried and what etcd said.
 */

export interface EtcdTLS {
  /** PEM text of the CA bundle that signs the servers' certificates. */
  ca?: string;
  /** PEM text of the client certificate and key (mutual TLS). */
  cert?: string;
  key?: string;
}

export interface EtcdOptions {
  /** "http://host:port" or "https://host:port"; a bare "host:port" means http (https when tls is set). */
  endpoints: string[];
  username?: string;
  password?: string;
  tls?: EtcdTLS;
  /** Per request and endpoint (default 3000 ms). */
  timeoutMs?: number;
}

export interface KeyValue {
  key: string;
  value: string;
  createRevision: number;
  modRevision: number;
  version: number;
  /** Lease ID: a 64-bit number, kept as its decimal string ("0" for none). */
  lease: string;
}

export interface RangeOptions {
  /** All keys starting with key. */
  prefix?: boolean;
  /** Explicit [key, rangeEnd). */
  rangeEnd?: string;
  limit?: number;
  keysOnly?: boolean;
  countOnly?: boolean;
  /** Served by the member alone (no quorum round); default false (linearizable). */
  serializable?: boolean;
}

export interface RangeResult {
  kvs: KeyValue[];
  count: number;
  revision: number;
}

export type CompareTarget = "VERSION" | "CREATE" | "MOD" | "VALUE" | "LEASE";
export type CompareResult = "EQUAL" | "GREATER" | "LESS" | "NOT_EQUAL";

export interface Compare {
  key: string;
  target: CompareTarget;
  result: CompareResult;
  /** The operand: a revision/version/lease number, or the value for target VALUE. */
  operand: number | string;
  prefix?: boolean;
  rangeEnd?: string;
}

export type TxnOp =
  | { put: { key: string; value: string; lease?: string } }
  | { range: { key: string } & RangeOptions }
  | { delete: { key: string; prefix?: boolean; rangeEnd?: string } };

export interface TxnRequest {
  compare?: Compare[];
  success?: TxnOp[];
  failure?: TxnOp[];
}

export type TxnResponse =
  | { kind: "put"; revision: number }
  | { kind: "range"; range: RangeResult }
  | { kind: "delete"; deleted: number };

export interface TxnResult {
  succeeded: boolean;
  revision: number;
  responses: TxnResponse[];
}

export interface MemberStatus {
  endpoint: string;
  ok: boolean;
  leader?: string;
  memberId?: string;
  raftTerm?: number;
  error?: string;
}

/** What went wrong talking to etcd: `unavailable` when no endpoint could serve the request. */
export class EtcdError extends Error {
  /** The member's certificate failed verification: configuration, unless another member's passes. */
  badCertificate = false;

  constructor(
    message: string,
    readonly unavailable: boolean,
    readonly grpcCode?: number,
  ) {
    super(message);
    this.name = "EtcdError";
  }
}

const enc = new TextEncoder();
const dec = new TextDecoder();

export function b64(s: string): string {
  return Buffer.from(enc.encode(s)).toString("base64");
}

export function unb64(s: string | undefined): string {
  return s ? dec.decode(Buffer.from(s, "base64")) : "";
}

/** The key just after every key starting with `prefix` (etcd's clientv3.GetPrefixRangeEnd). */
export function prefixEnd(prefix: string): string {
  const bytes = [...enc.encode(prefix)];
  for (let i = bytes.length - 1; i >= 0; i--) {
    if ((bytes[i] as number) < 0xff) {
      bytes[i] = (bytes[i] as number) + 1;
      return dec.decode(new Uint8Array(bytes.slice(0, i + 1)));
    }
  }
  return "\0";
}

function num(v: unknown): number {
  return typeof v === "string" ? Number(v) : typeof v === "number" ? v : 0;
}

// biome-ignore lint/suspicious/noExplicitAny: the gateway's JSON, decoded field by field below
type Json = any;

function decodeKV(kv: Json): KeyValue {
  return {
    key: unb64(kv.key),
    value: unb64(kv.value),
    createRevision: num(kv.create_revision),
    modRevision: num(kv.mod_revision),
    version: num(kv.version),
    lease: String(kv.lease ?? "0"),
  };
}

function decodeRange(r: Json): RangeResult {
  return {
    kvs: (r.kvs ?? []).map(decodeKV),
    count: num(r.count),
    revision: num(r.header?.revision),
  };
}

function rangeEndOf(key: string, o: { prefix?: boolean; rangeEnd?: string }): string | undefined {
  if (o.rangeEnd !== undefined) return b64(o.rangeEnd);
  return o.prefix ? b64(prefixEnd(key)) : undefined;
}

function encodeRange(key: string, o: RangeOptions): Json {
  const body: Json = { key: b64(key) };
  const end = rangeEndOf(key, o);
  if (end) body.range_end = end;
  if (o.limit) body.limit = o.limit;
  if (o.keysOnly) body.keys_only = true;
  if (o.countOnly) body.count_only = true;
  if (o.serializable) body.serializable = true;
  return body;
}

function encodeCompare(c: Compare): Json {
  const body: Json = { key: b64(c.key), target: c.target, result: c.result };
  const end = rangeEndOf(c.key, c);
  if (end) body.range_end = end;
  switch (c.target) {
    case "VALUE":
      body.value = b64(String(c.operand));
      break;
    case "CREATE":
      body.create_revision = String(c.operand);
      break;
    case "MOD":
      body.mod_revision = String(c.operand);
      break;
    case "VERSION":
      body.version = String(c.operand);
      break;
    case "LEASE":
      body.lease = String(c.operand);
      break;
  }
  return body;
}

function encodeOp(op: TxnOp): Json {
  if ("put" in op) {
    const p: Json = { key: b64(op.put.key), value: b64(op.put.value) };
    if (op.put.lease) p.lease = String(op.put.lease);
    return { request_put: p };
  }
  if ("range" in op) return { request_range: encodeRange(op.range.key, op.range) };
  const d: Json = { key: b64(op.delete.key) };
  const end = rangeEndOf(op.delete.key, op.delete);
  if (end) d.range_end = end;
  return { request_delete_range: d };
}

function decodeOpResponse(r: Json): TxnResponse {
  if (r.response_range) return { kind: "range", range: decodeRange(r.response_range) };
  if (r.response_delete_range) return { kind: "delete", deleted: num(r.response_delete_range.deleted) };
  return { kind: "put", revision: num(r.response_put?.header?.revision) };
}

function normaliseEndpoint(e: string, tls: boolean): string {
  const s = e.trim().replace(/\/+$/, "");
  if (/^https?:\/\//.test(s)) return s;
  return `${tls ? "https" : "http"}://${s}`;
}

/** gRPC codes that mean "this member cannot serve now, another may": unavailable, deadline, unknown (no leader). */
const RETRYABLE_GRPC = new Set([2, 4, 14]);

export class EtcdClient {
  readonly endpoints: string[];
  private preferred = 0;
  private token: string | undefined;
  private readonly timeoutMs: number;

  constructor(private readonly opts: EtcdOptions) {
    if (opts.endpoints.length === 0) throw new EtcdError("etcd: no endpoints configured", false);
    const tls = !!opts.tls && Object.values(opts.tls).some(Boolean);
    this.endpoints = opts.endpoints.map((e) => normaliseEndpoint(e, tls));
    this.timeoutMs = opts.timeoutMs ?? 3000;
  }

  /** One POST to one endpoint: the decoded body, or an EtcdError (unavailable when worth retrying elsewhere). */
  private async post(endpoint: string, path: string, body: Json, auth: boolean): Promise<Json> {
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (auth && this.token) headers.authorization = this.token;
    let res: Response;
    try {
      res = await fetch(`${endpoint}${path}`, {
        method: "POST",
        headers,
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
        keepalive: true,
        // Bun's fetch takes TLS material as `tls`.
        ...(this.opts.tls ? { tls: this.opts.tls } : {}),
      } as RequestInit);
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      // A certificate the CA does not vouch for (or expired, or for another name) is configuration,
      // not a member that is down: "try again later" would have the runtime retry it forever.
      const code = String((err as { code?: unknown }).code ?? "");
      const e = new EtcdError(`${endpoint}: ${why}${code ? ` (${code})` : ""}`, true);
      e.badCertificate = /CERT|SIGNATURE|ALTNAME/.test(code);
      throw e;
    }
    const text = await res.text().catch(() => "");
    let json: Json;
    try {
      json = text ? JSON.parse(text) : {};
    } catch {
      throw new EtcdError(`${endpoint}${path}: HTTP ${res.status}: ${text.slice(0, 200)}`, res.status >= 500);
    }
    if (!res.ok || json.error !== undefined || json.code !== undefined) {
      const code = num(json.code);
      const msg = String(json.message ?? json.error ?? `HTTP ${res.status}`);
      throw new EtcdError(`${endpoint}${path}: ${msg}`, RETRYABLE_GRPC.has(code) || res.status === 503, code);
    }
    return json;
  }

  private async authenticate(endpoint: string): Promise<void> {
    const { username, password } = this.opts;
    if (!username) return;
    const r = await this.post(
      endpoint,
      "/v3/auth/authenticate",
      { name: username, password: password ?? "" },
      false,
    );
    this.token = String(r.token ?? "");
  }

  /** Sends to the preferred endpoint, then the others in turn, while the failure says "unavailable". */
  async call(path: string, body: Json): Promise<Json> {
    const errors: string[] = [];
    let badCertificates = 0;
    const n = this.endpoints.length;
    for (let i = 0; i < n; i++) {
      const idx = (this.preferred + i) % n;
      const endpoint = this.endpoints[idx] as string;
      try {
        if (this.opts.username && !this.token) await this.authenticate(endpoint);
        let r: Json;
        try {
          r = await this.post(endpoint, path, body, true);
        } catch (err) {
          // An expired or revoked token: authenticate once more and resend.
          if (err instanceof EtcdError && this.opts.username && /token/i.test(err.message)) {
            this.token = undefined;
            await this.authenticate(endpoint);
            r = await this.post(endpoint, path, body, true);
          } else throw err;
        }
        this.preferred = idx;
        return r;
      } catch (err) {
        if (!(err instanceof EtcdError) || !err.unavailable) throw err;
        errors.push(err.message);
        badCertificates += err.badCertificate ? 1 : 0;
      }
    }
    // Every member's certificate refused: retrying later will not help (not "unavailable").
    if (badCertificates === n)
      throw new EtcdError(`no etcd member's certificate verifies (${errors.join("; ")})`, false);
    throw new EtcdError(`etcd unavailable (${errors.join("; ")})`, true);
  }

  async range(key: string, o: RangeOptions = {}): Promise<RangeResult> {
    return decodeRange(await this.call("/v3/kv/range", encodeRange(key, o)));
  }

  async put(key: string, value: string, o: { lease?: string } = {}): Promise<{ revision: number }> {
    const body: Json = { key: b64(key), value: b64(value) };
    if (o.lease) body.lease = String(o.lease);
    const r = await this.call("/v3/kv/put", body);
    return { revision: num(r.header?.revision) };
  }

  async deleteRange(
    key: string,
    o: { prefix?: boolean; rangeEnd?: string } = {},
  ): Promise<{ deleted: number }> {
    const body: Json = { key: b64(key) };
    const end = rangeEndOf(key, o);
    if (end) body.range_end = end;
    const r = await this.call("/v3/kv/deleterange", body);
    return { deleted: num(r.deleted) };
  }

  async txn(t: TxnRequest): Promise<TxnResult> {
    const body: Json = {
      compare: (t.compare ?? []).map(encodeCompare),
      success: (t.success ?? []).map(encodeOp),
      failure: (t.failure ?? []).map(encodeOp),
    };
    const r = await this.call("/v3/kv/txn", body);
    return {
      succeeded: r.succeeded === true,
      revision: num(r.header?.revision),
      responses: (r.responses ?? []).map(decodeOpResponse),
    };
  }

  async leaseGrant(ttlSeconds: number): Promise<{ id: string; ttl: number }> {
    const r = await this.call("/v3/lease/grant", { TTL: String(ttlSeconds), ID: "0" });
    return { id: String(r.ID), ttl: num(r.TTL) };
  }

  async leaseRevoke(id: string): Promise<void> {
    await this.call("/v3/lease/revoke", { ID: String(id) });
  }

  /** Each endpoint's maintenance status (no failover: one answer per member). */
  async status(): Promise<MemberStatus[]> {
    return Promise.all(
      this.endpoints.map(async (endpoint) => {
        try {
          if (this.opts.username && !this.token) await this.authenticate(endpoint);
          const r = await this.post(endpoint, "/v3/maintenance/status", {}, true);
          return {
            endpoint,
            ok: true,
            leader: String(r.leader ?? ""),
            memberId: String(r.header?.member_id ?? ""),
            raftTerm: num(r.raftTerm ?? r.raft_term),
          };
        } catch (err) {
          return { endpoint, ok: false, error: err instanceof Error ? err.message : String(err) };
        }
      }),
    );
  }

  /** A linearizable read: succeeds only while the cluster has quorum (and a leader). */
  async checkQuorum(key = "/"): Promise<void> {
    await this.range(key, { limit: 1, keysOnly: true });
  }
}
