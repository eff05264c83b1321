/* TCP options and edge states over loopback, as Linux has them:
 *   - TCP_CORK holds a partial segment (SIOCOUTQ counts it) until the uncork,
 *     TCP_NODELAY, a FIN, or the 200 ms ceiling; whole segments go at once;
 *     MSG_MORE holds a send the same way until a send without it;
 *   - TCP_WINDOW_CLAMP: raised to half the smallest receive buffer, 0 refused
 *     (EINVAL) once connected;
 *   - shutdown(2) of a socket still connecting (its SYN dropped by a full accept
 *     queue) closes it with ECONNRESET pending: poll gives POLLHUP | POLLERR;
 *   - SO_PASSCRED is not an option of inet sockets (Linux 6.16+: EOPNOTSUPP).
 * Prints what it sees (compared with Linux by the test) and "ok".  argv[1]: "4"/"6". */
#define _GNU_SOURCE
#include "check.h"
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>

static int family = AF_INET;
static const int one = 1, zero = 0;

static socklen_t loopback(struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        return sizeof(*a);
    }
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
    a->sin6_family = AF_INET6;
    a->sin6_addr = in6addr_loopback;
    return sizeof(*a);
}

static int listener(int backlog, struct sockaddr_storage *ss, socklen_t *len)
{
    *len = loopback(ss);
    int l = socket(family, SOCK_STREAM, 0);
    CHECK(l >= 0);
    CHECK(bind(l, (struct sockaddr *)ss, *len) == 0);
    CHECK(listen(l, backlog) == 0);
    CHECK(getsockname(l, (struct sockaddr *)ss, len) == 0);
    return l;
}

static int pair(int *c)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int l = listener(4, &ss, &len);
    *c = socket(family, SOCK_STREAM, 0);
    CHECK(*c >= 0);
    CHECK(connect(*c, (struct sockaddr *)&ss, len) == 0);
    int s = accept(l, NULL, NULL);
    CHECK(s >= 0);
    close(l);
    return s;
}

static void pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static const char *errname(int e)
{
    switch (e) {
    case 0: return "0";
    case EAGAIN: return "EAGAIN";
    case EINVAL: return "EINVAL";
    case ECONNRESET: return "ECONNRESET";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case ENOPROTOOPT: return "ENOPROTOOPT";
    default: return strerror(e);
    }
}

/* What a non-blocking read finds now: "n bytes" or the errno. */
static const char *avail(int s)
{
    static char out[64];
    static char buf[1 << 18];
    errno = 0;
    ssize_t n = recv(s, buf, sizeof(buf), MSG_DONTWAIT);
    if (n < 0)
        snprintf(out, sizeof(out), "%s", errname(errno));
    else
        snprintf(out, sizeof(out), "%zd bytes", n);
    return out;
}

static int outq(int fd)
{
    int n;
    CHECK(ioctl(fd, SIOCOUTQ, &n) == 0);
    return n;
}

static void cork(void)
{
    int c;
    int s = pair(&c);
    CHECK(setsockopt(c, IPPROTO_TCP, TCP_CORK, &one, sizeof(one)) == 0);
    CHECK(write(c, "abc", 3) == 3);
    printf("cork: held %s, outq %d\n", avail(s), outq(c));
    CHECK(write(c, "de", 2) == 2);
    printf("cork: more held %s, outq %d\n", avail(s), outq(c));
    CHECK(setsockopt(c, IPPROTO_TCP, TCP_CORK, &zero, sizeof(zero)) == 0);
    printf("cork: after uncork %s, outq %d\n", avail(s), outq(c));

    CHECK(setsockopt(c, IPPROTO_TCP, TCP_CORK, &one, sizeof(one)) == 0);
    CHECK(write(c, "fgh", 3) == 3);
    pause_ms(500);
    printf("cork: after the ceiling %s\n", avail(s));
    CHECK(write(c, "ij", 2) == 2);
    printf("cork: corked again %s\n", avail(s));
    CHECK(setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == 0);
    printf("cork: TCP_NODELAY pushes %s\n", avail(s));
    CHECK(setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &zero, sizeof(zero)) == 0);

    /* More than a segment: whole segments go, a partial tail waits (how Linux cuts
     * segments depends on its buffers, so only that is printed). */
    static char big[200000];
    CHECK(write(c, big, sizeof(big)) == (ssize_t)sizeof(big));
    size_t got = 0;
    for (;;) {
        ssize_t n = recv(s, big, sizeof(big), MSG_DONTWAIT);
        if (n <= 0)
            break;
        got += n;
    }
    printf("cork: big write: segments delivered %d, a tail held %d\n", got >= 60000,
           got < sizeof(big));
    CHECK(write(c, "k", 1) == 1);
    CHECK(shutdown(c, SHUT_WR) == 0);
    for (;;) {
        ssize_t n = recv(s, big, sizeof(big), MSG_DONTWAIT);
        if (n <= 0)
            break;
        got += n;
    }
    printf("cork: FIN pushes the tail: %d, then %s\n", got == sizeof(big) + 1, avail(s));
    close(c);
    close(s);

    s = pair(&c);
    CHECK(send(c, "x", 1, MSG_MORE) == 1);
    printf("msg_more: held %s\n", avail(s));
    CHECK(send(c, "y", 1, 0) == 1);
    printf("msg_more: then a plain send %s\n", avail(s));
    close(c);
    close(s);
}

