/** The CLI's stdout. Through Bun.write, not process.stdout: the latter alone costs ~600 page faults. */
export async function print(text: string): Promise<void> {
  await Bun.write(Bun.stdout, text);
}
