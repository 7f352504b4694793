import { expect, test } from "bun:test";
import { parseResolvConf } from "../../../../src/plugins/ipam/host-local/dns.ts";

test("resolv.conf: nameserver, domain, search, options; comments and short lines skipped", () => {
  const text = [
    "# generated",
    "; also a comment",
    "nameserver 10.0.0.10",
    "  nameserver   fd00::53  ",
    "domain example.com",
    "search a.example b.example",
    "search c.example",
    "options ndots:5 rotate",
    "nameserver",
    "sortlist 10.0.0.0/8",
    "",
  ].join("\n");
  expect(parseResolvConf(text)).toEqual({
    nameservers: ["10.0.0.10", "fd00::53"],
    domain: "example.com",
    search: ["a.example", "b.example", "c.example"],
    options: ["ndots:5", "rotate"],
  });
  expect(parseResolvConf("")).toEqual({});
});