static void window_clamp(void)
{
    int fd = socket(family, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    int vals[] = {1, 1151, 1153, 0, -5, 100000};
    for (unsigned i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        int v = -1;
        socklen_t len = sizeof(v);
        errno = 0;
        int r = setsockopt(fd, IPPROTO_TCP, TCP_WINDOW_CLAMP, &vals[i], sizeof(int));
        CHECK(getsockopt(fd, IPPROTO_TCP, TCP_WINDOW_CLAMP, &v, &len) == 0);
        printf("clamp %d: %s, reads %d\n", vals[i], r ? errname(errno) : "0", v);
    }
    close(fd);
    int c;
    int s = pair(&c);
    errno = 0;
    int r = setsockopt(s, IPPROTO_TCP, TCP_WINDOW_CLAMP, &zero, sizeof(zero));
    printf("clamp 0 connected: %s\n", r ? errname(errno) : "0");
    int v = 10, got = -1;
    socklen_t len = sizeof(got);
    CHECK(setsockopt(s, IPPROTO_TCP, TCP_WINDOW_CLAMP, &v, sizeof(v)) == 0);
    CHECK(getsockopt(s, IPPROTO_TCP, TCP_WINDOW_CLAMP, &got, &len) == 0);
    printf("clamp 10 connected reads %d\n", got);
    close(c);
    close(s);
}

static void shutdown_connecting(int how)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int l = listener(0, &ss, &len);
    int c1 = socket(family, SOCK_STREAM, 0);
    CHECK(c1 >= 0);
    CHECK(connect(c1, (struct sockaddr *)&ss, len) == 0);   /* fills the queue */
    int c2 = socket(family, SOCK_STREAM | SOCK_NONBLOCK, 0);
    CHECK(c2 >= 0);
    CHECK_ERR(connect(c2, (struct sockaddr *)&ss, len), EINPROGRESS);
    CHECK(shutdown(c2, how) == 0);
    struct pollfd p = {.fd = c2};
    int n = poll(&p, 1, 0);
    int err = -1;
    socklen_t el = sizeof(err);
    CHECK(getsockopt(c2, SOL_SOCKET, SO_ERROR, &err, &el) == 0);
    printf("shutdown(%d) while connecting: poll %d revents%s%s%s, SO_ERROR %s\n", how, n,
           p.revents & POLLHUP ? " HUP" : "", p.revents & POLLERR ? " ERR" : "",
           p.revents & POLLOUT ? " OUT" : "", errname(err));
    close(c2);
    close(c1);
    close(l);
}

static void passcred(void)
{
    int fd = socket(family, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    int v = -1;
    socklen_t len = sizeof(v);
    errno = 0;
    int r = getsockopt(fd, SOL_SOCKET, SO_PASSCRED, &v, &len);
    printf("SO_PASSCRED get: %s\n", r ? errname(errno) : "0");
    errno = 0;
    r = setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one));
    printf("SO_PASSCRED set: %s\n", r ? errname(errno) : "0");
    close(fd);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "6") == 0)
        family = AF_INET6;
    setvbuf(stdout, NULL, _IONBF, 0);
    cork();
    window_clamp();
    shutdown_connecting(SHUT_RD);
    shutdown_connecting(SHUT_WR);
    shutdown_connecting(SHUT_RDWR);
    passcred();
    ok();
    return 0;
}
