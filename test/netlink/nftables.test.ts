import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { decodeElem, encodeElem, type NftMapSchema } from "../../src/firewall/nft-elems.ts";
import {
  NFPROTO_INET,
  nftCommitElems,
  nftListElems,
  nftListRules,
  nftListSets,
  nftTableExists,
  openNftSocket,
} from "../../src/netlink/nftables.ts";
import type { NetlinkSocket } from "../../src/netlink/socket.ts";
import { SysError } from "../../src/sys/errno.ts";
import { cleanupAll, makeNetns, type TempNetns } from "../helpers/netns.ts";

const EXEMPT: NftMapSchema = { key: ["ipv4_addr", "ipv4_addr"], data: ["mark"], interval: true };
const DNAT: NftMapSchema = { key: ["inet_proto", "inet_service"], data: ["ipv4_addr", "inet_service"] };
const OWNERS6: NftMapSchema = { key: ["ipv6_addr"], data: ["mark"] };

let ns: TempNetns;
let sock: NetlinkSocket;

function nft(script: string): void {
  const p = Bun.spawnSync(["nsenter", `--net=${ns.path}`, "nft", "-f", "-"], {
    stdin: new TextEncoder().encode(script),
    stderr: "pipe",
  });
  if (p.exitCode !== 0) throw new Error(p.stderr.toString());
}

/** nft's own view of a map's elements (the oracle), as "key : value [comment]" strings. */
function oracle(map: string): string[] {
  const r = ns.run(["nft", "-j", "list", "map", "inet", "t", map]);
  if (r.code !== 0) throw new Error(r.stderr);
  const text = (v: unknown): string => {
    if (typeof v !== "object" || v === null) return String(v);
    const o = v as { concat?: unknown[]; prefix?: { addr: string; len: number }; elem?: { val: unknown } };
    if (o.concat) return o.concat.map(text).join(" . ");
    if (o.prefix) return `${o.prefix.addr}/${o.prefix.len}`;
    if (o.elem) return text(o.elem.val);
    return JSON.stringify(v);
  };
  const elems: [unknown, unknown][] =
    JSON.parse(r.stdout).nftables.find((o: { map?: unknown }) => o.map).map.elem ?? [];
  return elems
    .map(([k, v]) => {
      const c = (k as { elem?: { comment?: string } }).elem?.comment;
      return `${text(k)} : ${text(v)}${c ? ` [${c}]` : ""}`;
    })
    .sort();
}

function ours(map: string, schema: NftMapSchema): string[] {
  return (nftListElems(sock, NFPROTO_INET, "t", map) ?? [])
    .map((e) => decodeElem(schema, e))
    .map((e) => `${e.key} : ${e.value}${e.comment ? ` [${e.comment}]` : ""}`)
    .sort();
}

beforeAll(() => {
  ns = makeNetns("nft");
  sock = openNftSocket(ns.ns.fd);
  nft(`
add table inet t
add map inet t exempt4 { type ipv4_addr . ipv4_addr : mark; flags interval; }
add map inet t dnat4 { type inet_proto . inet_service : ipv4_addr . inet_service; }
add map inet t owners6 { type ipv6_addr : mark; }
add set inet t layout_x { type mark; }
add chain inet t post { type nat hook postrouting priority srcnat; policy accept; }
add rule inet t post ip saddr . ip daddr != @exempt4 masquerade
`);
});

afterAll(() => {
  sock?.close();
  cleanupAll();
});

