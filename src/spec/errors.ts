/**
 * CNI error codes (spec section "Error"), and the one error type every layer raises toward the runtime.
 * A plugin prints `err.toJSON(cniVersion)` on stdout and exits 1.
 */
export const ErrCode = {
  IncompatibleVersion: 1,
  UnsupportedField: 2,
  UnknownContainer: 3,
  InvalidEnvironmentVariables: 4,
  IOFailure: 5,
  DecodingFailure: 6,
  InvalidNetworkConfig: 7,
  TryAgainLater: 11,
  PluginNotAvailable: 50,
  LimitedConnectivity: 51,
  Internal: 999,
} as const;

export type ErrCodeValue = (typeof ErrCode)[keyof typeof ErrCode] | number;

export interface CniErrorJSON {
  cniVersion: string;
  code: number;
  msg: string;
  details?: string;
}

export class CniError extends Error {
  readonly code: ErrCodeValue;
  readonly msg: string;
  readonly details: string;

  constructor(code: ErrCodeValue, msg: string, details = "") {
    super(details ? `${msg}; ${details}` : msg);
    this.name = "CniError";
    this.code = code;
    this.msg = msg;
    this.details = details;
  }

  toJSON(cniVersion = "1.1.0"): CniErrorJSON {
    const out: CniErrorJSON = { cniVersion, code: this.code, msg: this.msg };
    if (this.details) out.details = this.details;
    return out;
  }

  /** Wraps anything thrown into a CniError; keeps an existing one, adds `context` in front of the message. */
  static from(err: unknown, context?: string, code: ErrCodeValue = ErrCode.Internal): CniError {
    if (err instanceof CniError) {
      return context ? new CniError(err.code, `${context}: ${err.msg}`, err.details) : err;
    }
    const text = err instanceof Error ? err.message : String(err);
    return new CniError(code, context ? `${context}: ${text}` : text);
  }
}

export interface ContextOptions {
  /** Prefix `what` to a CniError's message too (a step made of steps), instead of passing it unchanged. */
  prefixCniErrors?: boolean;
}

/** Runs `fn`; a failure becomes a CniError saying what was being done (a CniError passes unchanged). */
export function withContext<T>(what: string, fn: () => T, o: ContextOptions = {}): T {
  try {
    return fn();
  } catch (err) {
    throw err instanceof CniError && !o.prefixCniErrors ? err : CniError.from(err, what);
  }
}
