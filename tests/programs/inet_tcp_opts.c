/* TCP options and edge states over loopback, as Linux has them:
 *   - TCP_CORK holds a partial segment (SIOCOUTQ counts it) until the uncork,
 *     TCP_NODELAY, a FIN, or the 200 ms ceiling; whole segments go at once;
 *     MSG_MORE holds a send the same way until a send without it;
 *   - TCP_WINDOW_CLAMP: raised to half the smallest receive buffer, 0 refused
 *     (EINVAL) once connected;
 *   - shutdown(2) of a socket still connecting (its SYN dropped by a full accept
 *     queue) closes it with ECONNRESET pending: poll gives POLLHUP | POLLERR;
 *   - SO_PASSCRED is not an option of inet sockets (Linux 6.16+: EOPNOTSUPP);
 *   - buffers: an autotuned send buffer grows once connected, a non-blocking write
 *     of three times it is partial, a receiver that does not read holds about its
 *     receive buffer, and a blocking write cut short by the peer's reset returns what
 *     it sent, the next write the error;
 *   - recvmsg's control messages: TCP_INQ (what is left; 1 at EOF) and
 *     SO_TIMESTAMP (the last data's arrival) in that order.
 * Prints what it sees (compared with Linux by the test) and "ok".  argv[1]: "4"/"6". */
#define _GNU_SOURCE
#include "check.h"
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
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
    case EPIPE: return "EPIPE";
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

static int getint(int fd, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof(v);
    CHECK(getsockopt(fd, level, name, &v, &len) == 0);
    return v;
}

struct blocked_write {
    int fd;
    size_t size;
    ssize_t first, second;
    int err;
};

static void *writer(void *arg)
{
    struct blocked_write *w = arg;
    char *buf = calloc(1, w->size);
    CHECK(buf != NULL);
    w->first = send(w->fd, buf, w->size, 0);
    errno = 0;
    w->second = send(w->fd, buf, w->size, 0);
    w->err = errno;
    free(buf);
    return NULL;
}

static void buffers(void)
{
    int fd = socket(family, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    int before = getint(fd, SOL_SOCKET, SO_SNDBUF);
    printf("sndbuf before connect %d\n", before);
    close(fd);
    int c;
    int s = pair(&c);
    int after = getint(c, SOL_SOCKET, SO_SNDBUF);
    printf("sndbuf grows once connected: %d, accepted end too: %d\n", after > before,
           getint(s, SOL_SOCKET, SO_SNDBUF) > before);
    size_t size = 3 * (size_t)after;
    char *buf = calloc(1, size);
    CHECK(buf != NULL);
    ssize_t n = send(c, buf, size, MSG_DONTWAIT);
    printf("non-blocking send of 3 x sndbuf: partial %d\n", n > 0 && (size_t)n < size);
    free(buf);
    close(c);
    close(s);

    /* A peer that never reads: a sender with a small buffer soon gets EAGAIN. */
    s = pair(&c);
    int v = 8192;
    CHECK(setsockopt(c, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v)) == 0);
    static char chunk[4096];
    size_t total = 0;
    while (send(c, chunk, sizeof(chunk), MSG_DONTWAIT) > 0)
        total += sizeof(chunk);
    printf("unread peer: EAGAIN after more than 64 KiB %d, less than 512 KiB %d\n",
           total > 65536, total < 524288);
    close(c);
    close(s);

    /* A blocking send the peer's reset cuts short: the reset is the next send's error. */
    s = pair(&c);
    v = 65536;
    CHECK(setsockopt(c, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v)) == 0);
    struct blocked_write w = {.fd = c, .size = 1 << 20};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, writer, &w) == 0);
    pause_ms(300);
    close(s);                   /* unread data: a reset */
    CHECK(pthread_join(th, NULL) == 0);
    printf("reset during a blocking send: partial %d, next send %zd %s\n",
           w.first > 0 && w.first < (ssize_t)w.size, w.second, errname(w.err));
    close(c);
}

static void show_cmsgs(const char *what, int fd, size_t n)
{
    char buf[1024];
    union {
        char b[256];
        struct cmsghdr align;
    } control;
    struct iovec iov = {.iov_base = buf, .iov_len = n};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.b,
                         .msg_controllen = sizeof(control.b)};
    ssize_t r = recvmsg(fd, &msg, 0);
    printf("%s: recvmsg %zd flags %#x:", what, r, msg.msg_flags);
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_TCP && c->cmsg_type == TCP_INQ) {
            int inq;
            memcpy(&inq, CMSG_DATA(c), sizeof(inq));
            printf(" TCP_INQ %d (len %zu)", inq, (size_t)c->cmsg_len);
        } else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_TIMESTAMP) {
            struct timeval tv, now;
            memcpy(&tv, CMSG_DATA(c), sizeof(tv));
            gettimeofday(&now, NULL);
            long d = now.tv_sec - tv.tv_sec;
            printf(" SO_TIMESTAMP within 10 s of now %d", d >= 0 && d < 10);
        } else {
            printf(" level %d type %d", c->cmsg_level, c->cmsg_type);
        }
    }
    printf("\n");
}

static void control_messages(void)
{
    int c;
    int s = pair(&c);
    char buf[1024] = {0};
    CHECK(setsockopt(s, SOL_TCP, TCP_INQ, &one, sizeof(one)) == 0);
    printf("TCP_INQ reads %d\n", getint(s, SOL_TCP, TCP_INQ));
    CHECK(write(c, buf, sizeof(buf)) == (ssize_t)sizeof(buf));
    pause_ms(50);
    show_cmsgs("inq", s, 512);
    show_cmsgs("inq", s, 512);
    /* Linux turns receive timestamps on in a work queue: give it time. */
    CHECK(setsockopt(s, SOL_SOCKET, SO_TIMESTAMP, &one, sizeof(one)) == 0);
    pause_ms(200);
    CHECK(write(c, buf, 100) == 100);
    pause_ms(50);
    show_cmsgs("inq+timestamp", s, 60);
    CHECK(shutdown(c, SHUT_WR) == 0);
    show_cmsgs("inq+timestamp", s, 60);
    show_cmsgs("inq+timestamp at EOF", s, 60);
    close(c);
    close(s);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "6") == 0)
        family = AF_INET6;
    setvbuf(stdout, NULL, _IONBF, 0);
    signal(SIGPIPE, SIG_IGN);
    cork();
    window_clamp();
    shutdown_connecting(SHUT_RD);
    shutdown_connecting(SHUT_WR);
    shutdown_connecting(SHUT_RDWR);
    passcred();
    buffers();
    control_messages();
    ok();
    return 0;
}
