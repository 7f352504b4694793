/** tscni's own version, and `tscni version`: loaded alone, so the probe costs no more than it prints. */
import { CNI_VERSIONS } from "../spec/types.ts";

export const TSCNI_VERSION = "0.1.0";

/** Through Bun.write, not process.stdout: the latter alone costs a compiled program ~600 page faults. */
export async function printVersion(): Promise<number> {
  await Bun.write(
    Bun.stdout,
    `tscni ${TSCNI_VERSION}\nCNI protocol versions supported: ${CNI_VERSIONS.join(", ")}\n`,
  );
  return 0;
}