describe("nf_tables over netlink", () => {
  test("tables, sets and rules are listed; missing ones are undefined", () => {
    expect(nftTableExists(sock, NFPROTO_INET, "t")).toBe(true);
    expect(nftTableExists(sock, NFPROTO_INET, "nope")).toBe(false);
    expect(nftListSets(sock, NFPROTO_INET, "t")?.sort()).toEqual(["dnat4", "exempt4", "layout_x", "owners6"]);
    expect(nftListSets(sock, NFPROTO_INET, "nope")).toBeUndefined();
    expect(nftListElems(sock, NFPROTO_INET, "t", "nope")).toBeUndefined();
    expect(nftListElems(sock, NFPROTO_INET, "nope", "x")).toBeUndefined();
    const rules = nftListRules(sock, NFPROTO_INET, "t", "post");
    expect(rules).toHaveLength(1);
    expect(rules[0]!.sets).toEqual(["exempt4"]);
    expect(rules[0]!.exprs).toContain("masq");
    expect(nftListRules(sock, NFPROTO_INET, "t", "nope")).toEqual([]);
    expect(nftListRules(sock, NFPROTO_INET, "nope", "post")).toEqual([]);
  });

  test("elements we add are what nft lists, comments included, and read back equal", () => {
    nftCommitElems(
      sock,
      NFPROTO_INET,
      "t",
      [
        {
          kind: "add",
          set: "exempt4",
          elems: [
            encodeElem(EXEMPT, { key: "10.0.0.5 . 10.0.0.0/16", value: "7", comment: "owner a" }),
            encodeElem(EXEMPT, { key: "10.0.0.6 . 0.0.0.0/0", value: "4294967295" }),
          ],
        },
        {
          kind: "add",
          set: "dnat4",
          elems: [
            encodeElem(DNAT, { key: "tcp . 8080", value: "10.0.0.5 . 80", comment: "x" }),
            encodeElem(DNAT, { key: "udp . 53", value: "10.0.0.6 . 5353" }),
          ],
        },
        { kind: "add", set: "owners6", elems: [encodeElem(OWNERS6, { key: "fd00::5", value: "9" })] },
      ],
      "adding",
    );
    const wantExempt = ["10.0.0.5 . 10.0.0.0/16 : 7 [owner a]", "10.0.0.6 . 0.0.0.0/0 : 4294967295"];
    expect(oracle("exempt4")).toEqual(wantExempt);
    expect(ours("exempt4", EXEMPT)).toEqual(wantExempt);
    const wantDnat = ["tcp . 8080 : 10.0.0.5 . 80 [x]", "udp . 53 : 10.0.0.6 . 5353"];
    expect(oracle("dnat4")).toEqual(wantDnat);
    expect(ours("dnat4", DNAT)).toEqual(wantDnat);
    expect(oracle("owners6")).toEqual(["fd00::5 : 9"]);
    expect(ours("owners6", OWNERS6)).toEqual(["fd00::5 : 9"]);
  });

  test("elements nft adds decode to nft's own text", () => {
    nft('add element inet t exempt4 { 10.1.2.3 . 10.1.0.0/17 comment "from nft" : 12 }\n');
    expect(ours("exempt4", EXEMPT)).toContain("10.1.2.3 . 10.1.0.0/17 : 12 [from nft]");
  });

  test("a batch is all or nothing: a clashing add or a missing delete aborts it", () => {
    const before = oracle("dnat4");
    const clash = () =>
      nftCommitElems(
        sock,
        NFPROTO_INET,
        "t",
        [
          {
            kind: "add",
            set: "dnat4",
            elems: [encodeElem(DNAT, { key: "tcp . 9000", value: "10.0.0.9 . 90" })],
          },
          // same key, other value: refused
          {
            kind: "add",
            set: "dnat4",
            elems: [encodeElem(DNAT, { key: "tcp . 8080", value: "10.0.0.7 . 80" })],
          },
        ],
        "clashing",
      );
    expect(clash).toThrow(SysError);
    try {
      clash();
    } catch (err) {
      expect((err as SysError).code).toBe("EEXIST");
      expect((err as SysError).message).toContain("clashing");
    }
    expect(oracle("dnat4")).toEqual(before);
    let code = "";
    try {
      nftCommitElems(
        sock,
        NFPROTO_INET,
        "t",
        [
          {
            kind: "delete",
            set: "dnat4",
            elems: [encodeElem(DNAT, { key: "tcp . 8080", value: "10.0.0.5 . 80" })],
          },
          {
            kind: "delete",
            set: "dnat4",
            elems: [encodeElem(DNAT, { key: "tcp . 1", value: "10.0.0.5 . 80" })],
          },
        ],
        "deleting",
      );
    } catch (err) {
      code = (err as SysError).code;
    }
    expect(code).toBe("ENOENT");
    expect(oracle("dnat4")).toEqual(before);
  });

  test("compare-and-delete: re-adding the same value then deleting removes it; another value aborts", () => {
    const e = encodeElem(EXEMPT, { key: "10.0.0.5 . 10.0.0.0/16", value: "7" });
    expect(() =>
      nftCommitElems(
        sock,
        NFPROTO_INET,
        "t",
        [
          {
            kind: "add",
            set: "exempt4",
            elems: [encodeElem(EXEMPT, { key: "10.0.0.5 . 10.0.0.0/16", value: "8" })],
          },
          { kind: "delete", set: "exempt4", elems: [e] },
        ],
        "cad",
      ),
    ).toThrow(/EEXIST/);
    expect(oracle("exempt4")).toContain("10.0.0.5 . 10.0.0.0/16 : 7 [owner a]");
    nftCommitElems(
      sock,
      NFPROTO_INET,
      "t",
      [
        { kind: "add", set: "exempt4", elems: [e] },
        { kind: "delete", set: "exempt4", elems: [e] },
      ],
      "cad",
    );
    expect(oracle("exempt4").some((s) => s.startsWith("10.0.0.5 "))).toBe(false);
  });

  test("text codec: ranges, prefixes, protocols; bad text is a CniError", () => {
    const r = encodeElem(EXEMPT, { key: "10.0.0.1 . 10.0.0.1-10.0.0.9", value: "1" });
    expect(decodeElem(EXEMPT, r).key).toBe("10.0.0.1 . 10.0.0.1-10.0.0.9");
    expect(decodeElem(DNAT, encodeElem(DNAT, { key: "sctp . 1", value: "1.2.3.4 . 65535" }))).toEqual({
      key: "sctp . 1",
      value: "1.2.3.4 . 65535",
    });
    expect(() => encodeElem(DNAT, { key: "tcp", value: "1.2.3.4 . 1" })).toThrow(/part/);
    expect(() => encodeElem(DNAT, { key: "tcp . 70000", value: "1.2.3.4 . 1" })).toThrow(/range/);
    expect(() => encodeElem(DNAT, { key: "tcp . 1", value: "fd00::1 . 1" })).toThrow(/IPv4/);
    expect(() => encodeElem(OWNERS6, { key: "fd00::/64", value: "1" })).toThrow(/interval/);
  });
});
