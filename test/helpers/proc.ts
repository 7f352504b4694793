/** Runs a command to completion with a deadline: a hung child must not hang the suite. */
export interface ProcOutput {
  code: number;
  stdout: string;
  stderr: string;
}

export async function runWithDeadline(argv: string[], timeoutMs = 60_000): Promise<ProcOutput> {
  const proc = Bun.spawn(argv, { stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => proc.kill(), timeoutMs);
  try {
    const [stdout, stderr, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    return { code, stdout, stderr };
  } finally {
    clearTimeout(timer);
  }
}
