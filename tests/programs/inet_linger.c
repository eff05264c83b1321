/* SO_LINGER on TCP over loopback: {1, 0} resets the connection on close (the peer
 * sees ECONNRESET after the data it had); {1, N} makes close(2) wait until what was
 * sent is acknowledged, or N seconds; the option as getsockopt reads it back.
 * Prints what it sees (compared with Linux by the test; only lower bounds and very
 * loose upper bounds on times are printed) and "ok".  argv[1]: "4" or "6". */
#define _GNU_SOURCE
#include "check.h"
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>

static int family = AF_INET;

static void pair(int *c, int *s)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t len;
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof(*a);
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
        len = sizeof(*a);
    }
    int l = socket(family, SOCK_STREAM, 0);
    CHECK(l >= 0);
    CHECK(bind(l, (struct sockaddr *)&ss, len) == 0);
    CHECK(listen(l, 4) == 0);
    CHECK(getsockname(l, (struct sockaddr *)&ss, &len) == 0);
    *c = socket(family, SOCK_STREAM, 0);
    CHECK(*c >= 0);
    CHECK(connect(*c, (struct sockaddr *)&ss, len) == 0);
    *s = accept(l, NULL, NULL);
    CHECK(*s >= 0);
    close(l);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void set_linger(int fd, int onoff, int secs)
{
    struct linger l = {.l_onoff = onoff, .l_linger = secs};
    CHECK(setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l)) == 0);
}

static void show_linger(const char *what, int fd)
{
    struct linger l = {-1, -1};
    socklen_t len = sizeof(l);
    CHECK(getsockopt(fd, SOL_SOCKET, SO_LINGER, &l, &len) == 0);
    printf("%s: onoff %d linger %d len %u\n", what, l.l_onoff, l.l_linger, len);
}

/* Writes without blocking until the connection takes no more; returns the count. */
static long fill(int fd)
{
    static char chunk[65536];
    memset(chunk, 'z', sizeof(chunk));
    int fl = fcntl(fd, F_GETFL);
    CHECK(fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0);
    long total = 0;
    for (;;) {
        ssize_t n = send(fd, chunk, sizeof(chunk), MSG_NOSIGNAL);
        if (n < 0) {
            CHECK(errno == EAGAIN);
            break;
        }
        total += n;
    }
    CHECK(fcntl(fd, F_SETFL, fl) == 0);
    return total;
}

/* Reads to EOF; returns the count, or -errno. */
static long drain(int fd)
{
    static char buf[65536];
    long total = 0;
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n < 0)
            return -errno;
        if (n == 0)
            return total;
        total += n;
    }
}

struct reader {
    int fd;
    int delay_ms;
    long got;
};

static void *late_reader(void *arg)
{
    struct reader *r = arg;
    usleep(r->delay_ms * 1000);
    r->got = drain(r->fd);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc > 1 && argv[1][0] == '6')
        family = AF_INET6;
    int c, s, rc;

    /* The option itself. */
    pair(&c, &s);
    show_linger("default", c);
    set_linger(c, 1, 5);
    show_linger("set 1 5", c);
    set_linger(c, 0, 7);
    show_linger("set 0 7", c);
    struct linger small = {1, 3};
    errno = 0;
    rc = setsockopt(c, SOL_SOCKET, SO_LINGER, &small, 4);
    printf("short optlen: %d %s\n", rc, errno == EINVAL ? "EINVAL" : "");
    close(c);
    close(s);

    /* {1, 0}: a reset.  The peer reads what it had, then ECONNRESET, then EOF. */
    pair(&c, &s);
    CHECK(send(c, "hello", 5, 0) == 5);
    usleep(20000);
    set_linger(c, 1, 0);
    CHECK(close(c) == 0);
    usleep(20000);
    char buf[16];
    ssize_t n = recv(s, buf, sizeof(buf), 0);
    printf("linger 0: peer read %zd\n", n);
    errno = 0;
    n = recv(s, buf, sizeof(buf), 0);
    printf("linger 0: then %zd %s\n", n, errno == ECONNRESET ? "ECONNRESET" : strerror(errno));
    n = recv(s, buf, sizeof(buf), 0);
    printf("linger 0: then %zd\n", n);
    errno = 0;
    n = send(s, "x", 1, MSG_NOSIGNAL);
    printf("linger 0: send %zd %s\n", n, errno == EPIPE ? "EPIPE" : strerror(errno));
    close(s);

    /* {1, 2} with data the peer never reads: close waits the 2 s, returns 0, and the
     * connection goes on: the peer gets every byte, then EOF. */
    pair(&c, &s);
    long sent = fill(c);
    set_linger(c, 1, 2);
    double t0 = now();
    rc = close(c);
    double took = now() - t0;
    printf("linger 2, unacked data: close %d, waited >= 1.5 s: %s\n", rc,
           took >= 1.5 ? "yes" : "no");
    long got = drain(s);
    printf("linger 2: peer got all bytes: %s, then EOF\n", got == sent ? "yes" : "no");
    close(s);

    /* {1, 30} with a reader that starts after 1 s: close waits for it, not for 30 s. */
    pair(&c, &s);
    sent = fill(c);
    set_linger(c, 1, 30);
    struct reader r = {.fd = s, .delay_ms = 1000};
    pthread_t th;
    t0 = now();
    CHECK(pthread_create(&th, NULL, late_reader, &r) == 0);
    rc = close(c);
    took = now() - t0;
    printf("linger 30, late reader: close %d, waited >= 0.9 s: %s, returned before 20 s: %s\n",
           rc, took >= 0.9 ? "yes" : "no", took < 20 ? "yes" : "no");
    CHECK(pthread_join(th, NULL) == 0);
    printf("linger 30: reader got all bytes: %s\n", r.got == sent ? "yes" : "no");
    close(s);

    /* {1, 30} with everything acknowledged: close returns at once. */
    pair(&c, &s);
    CHECK(send(c, "abc", 3, 0) == 3);
    usleep(20000);
    set_linger(c, 1, 30);
    t0 = now();
    rc = close(c);
    took = now() - t0;
    printf("linger 30, all acked: close %d, returned before 20 s: %s\n", rc,
           took < 20 ? "yes" : "no");
    printf("linger 30: peer got %ld\n", drain(s));
    close(s);

    /* A linger on the accepted end, closing with nothing to send. */
    pair(&c, &s);
    set_linger(s, 1, 30);
    t0 = now();
    rc = close(s);
    printf("accepted end closes: %d, before 20 s: %s\n", rc, now() - t0 < 20 ? "yes" : "no");
    printf("client sees EOF: %zd\n", recv(c, buf, sizeof(buf), 0));
    close(c);
    printf("ok\n");
    return 0;
}
