/* TCP ports and four-tuples over loopback, as Linux has them:
 *   - an orphan in FIN_WAIT2 holds its port for TCP_LINGER2 seconds (bind gets
 *     EADDRINUSE until then, then succeeds); TCP_LINGER2 < 0 frees it once the
 *     FIN is acknowledged (Linux's peer delays that ACK a little);
 *     TCP_LINGER2 as getsockopt reads it back;
 *   - connect(2) from a port bound with SO_REUSEADDR to the four-tuple of another
 *     connection fails with EADDRNOTAVAIL, leaves the socket bound, and connecting
 *     it elsewhere then works;
 *   - a socket connected to its own address and port (a self-connect) talks to
 *     itself, and shutdown(SHUT_WR) gives it EOF;
 *   - a SYN from a bound port to a listener whose side still has a connection of
 *     that four-tuple (CLOSE_WAIT) connects: the stale connection is reset;
 *   - an AF_INET6 socket bound to ::1 cannot connect to a v4-mapped address
 *     (ENETUNREACH), one bound to a v4-mapped address not to ::1 (EAFNOSUPPORT).
 * Prints what it sees (compared with Linux by the test) and "ok".
 * argv[1]: "4" or "6"; argv[2] "slow": also the FIN_WAIT2 timeout (sleeps 2 s). */
#define _GNU_SOURCE
#include "check.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <time.h>

static int family = AF_INET;
static const int one = 1;

static socklen_t loopback(struct sockaddr_storage *ss, int port)
{
    memset(ss, 0, sizeof(*ss));
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a->sin_port = htons(port);
        return sizeof(*a);
    }
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
    a->sin6_family = AF_INET6;
    a->sin6_addr = in6addr_loopback;
    a->sin6_port = htons(port);
    return sizeof(*a);
}

static int port_of(int fd, int peer)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    CHECK((peer ? getpeername(fd, (struct sockaddr *)&ss, &len)
                : getsockname(fd, (struct sockaddr *)&ss, &len)) == 0);
    return family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
                             : ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

static int listener(void)
{
    struct sockaddr_storage ss;
    socklen_t len = loopback(&ss, 0);
    int l = socket(family, SOCK_STREAM, 0);
    CHECK(l >= 0);
    CHECK(bind(l, (struct sockaddr *)&ss, len) == 0);
    CHECK(listen(l, 8) == 0);
    return l;
}

static int connect_to(int fd, int port)
{
    struct sockaddr_storage ss;
    socklen_t len = loopback(&ss, port);
    return connect(fd, (struct sockaddr *)&ss, len);
}

static int bind_port(int fd, int port)
{
    struct sockaddr_storage ss;
    socklen_t len = loopback(&ss, port);
    return bind(fd, (struct sockaddr *)&ss, len);
}

static const char *err(int r)
{
    if (r == 0)
        return "0";
    switch (errno) {
    case EADDRINUSE: return "EADDRINUSE";
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
    case ECONNREFUSED: return "ECONNREFUSED";
    case ECONNRESET: return "ECONNRESET";
    case EPIPE: return "EPIPE";
    case ENETUNREACH: return "ENETUNREACH";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    default: return strerror(errno);
    }
}

static void pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* bind(2) to a port a closing connection frees "soon": Linux's peer acknowledges the
 * FIN with a delayed ACK (tens of ms, more under load), so try for up to 5 s. */
static int bind_soon(int fd, int port)
{
    for (int i = 0;; i++) {
        int r = bind_port(fd, port);
        if (r == 0 || errno != EADDRINUSE || i == 50)
            return r;
        pause_ms(100);
    }
}

static int linger2(int fd)
{
    int v;
    socklen_t len = sizeof(v);
    CHECK(getsockopt(fd, IPPROTO_TCP, TCP_LINGER2, &v, &len) == 0);
    return v;
}

static void set_linger2(int fd, int v)
{
    CHECK(setsockopt(fd, IPPROTO_TCP, TCP_LINGER2, &v, sizeof(v)) == 0);
}

/* A connection to listener `l`: *c the connecting end, returns the accepted one. */
static int pair(int l, int *c)
{
    *c = socket(family, SOCK_STREAM, 0);
    CHECK(*c >= 0);
    CHECK(connect_to(*c, port_of(l, 0)) == 0);
    int s = accept(l, NULL, NULL);
    CHECK(s >= 0);
    return s;
}

