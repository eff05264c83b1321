/* AF_INET/AF_INET6 sockets over loopback: the socket API as applications use
 * it, checked against what Linux does.  Self-checking: prints "ok".
 * Ports come from bind(port 0), so runs never collide. */
#define _GNU_SOURCE
#include "check.h"
#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

static volatile sig_atomic_t sigpipes;
static void on_sigpipe(int sig) { (void)sig; sigpipes++; }

static struct sockaddr_in lo4(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

static int port_of(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    CHECK(getsockname(fd, (struct sockaddr *)&ss, &len) == 0);
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

/* A listener on 127.0.0.1:0 with the given backlog. */
static int listener(int backlog, int reuse)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(s >= 0);
    if (reuse)
        CHECK(setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &reuse, sizeof(reuse)) == 0);
    struct sockaddr_in a = lo4(0);
    CHECK(bind(s, (struct sockaddr *)&a, sizeof(a)) == 0);
    CHECK(listen(s, backlog) == 0);
    return s;
}

static int connect_to(int port)
{
    int c = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(c >= 0);
    struct sockaddr_in a = lo4(port);
    CHECK(connect(c, (struct sockaddr *)&a, sizeof(a)) == 0);
    return c;
}

/* A connected pair (client, server side) through a fresh listener. */
static void pair(int *c, int *s)
{
    int l = listener(4, 0);
    *c = connect_to(port_of(l));
    *s = accept(l, NULL, NULL);
    CHECK(*s >= 0);
    close(l);
}

static void test_creation(void)
{
    int sv[2];
    CHECK_ERR(socketpair(AF_INET, SOCK_STREAM, 0, sv), EOPNOTSUPP);
    CHECK_ERR(socket(AF_INET, SOCK_STREAM, IPPROTO_UDP), EPROTONOSUPPORT);
    CHECK_ERR(socket(AF_INET, SOCK_SEQPACKET, 0), ESOCKTNOSUPPORT);
    CHECK_ERR(socket(AF_INET, SOCK_STREAM, -1), EINVAL);
    int s = socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK(s >= 0);
    CHECK(fcntl(s, F_GETFL) & O_NONBLOCK);
    CHECK(fcntl(s, F_GETFD) & FD_CLOEXEC);
    int v;
    socklen_t len = sizeof(v);
    CHECK(getsockopt(s, SOL_SOCKET, SO_TYPE, &v, &len) == 0 && v == SOCK_DGRAM);
    CHECK(getsockopt(s, SOL_SOCKET, SO_DOMAIN, &v, &len) == 0 && v == AF_INET6);
    CHECK(getsockopt(s, SOL_SOCKET, SO_PROTOCOL, &v, &len) == 0 && v == IPPROTO_UDP);
    close(s);
}

