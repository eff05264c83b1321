/* TCP urgent data (MSG_OOB) over loopback, as an application sees it: the urgent
 * byte taken out of the stream (or left in it with SO_OOBINLINE), SIOCATMARK,
 * FIONREAD stopping at the mark, POLLPRI, reads stopping at the mark, and the
 * EINVAL/ENOTCONN/EOPNOTSUPP cases.  Prints what it sees (compared with Linux by
 * the test) and "ok" at the end.  argv[1]: "4" or "6". */
#define _GNU_SOURCE
#include "check.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

static int family = AF_INET;

static socklen_t loaddr(struct sockaddr_storage *ss, int port)
{
    memset(ss, 0, sizeof(*ss));
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        return sizeof(*a);
    }
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    a->sin6_addr = in6addr_loopback;
    return sizeof(*a);
}

static int listener(void)
{
    struct sockaddr_storage ss;
    int s = socket(family, SOCK_STREAM, 0);
    CHECK(s >= 0);
    socklen_t len = loaddr(&ss, 0);
    CHECK(bind(s, (struct sockaddr *)&ss, len) == 0);
    CHECK(listen(s, 4) == 0);
    return s;
}

static void pair(int *c, int *s)
{
    int l = listener();
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    CHECK(getsockname(l, (struct sockaddr *)&ss, &len) == 0);
    *c = socket(family, SOCK_STREAM, 0);
    CHECK(*c >= 0);
    CHECK(connect(*c, (struct sockaddr *)&ss, len) == 0);
    *s = accept(l, NULL, NULL);
    CHECK(*s >= 0);
    close(l);
}

static int atmark(int fd)
{
    int v = -1;
    CHECK(ioctl(fd, SIOCATMARK, &v) == 0);
    return v;
}

static int inq(int fd)
{
    int v = -1;
    CHECK(ioctl(fd, FIONREAD, &v) == 0);
    return v;
}

/* Waits until `fd` has POLLPRI, then for the rest of what was sent (`total` bytes in
 * the queue counting the urgent byte) to be there too. */
static void wait_urgent(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLPRI};
    CHECK(poll(&p, 1, 10000) == 1);
    CHECK(p.revents & POLLPRI);
}

static const char *show_recv(int fd, int flags)
{
    static char out[256];
    char buf[64];
    errno = 0;
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, flags | MSG_DONTWAIT);
    if (n < 0) {
        snprintf(out, sizeof(out), "-1 %s", errno == EAGAIN ? "EAGAIN" : errno == EINVAL
                 ? "EINVAL" : errno == ENOTCONN ? "ENOTCONN" : errno == EOPNOTSUPP
                 ? "EOPNOTSUPP" : strerror(errno));
        return out;
    }
    buf[n] = 0;
    snprintf(out, sizeof(out), "%zd \"%s\"", n, buf);
    return out;
}

static int revents(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLPRI | POLLOUT};
    CHECK(poll(&p, 1, 0) >= 0);
    return p.revents & (POLLIN | POLLPRI);
}

