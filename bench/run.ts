/** npm run bench: runs every bench/*.bench.ts in turn (each rewrites its own section of RESULTS.md). */
import { readdirSync } from "node:fs";
import { join } from "node:path";

const only = process.argv.slice(2);
const files = readdirSync(import.meta.dir)
  .filter((f) => f.endsWith(".bench.ts"))
  .filter((f) => only.length === 0 || only.some((o) => f.includes(o)))
  .sort();
let failed = 0;
for (const f of files) {
  console.log(`\n== ${f}`);
  const p = Bun.spawnSync([process.execPath, join(import.meta.dir, f)], {
    stdout: "inherit",
    stderr: "inherit",
  });
  if (p.exitCode !== 0) failed++;
}
process.exit(failed ? 1 : 0);
