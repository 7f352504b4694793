/** The `resolvConf` option: a resolv.conf file read into the result's DNS (upstream dns.go). */
import { CniError, ErrCode } from "../../../spec/errors.ts";
import type { DNS } from "../../../spec/types.ts";
import { readFile } from "../../../sys/fs.ts";

/** nameserver / domain / search / options lines; comments (# or ;) and short lines are skipped. */
export function parseResolvConf(text: string): DNS {
  const dns: DNS = {};
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line[0] === "#" || line[0] === ";") continue;
    const fields = line.split(/\s+/);
    if (fields.length < 2) continue;
    const [key, first] = fields as [string, string];
    switch (key) {
      case "nameserver":
        dns.nameservers = [...(dns.nameservers ?? []), first];
        break;
      case "domain":
        dns.domain = first;
        break;
      case "search":
        dns.search = [...(dns.search ?? []), ...fields.slice(1)];
        break;
      case "options":
        dns.options = [...(dns.options ?? []), ...fields.slice(1)];
        break;
    }
  }
  return dns;
}

export function readResolvConf(path: string): DNS {
  let text: string;
  try {
    text = readFile(path, "utf8");
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    throw new CniError(ErrCode.IOFailure, `host-local: reading resolvConf ${path}: ${msg}`);
  }
  return parseResolvConf(text);
}
