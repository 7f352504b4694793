/*
 * tscni-launcher: the warm path's launcher (docs/warm-path.md). A runtime execs it under a plugin's
 * name (a link in /opt/cni/bin, laid by `tscni install --warm`). It hands the call to the resident
 * helper (`tscni warm serve`) over a Unix socket and prints what the helper returns; when no helper
 * answers, or the helper says to, it execs the tscni executable beside it with the same argv, so the call
 * is made exactly as without the warm path. Native code because its whole point is to start in ~1 ms.
 *
 * Environment: TSCNI_WARM_SOCK (default /run/tscni/warm.sock; empty: always exec), TSCNI_WARM_TIMEOUT (seconds to wait for a
 * reply, default 300), TSCNI_WARM_FALLBACK (the executable to exec; default: tscni beside this file).
 * Protocol: see src/cli/warm.ts.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

extern char **environ;

static char *buf;
static size_t len, cap;

static void put(const void *p, size_t n) {
  if (len + n > cap) {
    cap = (len + n) * 2 + 4096;
    buf = realloc(buf, cap);
    if (!buf) exit(70);
  }
  memcpy(buf + len, p, n);
  len += n;
}

static void put32(uint32_t v) { put(&v, 4); }

static int readn(int fd, void *p, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, (char *)p + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    got += (size_t)r;
  }
  return 0;
}

static int writen(int fd, const void *p, size_t n) {
  size_t off = 0;
  while (off < n) {
    ssize_t w = write(fd, (const char *)p + off, n - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    off += (size_t)w;
  }
  return 0;
}

static const char *stdinBytes;
static size_t stdinLen;

/* exec tscni with the same argv (its name picks the plugin); stdin was read already, so it is piped. */
static int fallback(char **argv) {
  const char *fb = getenv("TSCNI_WARM_FALLBACK");
  char path[PATH_MAX];
  if (!fb) {
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 8);
    if (n <= 0) return 70;
    path[n] = 0;
    char *slash = strrchr(path, '/');
    strcpy(slash ? slash + 1 : path, "tscni");
    fb = path;
  }
  int p[2];
  if (pipe(p) < 0) return 70;
  pid_t child = fork();
  if (child == 0) { /* feeds the bytes we consumed to the fallback's stdin */
    close(p[0]);
    writen(p[1], stdinBytes, stdinLen);
    _exit(0);
  }
  close(p[1]);
  dup2(p[0], 0);
  close(p[0]);
  signal(SIGPIPE, SIG_DFL); /* the plugin gets the disposition a runtime gives it */
  execv(fb, argv);
  fprintf(stderr, "tscni-launcher: exec %s: %s\n", fb, strerror(errno));
  return 70;
}

/* A failure after the helper took the call: the runtime gets CNI error JSON, as from any plugin. */
static int cniError(int code, const char *what) {
  printf("{\n    \"cniVersion\": \"1.0.0\",\n    \"code\": %d,\n    \"msg\": \"tscni warm helper: %s\"\n}\n", code, what);
  return 1;
}

int main(int argc, char **argv) {
  (void)argc;
  const char *sockPath = getenv("TSCNI_WARM_SOCK");
  if (!sockPath) sockPath = "/run/tscni/warm.sock";
  const char *name = strrchr(argv[0], '/');
  name = name ? name + 1 : argv[0];

  /* stdin first: the fallback needs it too */
  char chunk[65536];
  size_t inStart;
  put("TSCNIW1", 8);
  put32((uint32_t)strlen(name));
  put(name, strlen(name));
  size_t envStart = len;
  put32(0);
  for (char **e = environ; *e; e++) put(*e, strlen(*e) + 1);
  uint32_t envLen = (uint32_t)(len - envStart - 4);
  memcpy(buf + envStart, &envLen, 4);
  inStart = len;
  put32(0);
  for (;;) {
    ssize_t r = read(0, chunk, sizeof chunk);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    put(chunk, (size_t)r);
  }
  uint32_t inLen = (uint32_t)(len - inStart - 4);
  memcpy(buf + inStart, &inLen, 4);

  /* a helper that closes early must not kill us: EPIPE means it never took the call */
  signal(SIGPIPE, SIG_IGN);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  strncpy(sa.sun_path, sockPath, sizeof sa.sun_path - 1);
  if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    stdinBytes = buf + inStart + 4;
    stdinLen = inLen;
    return fallback(argv);
  }
  const char *t = getenv("TSCNI_WARM_TIMEOUT");
  struct timeval tv = {.tv_sec = t ? atoi(t) : 300};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (writen(fd, buf, len) < 0) { /* the helper did not read the call, so it did not run it */
    close(fd);
    stdinBytes = buf + inStart + 4;
    stdinLen = inLen;
    return fallback(argv);
  }
  shutdown(fd, SHUT_WR);

  uint8_t status;
  uint32_t code, n;
  if (readn(fd, &status, 1) < 0) {
    /* 11, try again later: the pool replaces a worker that died; a call that ran past the pool's
       watchdog is answered by the supervisor itself (code 11 too), so it does not end here */
    if (errno == EAGAIN) return cniError(999, "no reply within TSCNI_WARM_TIMEOUT");
    return cniError(11, "the helper died during the call");
  }
  if (readn(fd, &code, 4) < 0) return cniError(999, "a truncated reply");
  if (status == 1) {
    close(fd);
    stdinBytes = buf + inStart + 4;
    stdinLen = inLen;
    return fallback(argv);
  }
  for (int out = 1; out <= 2; out++) {
    if (readn(fd, &n, 4) < 0) return cniError(999, "a truncated reply");
    char *p = malloc(n ? n : 1);
    if (!p || readn(fd, p, n) < 0) return cniError(999, "a truncated reply");
    if (writen(out, p, n) < 0) return 70;
    free(p);
  }
  return (int)code;
}