static void linger2_values(void)
{
    int fd = socket(family, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    printf("linger2 default %d\n", linger2(fd));
    int vals[] = {1, 0, -5, 1000, 7};
    for (unsigned i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        set_linger2(fd, vals[i]);
        printf("linger2 set %d reads %d\n", vals[i], linger2(fd));
    }
    close(fd);
}

static void fin_wait2(int slow)
{
    int l = listener();
    int c;
    int s = pair(l, &c);
    int port = port_of(c, 0);
    set_linger2(c, 1);
    close(c);                       /* FIN_WAIT2: the peer (s) never closes */
    int n = socket(family, SOCK_STREAM, 0);
    CHECK(n >= 0);
    printf("fin_wait2: bind at once: %s\n", err(bind_port(n, port)));
    if (slow) {
        pause_ms(2000);
        printf("fin_wait2: bind after the linger2 timeout: %s\n", err(bind_port(n, port)));
    }
    close(n);
    close(s);

    /* TCP_LINGER2 < 0: no FIN_WAIT2 at all. */
    s = pair(l, &c);
    port = port_of(c, 0);
    set_linger2(c, -1);
    close(c);
    n = socket(family, SOCK_STREAM, 0);
    CHECK(n >= 0);
    printf("linger2 -1: bind soon after close: %s\n", err(bind_soon(n, port)));
    close(n);
    close(s);
    close(l);
}

static void reuse_conflict(void)
{
    int l = listener(), l2 = listener();
    int c1 = socket(family, SOCK_STREAM, 0), c2 = socket(family, SOCK_STREAM, 0);
    CHECK(c1 >= 0 && c2 >= 0);
    CHECK(setsockopt(c1, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0);
    CHECK(setsockopt(c2, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0);
    CHECK(connect_to(c1, port_of(l, 0)) == 0);
    int port = port_of(c1, 0);
    printf("reuse: bind c2 to c1's port: %s\n", err(bind_port(c2, port)));
    printf("reuse: connect c2 to c1's peer: %s\n", err(connect_to(c2, port_of(l, 0))));
    printf("reuse: c2 still on c1's port: %d\n", port_of(c2, 0) == port);
    printf("reuse: connect c2 elsewhere: %s\n", err(connect_to(c2, port_of(l2, 0))));
    printf("reuse: c2's port after: %d\n", port_of(c2, 0) == port);
    int a = accept(l2, NULL, NULL);
    CHECK(a >= 0);
    printf("reuse: accepted from c1's port: %d\n", port_of(a, 1) == port);
    close(a);
    close(c1);
    close(c2);
    close(l);
    close(l2);
}

static void self_connect(void)
{
    int s = socket(family, SOCK_STREAM, 0);
    CHECK(s >= 0);
    CHECK(bind_port(s, 0) == 0);
    int port = port_of(s, 0);
    printf("self: connect: %s\n", err(connect_to(s, port)));
    printf("self: peer port is ours: %d\n", port_of(s, 1) == port);
    CHECK(write(s, "hello", 5) == 5);
    char buf[16];
    ssize_t r = read(s, buf, sizeof(buf));
    printf("self: read %zd \"%.*s\"\n", r, (int)(r > 0 ? r : 0), buf);
    CHECK(shutdown(s, SHUT_WR) == 0);
    printf("self: read after shutdown(SHUT_WR): %zd\n", read(s, buf, sizeof(buf)));
    errno = 0;
    r = send(s, "x", 1, MSG_NOSIGNAL);
    printf("self: send after shutdown: %zd %s\n", r, r < 0 ? err(-1) : "");
    close(s);
}

static void stale_close_wait(void)
{
    int l = listener();
    int c;
    int s = pair(l, &c);
    int port = port_of(c, 0);
    set_linger2(c, -1);
    close(c);                       /* soon gone; s stays in CLOSE_WAIT */
    char buf[4];
    printf("stale: old end reads %zd\n", read(s, buf, sizeof(buf)));
    int n = socket(family, SOCK_STREAM, 0);
    CHECK(n >= 0);
    CHECK(bind_soon(n, port) == 0);
    printf("stale: connect from the same port: %s\n", err(connect_to(n, port_of(l, 0))));
    int a = accept(l, NULL, NULL);
    CHECK(a >= 0);
    printf("stale: new accepted from that port: %d\n", port_of(a, 1) == port);
    CHECK(write(n, "ab", 2) == 2);
    printf("stale: new connection reads %zd\n", read(a, buf, sizeof(buf)));
    errno = 0;
    ssize_t r = send(s, "x", 1, MSG_NOSIGNAL);
    printf("stale: old end sends: %zd %s\n", r, r < 0 ? err(-1) : "");
    close(a);
    close(n);
    close(s);
    close(l);
}

static void af_mismatch(void)
{
    struct sockaddr_in6 v6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    struct sockaddr_in6 mapped = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, "::ffff:127.0.0.1", &mapped.sin6_addr);
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    CHECK(bind(fd, (struct sockaddr *)&v6, sizeof(v6)) == 0);
    mapped.sin6_port = htons(9);
    printf("bound to ::1, connect to a v4-mapped address: %s\n",
           err(connect(fd, (struct sockaddr *)&mapped, sizeof(mapped))));
    close(fd);
    fd = socket(AF_INET6, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    mapped.sin6_port = 0;
    CHECK(bind(fd, (struct sockaddr *)&mapped, sizeof(mapped)) == 0);
    v6.sin6_port = htons(9);
    printf("bound to a v4-mapped address, connect to ::1: %s\n",
           err(connect(fd, (struct sockaddr *)&v6, sizeof(v6))));
    close(fd);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "6") == 0)
        family = AF_INET6;
    int slow = argc > 2 && strcmp(argv[2], "slow") == 0;
    setvbuf(stdout, NULL, _IONBF, 0);
    linger2_values();
    fin_wait2(slow);
    reuse_conflict();
    self_connect();
    stale_close_wait();
    if (family == AF_INET6)
        af_mismatch();
    ok();
    return 0;
}
