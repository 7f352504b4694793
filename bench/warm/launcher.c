/*
 * Warm-path prototype (bench only, issue 19 part 3): the launcher a runtime would exec as a plugin. It
 * forwards argv[0]'s name, its pid (the helper joins this process's netns), its environment and stdin to
 * the resident helper over a Unix socket, prints what the helper returns and exits with its code. If no
 * helper answers it execs the real multicall binary instead, so a dead helper costs one connect().
 *
 *   cc -O2 -static -o launcher launcher.c
 *   TSCNI_WARM_SOCK (default /run/tscni/warm.sock), TSCNI_WARM_FALLBACK (default /opt/cni/bin/tscni)
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

extern char **environ;

static char *buf;
static size_t len, cap;

static void put(const void *p, size_t n) {
  if (len + n > cap) {
    cap = (len + n) * 2;
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

int main(int argc, char **argv) {
  (void)argc;
  const char *sock = getenv("TSCNI_WARM_SOCK");
  if (!sock) sock = "/run/tscni/warm.sock";
  const char *name = strrchr(argv[0], '/');
  name = name ? name + 1 : argv[0];

  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  strncpy(sa.sun_path, sock, sizeof sa.sun_path - 1);
  if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    const char *fb = getenv("TSCNI_WARM_FALLBACK");
    if (!fb) fb = "/opt/cni/bin/tscni";
    execv(fb, argv); /* argv[0] keeps the plugin's name: the multicall binary picks it */
    perror("launcher: exec fallback");
    return 70;
  }

  put32(0); /* total length, filled below */
  put32((uint32_t)getpid());
  put32((uint32_t)strlen(name));
  put(name, strlen(name));
  size_t envStart = len;
  put32(0);
  for (char **e = environ; *e; e++) put(*e, strlen(*e) + 1);
  uint32_t envLen = (uint32_t)(len - envStart - 4);
  memcpy(buf + envStart, &envLen, 4);
  size_t inStart = len;
  put32(0);
  char chunk[65536];
  for (;;) {
    ssize_t r = read(0, chunk, sizeof chunk);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    put(chunk, (size_t)r);
  }
  uint32_t inLen = (uint32_t)(len - inStart - 4);
  memcpy(buf + inStart, &inLen, 4);
  uint32_t total = (uint32_t)(len - 4);
  memcpy(buf, &total, 4);
  if (writen(fd, buf, len) < 0) return 70;

  uint32_t code, n;
  if (readn(fd, &code, 4) < 0) {
    fputs("launcher: the helper closed the connection without a reply\n", stderr);
    return 70;
  }
  for (int out = 1; out <= 2; out++) {
    if (readn(fd, &n, 4) < 0) return 70;
    char *p = malloc(n ? n : 1);
    if (!p || readn(fd, p, n) < 0 || writen(out, p, n) < 0) return 70;
    free(p);
  }
  return (int)code;
}
