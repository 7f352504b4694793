/** `tscni demo` lands with the bridge plugin (see the bridge issue). */
export async function runDemo(_args: string[]): Promise<number> {
  process.stdout.write("tscni demo: not available yet — it arrives with the bridge plugin\n");
  return 0;
}
