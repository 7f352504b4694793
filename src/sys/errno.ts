/** Linux errno numbers (x86_64 and aarch64 share these) and the typed error every syscall wrapper throws. */
const ERRNO_NAMES: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  3: "ESRCH",
  4: "EINTR",
  5: "EIO",
  6: "ENXIO",
  7: "E2BIG",
  8: "ENOEXEC",
  9: "EBADF",
  10: "ECHILD",
  11: "EAGAIN",
  12: "ENOMEM",
  13: "EACCES",
  14: "EFAULT",
  16: "EBUSY",
  17: "EEXIST",
  18: "EXDEV",
  19: "ENODEV",
  20: "ENOTDIR",
  21: "EISDIR",
  22: "EINVAL",
  23: "ENFILE",
  24: "EMFILE",
  25: "ENOTTY",
  26: "ETXTBSY",
  27: "EFBIG",
  28: "ENOSPC",
  29: "ESPIPE",
  30: "EROFS",
  31: "EMLINK",
  32: "EPIPE",
  33: "EDOM",
  34: "ERANGE",
  35: "EDEADLK",
  36: "ENAMETOOLONG",
  37: "ENOLCK",
  38: "ENOSYS",
  39: "ENOTEMPTY",
  40: "ELOOP",
  42: "ENOMSG",
  61: "ENODATA",
  62: "ETIME",
  64: "ENONET",
  65: "ENOPKG",
  67: "ENOLINK",
  71: "EPROTO",
  74: "EBADMSG",
  75: "EOVERFLOW",
  88: "ENOTSOCK",
  89: "EDESTADDRREQ",
  90: "EMSGSIZE",
  91: "EPROTOTYPE",
  92: "ENOPROTOOPT",
  93: "EPROTONOSUPPORT",
  94: "ESOCKTNOSUPPORT",
  95: "EOPNOTSUPP",
  96: "EPFNOSUPPORT",
  97: "EAFNOSUPPORT",
  98: "EADDRINUSE",
  99: "EADDRNOTAVAIL",
  100: "ENETDOWN",
  101: "ENETUNREACH",
  102: "ENETRESET",
  103: "ECONNABORTED",
  104: "ECONNRESET",
  105: "ENOBUFS",
  106: "EISCONN",
  107: "ENOTCONN",
  110: "ETIMEDOUT",
  111: "ECONNREFUSED",
  112: "EHOSTDOWN",
  113: "EHOSTUNREACH",
  114: "EALREADY",
  115: "EINPROGRESS",
  116: "ESTALE",
  122: "EDQUOT",
  125: "ECANCELED",
  126: "ENOKEY",
};

const ERRNO_TEXT: Record<string, string> = {
  EPERM: "operation not permitted",
  ENOENT: "no such file or directory",
  ESRCH: "no such process",
  EINTR: "interrupted system call",
  EIO: "input/output error",
  EBADF: "bad file descriptor",
  EAGAIN: "resource temporarily unavailable",
  ENOMEM: "cannot allocate memory",
  EACCES: "permission denied",
  EBUSY: "device or resource busy",
  EEXIST: "file exists",
  ENODEV: "no such device",
  ENOTDIR: "not a directory",
  EISDIR: "is a directory",
  ELOOP: "too many levels of symbolic links",
  ENAMETOOLONG: "file name too long",
  EXDEV: "invalid cross-device link",
  EMFILE: "too many open files",
  ENFILE: "too many open files in system",
  EFBIG: "file too large",
  EDQUOT: "disk quota exceeded",
  ETXTBSY: "text file busy",
  EINVAL: "invalid argument",
  ENOSPC: "no space left on device",
  EROFS: "read-only file system",
  ERANGE: "numerical result out of range",
  ENOTEMPTY: "directory not empty",
  EOPNOTSUPP: "operation not supported",
  EAFNOSUPPORT: "address family not supported by protocol",
  EADDRINUSE: "address already in use",
  EADDRNOTAVAIL: "cannot assign requested address",
  ENETUNREACH: "network is unreachable",
  ENOBUFS: "no buffer space available",
  EPROTONOSUPPORT: "protocol not supported",
  ENOTSUP: "operation not supported",
  ETIMEDOUT: "connection timed out",
  ECONNREFUSED: "connection refused",
  ENOSYS: "function not implemented",
  ENODATA: "no data available",
  EMSGSIZE: "message too long",
};

export function errnoName(errno: number): string {
  return ERRNO_NAMES[errno] ?? `errno ${errno}`;
}

export function errnoNumber(name: string): number | undefined {
  for (const [num, n] of Object.entries(ERRNO_NAMES)) if (n === name) return Number(num);
  return undefined;
}

/**
 * A failed system call or kernel request. `code` is the errno name (EEXIST, ENODEV…), matching Node's
 * `err.code` convention; the message says what was being done: `adding veth eth0: EEXIST (file exists)`.
 */
export class SysError extends Error {
  readonly errno: number;
  readonly code: string;
  readonly op: string;
  /** Extra text from the kernel (netlink extended ack), if any. */
  readonly detail: string;

  constructor(op: string, errno: number, detail = "") {
    const code = errnoName(errno);
    const text = ERRNO_TEXT[code];
    super(`${op}: ${code}${text ? ` (${text})` : ""}${detail ? `: ${detail}` : ""}`);
    this.name = "SysError";
    this.errno = errno;
    this.code = code;
    this.op = op;
    this.detail = detail;
  }
}

/** True when `err` is a SysError (or Node fs error) with one of the given errno names. */
export function isErrno(err: unknown, ...codes: string[]): boolean {
  return typeof err === "object" && err !== null && codes.includes((err as { code?: string }).code ?? "");
}
