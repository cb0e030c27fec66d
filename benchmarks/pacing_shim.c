/*
 * LD_PRELOAD shim for the benchmark's capped nginx: every TCP connection that nginx
 * accepts gets SO_MAX_PACING_RATE, so the kernel paces each response from its first
 * byte (nginx's limit_rate lets the first second's worth through at once).
 *
 *   BENCH_PACE_RATE  bytes per second per connection (unset or 0: do nothing)
 *   BENCH_PACE_MSS   optional TCP_MAXSEG set on listening sockets (inherited by the
 *                    accepted ones), e.g. 1448 for an internet-like segment size
 *
 * Build: gcc -O2 -shared -fPIC -o pacing_shim.so pacing_shim.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/socket.h>

static unsigned int pace_rate;
static int pace_mss;

__attribute__((constructor)) static void pace_init(void)
{
    const char *rate = getenv("BENCH_PACE_RATE");
    const char *mss = getenv("BENCH_PACE_MSS");
    pace_rate = rate ? (unsigned int)strtoul(rate, NULL, 10) : 0;
    pace_mss = mss ? atoi(mss) : 0;
}

static void pace(int fd)
{
    if (fd >= 0 && pace_rate > 0)
        setsockopt(fd, SOL_SOCKET, SO_MAX_PACING_RATE, &pace_rate, sizeof pace_rate);
}

int listen(int fd, int backlog)
{
    static int (*real_listen)(int, int);
    if (!real_listen)
        real_listen = (int (*)(int, int))dlsym(RTLD_NEXT, "listen");
    if (pace_mss > 0)
        setsockopt(fd, IPPROTO_TCP, TCP_MAXSEG, &pace_mss, sizeof pace_mss);
    return real_listen(fd, backlog);
}

int accept(int fd, struct sockaddr *addr, socklen_t *len)
{
    static int (*real_accept)(int, struct sockaddr *, socklen_t *);
    if (!real_accept)
        real_accept = (int (*)(int, struct sockaddr *, socklen_t *))dlsym(RTLD_NEXT, "accept");
    int conn = real_accept(fd, addr, len);
    pace(conn);
    return conn;
}

int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
    static int (*real_accept4)(int, struct sockaddr *, socklen_t *, int);
    if (!real_accept4)
        real_accept4 = (int (*)(int, struct sockaddr *, socklen_t *, int))dlsym(RTLD_NEXT, "accept4");
    int conn = real_accept4(fd, addr, len, flags);
    pace(conn);
    return conn;
}
