/**
 * JSON decoding with the rules of Go's encoding/json, which the runtimes and upstream plugins use:
 * object keys match struct fields case-insensitively (containerd sends "HostPort" for "hostPort"),
 * null means "absent", and a value of the wrong type is a decoding error (CNI code 6) that names the
 * full field path.
 */
import { CniError, ErrCode } from "./errors.ts";

export type JSONObject = Record<string, unknown>;

const decoder = new TextDecoder();

/** Parses JSON text or bytes; bad JSON → CniError 6 "decoding <what>: …". */
export function parseJSON(input: Uint8Array | string, what: string): unknown {
  const text = typeof input === "string" ? input : decoder.decode(input);
  try {
    return JSON.parse(text);
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    const msg = text.trim() === "" ? "unexpected end of JSON input" : detail;
    throw new CniError(ErrCode.DecodingFailure, `decoding ${what}: ${msg}`);
  }
}

/** Parses JSON that must be an object (a config, a result). */
export function parseJSONObject(input: Uint8Array | string, what: string): JSONObject {
  const v = parseJSON(input, what);
  if (!isObject(v)) {
    throw new CniError(
      ErrCode.DecodingFailure,
      `decoding ${what}: expected a JSON object, got ${jsonType(v)}`,
    );
  }
  return v;
}

export function isObject(v: unknown): v is JSONObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** "string", "number", "boolean", "array", "object" or "null": for error messages. */
export function jsonType(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  return typeof v;
}

/** "a.b" from a parent path and a key; the key alone at the top level. */
export function joinPath(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

/**
 * The value Go would decode into the struct field `key`: the last key of the object that equals it
 * ignoring case (Go walks the keys in order and each case-insensitive match overwrites the field).
 * Undefined when absent.
 */
export function field(obj: JSONObject, key: string): unknown {
  const lower = key.toLowerCase();
  let found: unknown;
  for (const k in obj) {
    if (k === key || k.toLowerCase() === lower) found = obj[k];
  }
  return found;
}

/** Whether the object has a key matching `key` ignoring case. */
export function hasField(obj: JSONObject, key: string): boolean {
  const lower = key.toLowerCase();
  for (const k in obj) if (k.toLowerCase() === lower) return true;
  return false;
}

/** CniError 6 "<path>: expected <what>, got <type>". */
export function typeError(path: string, expected: string, got: unknown): CniError {
  return new CniError(ErrCode.DecodingFailure, `${path}: expected ${expected}, got ${jsonType(got)}`);
}

/** A field that must be a string when present; null/absent → undefined. */
export function getString(obj: JSONObject, key: string, path = ""): string | undefined {
  const v = field(obj, key);
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw typeError(joinPath(path, key), "string", v);
  return v;
}

/** A field that must be a number when present. */
export function getNumber(obj: JSONObject, key: string, path = ""): number | undefined {
  const v = field(obj, key);
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number") throw typeError(joinPath(path, key), "number", v);
  return v;
}

/** A field that must be a whole number when present (Go's int: 1.5 does not decode). */
export function getInt(obj: JSONObject, key: string, path = ""): number | undefined {
  const v = getNumber(obj, key, path);
  if (v === undefined) return undefined;
  if (!Number.isSafeInteger(v)) {
    throw new CniError(ErrCode.DecodingFailure, `${joinPath(path, key)}: expected integer, got ${v}`);
  }
  return v;
}

/** A field that must be a boolean when present. */
export function getBool(obj: JSONObject, key: string, path = ""): boolean | undefined {
  const v = field(obj, key);
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "boolean") throw typeError(joinPath(path, key), "boolean", v);
  return v;
}

/** A field that must be an array when present. */
export function getArray(obj: JSONObject, key: string, path = ""): unknown[] | undefined {
  const v = field(obj, key);
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v)) throw typeError(joinPath(path, key), "array", v);
  return v;
}

/** A field that must be an object when present. */
export function getObject(obj: JSONObject, key: string, path = ""): JSONObject | undefined {
  const v = field(obj, key);
  if (v === undefined || v === null) return undefined;
  if (!isObject(v)) throw typeError(joinPath(path, key), "object", v);
  return v;
}

/** A field that must be a list of strings when present; each bad element is named by index. */
export function getStringArray(obj: JSONObject, key: string, path = ""): string[] | undefined {
  const arr = getArray(obj, key, path);
  if (arr === undefined) return undefined;
  const p = joinPath(path, key);
  return arr.map((v, i) => {
    if (typeof v !== "string") throw typeError(`${p}[${i}]`, "string", v);
    return v;
  });
}

/** A field that must be an object of strings when present (Go's map[string]string). */
export function getStringMap(obj: JSONObject, key: string, path = ""): Record<string, string> | undefined {
  const o = getObject(obj, key, path);
  if (o === undefined) return undefined;
  const p = joinPath(path, key);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(o)) {
    // Go stores a null as the zero value.
    if (v === null) out[k] = "";
    else if (typeof v !== "string") throw typeError(`${p}.${k}`, "string", v);
    else out[k] = v;
  }
  return out;
}

/** A field that must be an object of booleans when present (Go's map[string]bool). */
export function getBoolMap(obj: JSONObject, key: string, path = ""): Record<string, boolean> | undefined {
  const o = getObject(obj, key, path);
  if (o === undefined) return undefined;
  const p = joinPath(path, key);
  const out: Record<string, boolean> = {};
  for (const [k, v] of Object.entries(o)) {
    if (v === null) continue;
    if (typeof v !== "boolean") throw typeError(`${p}.${k}`, "boolean", v);
    out[k] = v;
  }
  return out;
}