static void test_bind(void)
{
    int a = socket(AF_INET, SOCK_STREAM, 0), b = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = lo4(0);
    CHECK_ERR(bind(a, (struct sockaddr *)&sa, sizeof(sa) - 1), EINVAL);
    struct sockaddr_in other = {.sin_family = AF_INET};
    other.sin_addr.s_addr = inet_addr("192.0.2.1");   /* not an address of this host */
    CHECK_ERR(bind(a, (struct sockaddr *)&other, sizeof(other)), EADDRNOTAVAIL);
    CHECK(bind(a, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    int port = port_of(a);
    CHECK(port >= 1024);
    CHECK_ERR(bind(a, (struct sockaddr *)&sa, sizeof(sa)), EINVAL);     /* already bound */
    sa = lo4(port);
    CHECK_ERR(bind(b, (struct sockaddr *)&sa, sizeof(sa)), EADDRINUSE);
    /* The wildcard overlaps 127.0.0.1. */
    struct sockaddr_in any = {.sin_family = AF_INET, .sin_port = htons(port)};
    CHECK_ERR(bind(b, (struct sockaddr *)&any, sizeof(any)), EADDRINUSE);
    /* Both SO_REUSEADDR and nobody listening: allowed, but only one may listen. */
    int one = 1;
    int c = socket(AF_INET, SOCK_STREAM, 0), d = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(setsockopt(c, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0);
    CHECK(setsockopt(d, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0);
    sa = lo4(0);
    CHECK(bind(c, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    sa = lo4(port_of(c));
    CHECK(bind(d, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    CHECK(listen(c, 1) == 0);
    CHECK_ERR(listen(d, 1), EADDRINUSE);
    int e = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(setsockopt(e, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0);
    CHECK_ERR(bind(e, (struct sockaddr *)&sa, sizeof(sa)), EADDRINUSE);  /* c listens */
    /* SO_REUSEPORT on both: two listeners on one port. */
    int f = socket(AF_INET, SOCK_STREAM, 0), g = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(setsockopt(f, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == 0);
    CHECK(setsockopt(g, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == 0);
    sa = lo4(0);
    CHECK(bind(f, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    sa = lo4(port_of(f));
    CHECK(bind(g, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    CHECK(listen(f, 1) == 0 && listen(g, 1) == 0);
    /* UDP and TCP ports are separate. */
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    sa = lo4(port);
    CHECK(bind(u, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    /* A closed socket gives its port back. */
    close(a);
    CHECK(bind(b, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    close(b), close(c), close(d), close(e), close(f), close(g), close(u);
}

static void test_connect_errors(void)
{
    /* ECONNREFUSED: a port bound but not listening. */
    int b = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = lo4(0);
    CHECK(bind(b, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    sa = lo4(port_of(b));
    int c = socket(AF_INET, SOCK_STREAM, 0);
    CHECK_ERR(connect(c, (struct sockaddr *)&sa, sizeof(sa)), ECONNREFUSED);
    /* Nothing pending after the failure was reported; the socket may connect again. */
    int v = -1;
    socklen_t len = sizeof(v);
    CHECK(getsockopt(c, SOL_SOCKET, SO_ERROR, &v, &len) == 0 && v == 0);
    CHECK_ERR(getpeername(c, (struct sockaddr *)&sa, &len), ENOTCONN);
    CHECK(listen(b, 1) == 0);
    CHECK(connect(c, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    CHECK_ERR(connect(c, (struct sockaddr *)&sa, sizeof(sa)), EISCONN);
    CHECK_ERR(connect(b, (struct sockaddr *)&sa, sizeof(sa)), EISCONN);  /* listening */
    /* Non-blocking connect to nobody: EINPROGRESS, then SO_ERROR says refused. */
    int n = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int b2 = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sb = lo4(0);
    CHECK(bind(b2, (struct sockaddr *)&sb, sizeof(sb)) == 0);
    sb = lo4(port_of(b2));
    int r = connect(n, (struct sockaddr *)&sb, sizeof(sb));
    CHECK(r == -1 && (errno == EINPROGRESS || errno == ECONNREFUSED));
    struct pollfd p = {.fd = n, .events = POLLOUT};
    CHECK(poll(&p, 1, 5000) == 1);
    CHECK(p.revents & (POLLERR | POLLHUP));
    if (errno == EINPROGRESS) {
        CHECK(getsockopt(n, SOL_SOCKET, SO_ERROR, &v, &len) == 0 && v == ECONNREFUSED);
    }
    /* Unreachable and malformed destinations. */
    struct sockaddr_in far = {.sin_family = AF_INET, .sin_port = htons(80)};
    far.sin_addr.s_addr = inet_addr("192.0.2.1");
    int f = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in6 v6 = {.sin6_family = AF_INET6};
    CHECK_ERR(connect(f, (struct sockaddr *)&v6, sizeof(struct sockaddr_in)), EAFNOSUPPORT);
    CHECK_ERR(connect(f, (struct sockaddr *)&sa, 4), EINVAL);
    (void)far;
    close(b), close(c), close(n), close(b2), close(f);
}

static void test_nonblocking_connect(void)
{
    int l = listener(4, 0);
    int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in sa = lo4(port_of(l));
    int r = connect(c, (struct sockaddr *)&sa, sizeof(sa));
    CHECK(r == 0 || errno == EINPROGRESS);
    struct pollfd p = {.fd = c, .events = POLLOUT};
    CHECK(poll(&p, 1, 5000) == 1 && (p.revents & POLLOUT) && !(p.revents & POLLERR));
    int v = -1;
    socklen_t len = sizeof(v);
    CHECK(getsockopt(c, SOL_SOCKET, SO_ERROR, &v, &len) == 0 && v == 0);
    /* Linux: the call after EINPROGRESS that finds the connection made returns 0. */
    r = connect(c, (struct sockaddr *)&sa, sizeof(sa));
    CHECK(r == 0 || errno == EISCONN);
    CHECK_ERR(connect(c, (struct sockaddr *)&sa, sizeof(sa)), EISCONN);
    int s = accept4(l, NULL, NULL, SOCK_NONBLOCK);
    CHECK(s >= 0 && (fcntl(s, F_GETFL) & O_NONBLOCK));
    close(c), close(s), close(l);
}

static void test_accept_queue(void)
{
    /* backlog 1: two connections complete; the third one's SYN is dropped and it
     * stays in progress until accept makes room. */
    int l = listener(1, 0);
    struct sockaddr_in sa = lo4(port_of(l));
    int c[3];
    for (int i = 0; i < 2; i++)
        c[i] = connect_to(port_of(l));
    c[2] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    CHECK_ERR(connect(c[2], (struct sockaddr *)&sa, sizeof(sa)), EINPROGRESS);
    struct pollfd p = {.fd = c[2], .events = POLLOUT};
    CHECK(poll(&p, 1, 300) == 0);             /* still in SYN_SENT */
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    CHECK(getsockopt(c[2], IPPROTO_TCP, TCP_INFO, &ti, &len) == 0);
    CHECK(ti.tcpi_state == TCP_SYN_SENT);
    struct sockaddr_in peer;
    len = sizeof(peer);
    int s0 = accept(l, (struct sockaddr *)&peer, &len);
    CHECK(s0 >= 0 && len == sizeof(peer) && peer.sin_port == htons(port_of(c[0])));
    CHECK(peer.sin_addr.s_addr == htonl(INADDR_LOOPBACK));
    int s1 = accept(l, NULL, NULL);
    CHECK(s1 >= 0);
    /* A listener closed with queued connections resets them. */
    int s2 = -1;
    for (int i = 0; i < 40 && s2 < 0; i++) {     /* Linux retransmits the SYN after 1 s */
        struct pollfd q = {.fd = l, .events = POLLIN};
        if (poll(&q, 1, 100) == 1)
            s2 = accept(l, NULL, NULL);
    }
    CHECK(s2 >= 0);
    close(s0), close(s1), close(s2);
    int l2 = listener(4, 0);
    int d = connect_to(port_of(l2));
    close(l2);
    char b;
    CHECK_ERR(recv(d, &b, 1, 0), ECONNRESET);
    CHECK(recv(d, &b, 1, 0) == 0);
    for (int i = 0; i < 3; i++)
        close(c[i]);
    close(d), close(l);
}

static void test_data(void)
{
    int c, s;
    pair(&c, &s);
    CHECK(send(c, "hello world", 11, 0) == 11);
    char buf[64];
    /* MSG_PEEK leaves the data; FIONREAD counts it. */
    int n = 0;
    CHECK(ioctl(s, FIONREAD, &n) == 0 && n == 11);
    CHECK(recv(s, buf, 5, MSG_PEEK) == 5 && memcmp(buf, "hello", 5) == 0);
    CHECK(recv(s, buf, 5, 0) == 5 && memcmp(buf, "hello", 5) == 0);
    CHECK(recv(s, buf, sizeof(buf), MSG_PEEK) == 6);
    CHECK(recv(s, buf, sizeof(buf), 0) == 6 && memcmp(buf, " world", 6) == 0);
    CHECK_ERR(recv(s, buf, sizeof(buf), MSG_DONTWAIT), EAGAIN);
    /* MSG_WAITALL gathers across sends (the child sends in two parts). */
    pid_t pid = fork();
    if (pid == 0) {
        CHECK(send(c, "abc", 3, 0) == 3);
        usleep(50000);
        CHECK(send(c, "defgh", 5, 0) == 5);
        _exit(0);
    }
    CHECK(recv(s, buf, 8, MSG_WAITALL) == 8 && memcmp(buf, "abcdefgh", 8) == 0);
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && st == 0);
    /* MSG_TRUNC on TCP discards without copying. */
    CHECK(send(c, "xyz", 3, 0) == 3);
    CHECK(recv(s, buf, 2, MSG_TRUNC) == 2);
    CHECK(recv(s, buf, 5, 0) == 1 && buf[0] == 'z');
    /* sendmsg/recvmsg with several iovecs; recvmmsg on a stream. */
    struct iovec iov[2] = {{"12", 2}, {"345", 3}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
    CHECK(sendmsg(c, &mh, 0) == 5);
    char a[2], b[8];
    struct iovec riov[2] = {{a, 2}, {b, 8}};
    struct msghdr rh = {.msg_iov = riov, .msg_iovlen = 2};
    CHECK(recvmsg(s, &rh, 0) == 5 && memcmp(a, "12", 2) == 0 && memcmp(b, "345", 3) == 0);
    CHECK(rh.msg_flags == 0);
    /* read/write work on sockets too. */
    CHECK(write(s, "back", 4) == 4);
    CHECK(read(c, buf, sizeof(buf)) == 4 && memcmp(buf, "back", 4) == 0);
    close(c), close(s);
}

static void test_half_close(void)
{
    int c, s;
    pair(&c, &s);
    CHECK(send(c, "last words", 10, 0) == 10);
    CHECK(shutdown(c, SHUT_WR) == 0);
    char buf[32];
    struct pollfd p = {.fd = s, .events = POLLIN | POLLRDHUP};
    CHECK(poll(&p, 1, 5000) == 1 && (p.revents & POLLIN));
    CHECK(recv(s, buf, sizeof(buf), MSG_WAITALL) == 10);
    CHECK(poll(&p, 1, 0) == 1 && (p.revents & POLLRDHUP));
    CHECK(recv(s, buf, sizeof(buf), 0) == 0);               /* EOF */
    CHECK(recv(s, buf, sizeof(buf), 0) == 0);
    /* The other direction still works. */
    CHECK(send(s, "reply", 5, 0) == 5);
    CHECK(recv(c, buf, sizeof(buf), 0) == 5);
    /* Writing after SHUT_WR: EPIPE and SIGPIPE (not with MSG_NOSIGNAL). */
    sigpipes = 0;
    CHECK_ERR(send(c, "x", 1, 0), EPIPE);
    CHECK(sigpipes == 1);
    CHECK_ERR(send(c, "x", 1, MSG_NOSIGNAL), EPIPE);
    CHECK(sigpipes == 1);
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    CHECK(getsockopt(c, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 && ti.tcpi_state == TCP_FIN_WAIT2);
    CHECK(getsockopt(s, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 && ti.tcpi_state == TCP_CLOSE_WAIT);
    CHECK(shutdown(s, SHUT_WR) == 0);
    CHECK(recv(c, buf, sizeof(buf), 0) == 0);
    CHECK(getsockopt(s, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0);
    CHECK(ti.tcpi_state == TCP_CLOSE || ti.tcpi_state == TCP_LAST_ACK);
    p.fd = c;
    p.events = POLLIN | POLLOUT;
    CHECK(poll(&p, 1, 1000) == 1 && (p.revents & POLLHUP));
    int unconnected = socket(AF_INET, SOCK_STREAM, 0);
    CHECK_ERR(shutdown(unconnected, SHUT_RDWR), ENOTCONN);
    CHECK_ERR(shutdown(c, 7), EINVAL);
    close(c), close(s), close(unconnected);
}

static void test_reset(void)
{
    /* close() with unread data sends RST: the peer gets ECONNRESET, then EOF. */
    int c, s;
    pair(&c, &s);
    CHECK(send(c, "unread", 6, 0) == 6);
    CHECK(send(s, "queued", 6, 0) == 6);
    usleep(10000);
    close(s);
    char buf[16];
    struct pollfd p = {.fd = c, .events = POLLIN};
    CHECK(poll(&p, 1, 5000) == 1 && (p.revents & (POLLERR | POLLHUP)));
    CHECK(recv(c, buf, sizeof(buf), 0) == 6);      /* data that arrived first is kept */
    CHECK_ERR(recv(c, buf, sizeof(buf), 0), ECONNRESET);
    CHECK(recv(c, buf, sizeof(buf), 0) == 0);
    sigpipes = 0;
    CHECK_ERR(send(c, "x", 1, 0), EPIPE);
    CHECK(sigpipes == 1);
    close(c);
    /* SO_LINGER {1, 0}: close() aborts. */
    pair(&c, &s);
    struct linger lg = {1, 0};
    CHECK(setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) == 0);
    close(s);
    CHECK_ERR(recv(c, buf, sizeof(buf), 0), ECONNRESET);
    close(c);
    /* Writing to a peer that closed: the first write goes, the reset answers it, the
     * second write gets EPIPE and SIGPIPE. */
    pair(&c, &s);
    close(c);
    CHECK(recv(s, buf, sizeof(buf), 0) == 0);
    CHECK(send(s, "a", 1, 0) == 1);
    usleep(20000);
    sigpipes = 0;
    CHECK_ERR(send(s, "b", 1, 0), EPIPE);
    CHECK(sigpipes == 1);
    close(s);
}

static void test_time_wait(void)
{
    /* The side that closes first holds the port in TIME_WAIT. */
    int l = listener(4, 0);
    int port = port_of(l);
    int c = connect_to(port);
    int s = accept(l, NULL, NULL);
    CHECK(s >= 0);
    close(l);
    close(s);                                   /* server closes first: TIME_WAIT there */
    char b;
    CHECK(recv(c, &b, 1, 0) == 0);
    close(c);
    int again = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = lo4(port);
    CHECK_ERR(bind(again, (struct sockaddr *)&sa, sizeof(sa)), EADDRINUSE);
    close(again);
    /* With SO_REUSEADDR on both the old and the new socket, it binds. */
    l = listener(4, 1);
    port = port_of(l);
    c = connect_to(port);
    s = accept(l, NULL, NULL);
    close(l);
    close(s);
    CHECK(recv(c, &b, 1, 0) == 0);
    close(c);
    again = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    CHECK(setsockopt(again, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0);
    sa = lo4(port);
    CHECK(bind(again, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    CHECK(listen(again, 1) == 0);
    close(again);
}

static void test_options(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    int v;
    socklen_t len = sizeof(v);
    int one = 1;
    CHECK(setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == 0);
    CHECK(getsockopt(s, IPPROTO_TCP, TCP_NODELAY, &v, &len) == 0 && v == 1);
    CHECK(setsockopt(s, IPPROTO_TCP, TCP_CORK, &one, sizeof(one)) == 0);
    CHECK(getsockopt(s, IPPROTO_TCP, TCP_CORK, &v, &len) == 0 && v == 1);
    CHECK(getsockopt(s, IPPROTO_TCP, TCP_KEEPIDLE, &v, &len) == 0 && v == 7200);
    CHECK(getsockopt(s, IPPROTO_TCP, TCP_KEEPINTVL, &v, &len) == 0 && v == 75);
    CHECK(getsockopt(s, IPPROTO_TCP, TCP_KEEPCNT, &v, &len) == 0 && v == 9);
    v = 30;
    CHECK(setsockopt(s, IPPROTO_TCP, TCP_KEEPIDLE, &v, sizeof(v)) == 0);
    CHECK(getsockopt(s, IPPROTO_TCP, TCP_KEEPIDLE, &v, &len) == 0 && v == 30);
    v = 0;
    CHECK_ERR(setsockopt(s, IPPROTO_TCP, TCP_KEEPIDLE, &v, sizeof(v)), EINVAL);
    v = 200;
    CHECK_ERR(setsockopt(s, IPPROTO_TCP, TCP_KEEPCNT, &v, sizeof(v)), EINVAL);
    CHECK(setsockopt(s, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)) == 0);
    CHECK(getsockopt(s, SOL_SOCKET, SO_KEEPALIVE, &v, &len) == 0 && v == 1);
    CHECK(getsockopt(s, SOL_SOCKET, SO_SNDBUF, &v, &len) == 0 && v > 0);
    v = 8192;
    CHECK(setsockopt(s, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v)) == 0);
    CHECK(getsockopt(s, SOL_SOCKET, SO_RCVBUF, &v, &len) == 0 && v == 16384);
    struct timeval tv = {1, 500000}, tv2;
    CHECK(setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0);
    len = sizeof(tv2);
    CHECK(getsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv2, &len) == 0);
    CHECK(tv2.tv_sec == 1 && tv2.tv_usec == 500000);
    struct linger lg = {1, 5}, lg2;
    CHECK(setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) == 0);
    len = sizeof(lg2);
    CHECK(getsockopt(s, SOL_SOCKET, SO_LINGER, &lg2, &len) == 0 && lg2.l_onoff && lg2.l_linger == 5);
    len = sizeof(v);
    CHECK(getsockopt(s, IPPROTO_IP, IP_TTL, &v, &len) == 0 && v == 64);
    v = 0;
    CHECK_ERR(setsockopt(s, IPPROTO_IP, IP_TTL, &v, sizeof(v)), EINVAL);
    v = 32;
    CHECK(setsockopt(s, IPPROTO_IP, IP_TTL, &v, sizeof(v)) == 0);
    CHECK(getsockopt(s, IPPROTO_IP, IP_TTL, &v, &len) == 0 && v == 32);
    v = 0x10;
    CHECK(setsockopt(s, IPPROTO_IP, IP_TOS, &v, sizeof(v)) == 0);
    CHECK(getsockopt(s, IPPROTO_IP, IP_TOS, &v, &len) == 0 && v == 0x10);
    CHECK_ERR(getsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &v, &len), EOPNOTSUPP);
    CHECK_ERR(getsockopt(s, IPPROTO_TCP, 9999, &v, &len), ENOPROTOOPT);
    CHECK(getsockopt(s, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) == 0 && v == 0);
    char cc[16] = {0};
    len = sizeof(cc);
    CHECK(getsockopt(s, IPPROTO_TCP, TCP_CONGESTION, cc, &len) == 0 && cc[0]);
    v = 1;
    CHECK(setsockopt(s, SOL_SOCKET, SO_BROADCAST, &v, sizeof(v)) == 0);
    CHECK(getsockopt(s, SOL_SOCKET, SO_BROADCAST, &v, &len) == 0 && v == 1);
    close(s);
    /* IPV6_V6ONLY: settable before bind only. */
    int s6 = socket(AF_INET6, SOCK_STREAM, 0);
    len = sizeof(v);
    CHECK(getsockopt(s6, IPPROTO_IPV6, IPV6_V6ONLY, &v, &len) == 0 && v == 0);
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    CHECK(bind(s6, (struct sockaddr *)&a6, sizeof(a6)) == 0);
    v = 1;
    CHECK_ERR(setsockopt(s6, IPPROTO_IPV6, IPV6_V6ONLY, &v, sizeof(v)), EINVAL);
    CHECK(getsockopt(s6, IPPROTO_IPV6, IPV6_UNICAST_HOPS, &v, &len) == 0 && v == 64);
    close(s6);
}

static void test_ioctls(void)
{
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct ifreq ifr = {0};
    strcpy(ifr.ifr_name, "lo");
    CHECK(ioctl(s, SIOCGIFINDEX, &ifr) == 0 && ifr.ifr_ifindex == 1);
    CHECK(ioctl(s, SIOCGIFFLAGS, &ifr) == 0);
    CHECK((ifr.ifr_flags & (IFF_UP | IFF_LOOPBACK)) == (IFF_UP | IFF_LOOPBACK));
    CHECK(ioctl(s, SIOCGIFMTU, &ifr) == 0 && ifr.ifr_mtu == 65536);
    CHECK(ioctl(s, SIOCGIFADDR, &ifr) == 0);
    CHECK(((struct sockaddr_in *)&ifr.ifr_addr)->sin_addr.s_addr == htonl(INADDR_LOOPBACK));
    CHECK(ioctl(s, SIOCGIFNETMASK, &ifr) == 0);
    CHECK(((struct sockaddr_in *)&ifr.ifr_netmask)->sin_addr.s_addr == htonl(0xFF000000));
    struct ifreq byidx = {.ifr_ifindex = 1};
    CHECK(ioctl(s, SIOCGIFNAME, &byidx) == 0 && strcmp(byidx.ifr_name, "lo") == 0);
    strcpy(ifr.ifr_name, "nosuchif0");
    CHECK_ERR(ioctl(s, SIOCGIFINDEX, &ifr), ENODEV);
    CHECK(if_nametoindex("lo") == 1);
    close(s);
}

static void test_udp(void)
{
    int a = socket(AF_INET, SOCK_DGRAM, 0), b = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sa = lo4(0);
    CHECK(bind(a, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    sa = lo4(port_of(a));
    CHECK(sendto(b, "0123456789", 10, 0, (struct sockaddr *)&sa, sizeof(sa)) == 10);
    CHECK(sendto(b, "second", 6, 0, (struct sockaddr *)&sa, sizeof(sa)) == 6);
    int n = 0;
    CHECK(ioctl(a, FIONREAD, &n) == 0 && n == 10);      /* the first datagram's size */
    char buf[32];
    struct sockaddr_in from;
    socklen_t len = sizeof(from);
    /* Truncation: the rest of the datagram is lost; MSG_TRUNC reports its real size. */
    CHECK(recvfrom(a, buf, 4, MSG_PEEK, (struct sockaddr *)&from, &len) == 4);
    CHECK(recvfrom(a, buf, 4, MSG_TRUNC, (struct sockaddr *)&from, &len) == 10);
    CHECK(memcmp(buf, "0123", 4) == 0 && from.sin_port == htons(port_of(b)));
    struct iovec iov = {buf, 3};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    CHECK(recvmsg(a, &mh, 0) == 3 && (mh.msg_flags & MSG_TRUNC));
    CHECK_ERR(recv(a, buf, sizeof(buf), MSG_DONTWAIT), EAGAIN);
    /* Empty datagrams exist. */
    CHECK(sendto(b, "", 0, 0, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    CHECK(recv(a, buf, sizeof(buf), 0) == 0);
    /* Connected sockets; ECONNREFUSED from the ICMP error of a closed port. */
    int c = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in gone = lo4(0);
    int tmp = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK(bind(tmp, (struct sockaddr *)&gone, sizeof(gone)) == 0);
    gone = lo4(port_of(tmp));
    close(tmp);
    CHECK(connect(c, (struct sockaddr *)&gone, sizeof(gone)) == 0);
    CHECK(send(c, "x", 1, 0) == 1);
    usleep(10000);
    CHECK_ERR(recv(c, buf, sizeof(buf), MSG_DONTWAIT), ECONNREFUSED);
    CHECK_ERR(send(a, "x", 1, 0), EDESTADDRREQ);
    CHECK(connect(c, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    CHECK(send(c, "via connect", 11, 0) == 11);
    CHECK(recv(a, buf, sizeof(buf), 0) == 11);
    struct sockaddr_in un = {.sin_family = AF_UNSPEC};
    CHECK(connect(c, (struct sockaddr *)&un, sizeof(un)) == 0);
    CHECK_ERR(send(c, "x", 1, 0), EDESTADDRREQ);
    /* Too large for IPv4. */
    static char big[70000];
    CHECK_ERR(sendto(b, big, sizeof(big), 0, (struct sockaddr *)&sa, sizeof(sa)), EMSGSIZE);
    /* sendmmsg / recvmmsg */
    struct mmsghdr mm[3];
    struct iovec iv[3] = {{"one", 3}, {"two", 3}, {"three", 5}};
    memset(mm, 0, sizeof(mm));
    for (int i = 0; i < 3; i++) {
        mm[i].msg_hdr.msg_iov = &iv[i];
        mm[i].msg_hdr.msg_iovlen = 1;
        mm[i].msg_hdr.msg_name = &sa;
        mm[i].msg_hdr.msg_namelen = sizeof(sa);
    }
    CHECK(sendmmsg(b, mm, 3, 0) == 3 && mm[2].msg_len == 5);
    char rb[3][8];
    struct iovec ri[3] = {{rb[0], 8}, {rb[1], 8}, {rb[2], 8}};
    memset(mm, 0, sizeof(mm));
    for (int i = 0; i < 3; i++) {
        mm[i].msg_hdr.msg_iov = &ri[i];
        mm[i].msg_hdr.msg_iovlen = 1;
    }
    CHECK(recvmmsg(a, mm, 3, MSG_WAITFORONE, NULL) == 3);
    CHECK(mm[1].msg_len == 3 && memcmp(rb[2], "three", 5) == 0);
    /* IP_RECVTTL and IP_PKTINFO control messages. */
    int one = 1;
    CHECK(setsockopt(a, IPPROTO_IP, IP_RECVTTL, &one, sizeof(one)) == 0);
    CHECK(setsockopt(a, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one)) == 0);
    CHECK(sendto(b, "cm", 2, 0, (struct sockaddr *)&sa, sizeof(sa)) == 2);
    char cbuf[256];
    iov.iov_base = buf;
    iov.iov_len = sizeof(buf);
    struct msghdr ch = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                        .msg_controllen = sizeof(cbuf)};
    CHECK(recvmsg(a, &ch, 0) == 2);
    int ttl = -1, ifindex = -1;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&ch); cm; cm = CMSG_NXTHDR(&ch, cm)) {
        if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_TTL)
            memcpy(&ttl, CMSG_DATA(cm), sizeof(ttl));
        if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO)
            ifindex = ((struct in_pktinfo *)CMSG_DATA(cm))->ipi_ifindex;
    }
    CHECK(ttl == 64 && ifindex == 1);
    close(a), close(b), close(c);
}

static void test_dual_stack(void)
{
    /* An AF_INET6 listener on :: takes IPv4 connections as v4-mapped addresses. */
    int l = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT};
    CHECK(bind(l, (struct sockaddr *)&a6, sizeof(a6)) == 0);
    CHECK(listen(l, 4) == 0);
    int port = port_of(l);
    int c4 = connect_to(port);
    struct sockaddr_in6 peer;
    socklen_t len = sizeof(peer);
    int s4 = accept(l, (struct sockaddr *)&peer, &len);
    CHECK(s4 >= 0 && len == sizeof(peer) && IN6_IS_ADDR_V4MAPPED(&peer.sin6_addr));
    /* An IPv6 client. */
    int c6 = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 to = {.sin6_family = AF_INET6, .sin6_port = htons(port),
                              .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    CHECK(connect(c6, (struct sockaddr *)&to, sizeof(to)) == 0);
    len = sizeof(peer);
    int s6 = accept(l, (struct sockaddr *)&peer, &len);
    CHECK(s6 >= 0 && IN6_IS_ADDR_LOOPBACK(&peer.sin6_addr));
    CHECK(send(c6, "six", 3, 0) == 3);
    char b[4];
    CHECK(recv(s6, b, 4, 0) == 3);
    /* The v4 wildcard port is taken by the dual-stack socket. */
    int t = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    CHECK_ERR(bind(t, (struct sockaddr *)&sa, sizeof(sa)), EADDRINUSE);
    /* With IPV6_V6ONLY the same port stays free for IPv4. */
    int o = socket(AF_INET6, SOCK_STREAM, 0), one = 1;
    CHECK(setsockopt(o, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) == 0);
    a6.sin6_port = 0;
    CHECK(bind(o, (struct sockaddr *)&a6, sizeof(a6)) == 0);
    CHECK(listen(o, 1) == 0);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in v4 = lo4(port_of(o));
    CHECK_ERR(connect(c, (struct sockaddr *)&v4, sizeof(v4)), ECONNREFUSED);
    sa.sin_port = htons(port_of(o));
    CHECK(bind(t, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    struct sockaddr_in6 mapped = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
    inet_pton(AF_INET6, "::ffff:127.0.0.1", &mapped.sin6_addr);
    int m = socket(AF_INET6, SOCK_STREAM, 0);
    CHECK(setsockopt(m, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) == 0);
    CHECK_ERR(connect(m, (struct sockaddr *)&mapped, sizeof(mapped)), ENETUNREACH);
    close(l), close(c4), close(s4), close(c6), close(s6), close(t), close(o), close(c), close(m);
}

static void test_poll_states(void)
{
    /* A fresh TCP socket polls POLLOUT|POLLHUP, as Linux's tcp_poll says. */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct pollfd p = {.fd = s, .events = POLLIN | POLLOUT};
    CHECK(poll(&p, 1, 0) == 1 && p.revents == (POLLOUT | POLLHUP));
    close(s);
    int l = listener(4, 0);
    p.fd = l;
    p.events = POLLIN | POLLOUT;
    CHECK(poll(&p, 1, 0) == 0);
    int c = connect_to(port_of(l));
    CHECK(poll(&p, 1, 1000) == 1 && p.revents == POLLIN);
    int a = accept(l, NULL, NULL);
    /* epoll, edge-triggered with EPOLLRDHUP. */
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET | EPOLLRDHUP, .data.fd = a}, out[2];
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, a, &ev) == 0);
    CHECK(epoll_wait(ep, out, 2, 0) == 0);
    CHECK(send(c, "e", 1, 0) == 1);
    CHECK(epoll_wait(ep, out, 2, 1000) == 1 && out[0].events == EPOLLIN);
    char b;
    CHECK(recv(a, &b, 1, 0) == 1);
    CHECK(shutdown(c, SHUT_WR) == 0);
    CHECK(epoll_wait(ep, out, 2, 1000) == 1 && (out[0].events & EPOLLRDHUP));
    close(ep), close(a), close(c), close(l);
}

static void test_flow_control(void)
{
    /* A writer that nobody reads fills up and gets EAGAIN; reading makes room. */
    int c, s;
    pair(&c, &s);
    int fl = fcntl(c, F_GETFL);
    CHECK(fcntl(c, F_SETFL, fl | O_NONBLOCK) == 0);
    static char chunk[65536];
    long total = 0;
    for (;;) {
        ssize_t n = send(c, chunk, sizeof(chunk), 0);
        if (n < 0) {
            CHECK(errno == EAGAIN);
            break;
        }
        total += n;
        CHECK(total < (64L << 20));
    }
    CHECK(total > 0);
    struct pollfd p = {.fd = c, .events = POLLOUT};
    CHECK(poll(&p, 1, 0) == 0);
    long got = 0;
    while (got < total) {
        ssize_t n = recv(s, chunk, sizeof(chunk), 0);
        CHECK(n > 0);
        got += n;
    }
    CHECK(poll(&p, 1, 1000) == 1 && (p.revents & POLLOUT));
    /* SO_RCVTIMEO: a blocking recv gives up with EAGAIN. */
    struct timeval tv = {0, 50000};
    CHECK(setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0);
    CHECK_ERR(recv(s, chunk, 1, 0), EAGAIN);
    close(c), close(s);
}

int main(void)
{
    signal(SIGPIPE, on_sigpipe);
    test_creation();
    test_bind();
    test_connect_errors();
    test_nonblocking_connect();
    test_accept_queue();
    test_data();
    test_half_close();
    test_reset();
    test_time_wait();
    test_options();
    test_ioctls();
    test_udp();
    test_dual_stack();
    test_poll_states();
    test_flow_control();
    ok();
    return 0;
}
