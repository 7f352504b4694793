/** Assertions on failures: the CniError a call throws (or a promise rejects with), or its code. */
import { CniError } from "../../src/spec/errors.ts";

/** The CniError `fn` throws; any other outcome fails the test. */
export function failure(fn: () => unknown): CniError {
  try {
    fn();
  } catch (err) {
    if (err instanceof CniError) return err;
    throw err;
  }
  throw new Error("expected a CniError");
}

/** The CniError `p` (or the promise `p()` returns) rejects with; any other outcome fails the test. */
export async function rejection(p: Promise<unknown> | (() => unknown)): Promise<CniError> {
  try {
    await (typeof p === "function" ? p() : p);
  } catch (err) {
    if (err instanceof CniError) return err;
    throw err;
  }
  throw new Error("expected a CniError");
}

/** The code of the CniError `fn` throws, -1 for another error, undefined when it does not throw. */
export function codeOf(fn: () => unknown): number | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof CniError ? Number(err.code) : -1;
  }
  return undefined;
}
