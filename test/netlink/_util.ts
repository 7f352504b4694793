/** The netlink object tests' fixtures, on test/helpers/netns.ts: a throwaway netns and a veth pair in it. */
import { cleanupAll, makeNetns, type TempNetns } from "../helpers/netns.ts";

export type TestNetns = TempNetns;

export function makeTestNetns(): TestNetns {
  return makeNetns("nl");
}

export const cleanupTestNetns = cleanupAll;

/** A veth pair v0/v1, both up, in `t`; their ifindexes. */
export function vethPair(t: TestNetns): { v0: number; v1: number } {
  t.ip("link", "add", "v0", "type", "veth", "peer", "name", "v1");
  t.ip("link", "set", "v0", "up");
  t.ip("link", "set", "v1", "up");
  return { v0: ifindex(t, "v0"), v1: ifindex(t, "v1") };
}

export function ifindex(t: TestNetns, dev: string): number {
  return t.ip("link", "show", "dev", dev)[0].ifindex;
}