int main(int argc, char **argv)
{
    if (argc > 1 && argv[1][0] == '6')
        family = AF_INET6;
    int c, s;

    /* 1. "12345", then "X" urgent, then "678". */
    pair(&c, &s);
    CHECK(send(c, "12345", 5, 0) == 5);
    CHECK(send(c, "X", 1, MSG_OOB) == 1);
    CHECK(send(c, "678", 3, 0) == 3);
    wait_urgent(s);
    while (revents(s) != (POLLIN | POLLPRI))
        usleep(1000);
    printf("1 atmark %d inq %d poll in%d pri%d\n", atmark(s), inq(s),
           !!(revents(s) & POLLIN), !!(revents(s) & POLLPRI));
    printf("1 recv %s\n", show_recv(s, 0));
    printf("1 atmark %d inq %d poll in%d pri%d\n", atmark(s), inq(s),
           !!(revents(s) & POLLIN), !!(revents(s) & POLLPRI));
    printf("1 peek oob %s\n", show_recv(s, MSG_OOB | MSG_PEEK));
    printf("1 oob %s\n", show_recv(s, MSG_OOB));
    printf("1 oob again %s\n", show_recv(s, MSG_OOB));
    printf("1 atmark %d poll pri%d\n", atmark(s), !!(revents(s) & POLLPRI));
    printf("1 recv %s\n", show_recv(s, 0));
    printf("1 atmark %d oob %s\n", atmark(s), show_recv(s, MSG_OOB));
    close(c);
    close(s);

    /* 2. The urgent byte read in line: recv(MSG_OOB) is EINVAL, reads stop at the mark. */
    pair(&c, &s);
    int one = 1;
    CHECK(setsockopt(s, SOL_SOCKET, SO_OOBINLINE, &one, sizeof(one)) == 0);
    CHECK(send(c, "ab", 2, 0) == 2);
    CHECK(send(c, "c", 1, MSG_OOB) == 1);
    CHECK(send(c, "de", 2, 0) == 2);
    while (inq(s) < 5)
        usleep(1000);
    printf("2 atmark %d inq %d oob %s\n", atmark(s), inq(s), show_recv(s, MSG_OOB));
    printf("2 recv %s\n", show_recv(s, 0));
    printf("2 atmark %d\n", atmark(s));
    printf("2 recv %s\n", show_recv(s, 0));
    printf("2 atmark %d\n", atmark(s));
    close(c);
    close(s);

    /* 3. A lone urgent byte, not read with MSG_OOB: a normal read steps over it and
     * finds nothing; the byte is gone. */
    pair(&c, &s);
    CHECK(send(c, "Z", 1, MSG_OOB) == 1);
    wait_urgent(s);
    printf("3 atmark %d inq %d poll in%d\n", atmark(s), inq(s), !!(revents(s) & POLLIN));
    printf("3 recv %s\n", show_recv(s, 0));
    printf("3 atmark %d oob %s\n", atmark(s), show_recv(s, MSG_OOB));
    /* A second urgent send after the first was stepped over. */
    CHECK(send(c, "pq", 2, MSG_OOB) == 2);
    wait_urgent(s);
    printf("3 recv %s\n", show_recv(s, 0));
    printf("3 oob %s\n", show_recv(s, MSG_OOB));
    printf("3 recv %s\n", show_recv(s, 0));
    /* Urgent data in a multi-byte send with MSG_OOB: only the last byte is urgent. */
    CHECK(send(c, "uvw", 3, MSG_OOB) == 3);
    wait_urgent(s);
    printf("3 oob %s\n", show_recv(s, MSG_OOB));
    printf("3 recv %s\n", show_recv(s, 0));
    /* The peer closes after urgent data: the byte is still there, then EOF. */
    CHECK(send(c, "k", 1, MSG_OOB) == 1);
    wait_urgent(s);
    close(c);
    usleep(10000);
    printf("3 oob %s\n", show_recv(s, MSG_OOB));
    printf("3 recv %s\n", show_recv(s, 0));
    printf("3 oob after eof %s\n", show_recv(s, MSG_OOB));
    close(s);

    /* 4. Errors. */
    pair(&c, &s);
    printf("4 no urgent data: %s\n", show_recv(s, MSG_OOB));
    close(c);
    close(s);
    int l = listener();
    printf("4 listener: %s\n", show_recv(l, MSG_OOB));
    close(l);
    int u = socket(family, SOCK_DGRAM, 0);
    CHECK(u >= 0);
    struct sockaddr_storage ss;
    socklen_t len = loaddr(&ss, 0);
    CHECK(bind(u, (struct sockaddr *)&ss, len) == 0);
    len = sizeof(ss);
    CHECK(getsockname(u, (struct sockaddr *)&ss, &len) == 0);
    errno = 0;
    ssize_t r = sendto(u, "x", 1, MSG_OOB, (struct sockaddr *)&ss, len);
    printf("4 udp send oob %zd %s\n", r, r < 0 && errno == EOPNOTSUPP ? "EOPNOTSUPP" : "");
    printf("4 udp recv oob %s\n", show_recv(u, MSG_OOB));
    close(u);
    printf("ok\n");
    return 0;
}
