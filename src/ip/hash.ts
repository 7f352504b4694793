/**
 * sha512 of `s` in hex: upstream builds chain names, rule tags and ifb names from it. Bun's hasher,
 * because importing node:crypto would add ~1.5 ms to every plugin start.
 */
export function sha512hex(s: string): string {
  return new Bun.CryptoHasher("sha512").update(s).digest("hex");
}
