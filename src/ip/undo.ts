/**
 * Rollback as data: each step of an ADD that changes something pushes how to take it back; on a
 * failure the list runs newest-first, so nothing half-made is left behind.
 */
export interface UndoStep {
  /** What the step undoes, for the log line if undoing fails. */
  what: string;
  run: () => unknown | Promise<unknown>;
}

export type UndoList = UndoStep[];

/** Runs every step newest-first; a failing step is reported on stderr and does not stop the rest. */
export async function rollback(undo: UndoList): Promise<void> {
  for (const step of undo.splice(0).reverse()) {
    try {
      await step.run();
    } catch (err) {
      process.stderr.write(`rollback: ${step.what}: ${err instanceof Error ? err.message : err}\n`);
    }
  }
}

/** Runs `fn` with a fresh undo list; if fn throws, rolls back and rethrows the original error. */
export async function withUndo<T>(fn: (undo: UndoList) => Promise<T>): Promise<T> {
  const undo: UndoList = [];
  try {
    return await fn(undo);
  } catch (err) {
    await rollback(undo);
    throw err;
  }
}
