/* What servers (nginx, redis, iperf3, Python's http.server) do to their sockets on
 * loopback TCP, checked against Linux: accept4 flags, listen/accept/connect on the
 * wrong state, TCP_DEFER_ACCEPT rounding, buffer options, sendfile from a file to a
 * socket, epoll on listeners (EPOLLET, EPOLLONESHOT, EPOLLEXCLUSIVE, EPOLLRDHUP),
 * SO_REUSEPORT groups, a full accept queue and shutdown of a listener.
 * Prints what it saw (compared with Linux line by line) and "ok". */
#define _GNU_SOURCE
#include "check.h"
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

static struct sockaddr_in lo4(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

static int port_of(int fd)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    CHECK(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
    return ntohs(a.sin_port);
}

static int listener(int backlog)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = lo4(0);
    CHECK(fd >= 0);
    CHECK(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
    CHECK(listen(fd, backlog) == 0);
    return fd;
}

static int connect_to(int port, int nonblock)
{
    int fd = socket(AF_INET, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0), 0);
    struct sockaddr_in a = lo4(port);
    CHECK(fd >= 0);
    int r = connect(fd, (struct sockaddr *)&a, sizeof(a));
    CHECK(r == 0 || (nonblock && errno == EINPROGRESS));
    return fd;
}

static int getint(int fd, int level, int name)
{
    int v = -12345;
    socklen_t len = sizeof(v);
    CHECK(getsockopt(fd, level, name, &v, &len) == 0);
    return v;
}

static void setint(int fd, int level, int name, int v)
{
    CHECK(setsockopt(fd, level, name, &v, sizeof(v)) == 0);
}

static short revents(int fd, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLOUT | POLLRDHUP};
    CHECK(poll(&p, 1, timeout_ms) >= 0);
    return p.revents;
}

static void accept4_flags(void)
{
    int l = listener(8);
    int c = connect_to(port_of(l), 0);
    struct sockaddr_in peer;
    socklen_t len = 4;  /* too short: the address is cut, the length says the truth */
    CHECK_ERR(accept4(l, NULL, NULL, 0x1), EINVAL);
    int a = accept4(l, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    CHECK(a >= 0);
    printf("accept4: addrlen %u nonblock %d cloexec %d\n", len,
           !!(fcntl(a, F_GETFL) & O_NONBLOCK), !!(fcntl(a, F_GETFD) & FD_CLOEXEC));
    CHECK(port_of(a) == port_of(l));
    /* The accepted socket does not inherit the listener's O_NONBLOCK. */
    CHECK(fcntl(l, F_SETFL, O_NONBLOCK) == 0);
    int c2 = connect_to(port_of(l), 0);
    int a2 = accept(l, NULL, NULL);
    CHECK(a2 >= 0);
    printf("accept: nonblock %d; empty queue: ", !!(fcntl(a2, F_GETFL) & O_NONBLOCK));
    errno = 0;
    CHECK(accept(l, NULL, NULL) == -1);
    printf("%s\n", strerror(errno));
    /* Wrong states. */
    CHECK_ERR(accept(c, NULL, NULL), EINVAL);
    CHECK_ERR(listen(c, 1), EINVAL);
    struct sockaddr_in self = lo4(port_of(l));
    CHECK_ERR(connect(l, (struct sockaddr *)&self, sizeof(self)), EISCONN);
    printf("SO_ACCEPTCONN listener %d client %d\n", getint(l, SOL_SOCKET, SO_ACCEPTCONN),
           getint(c, SOL_SOCKET, SO_ACCEPTCONN));
    close(a);
    close(a2);
    close(c);
    close(c2);
    close(l);
}

static void options(void)
{
    int l = listener(8);
    static const int defer[] = {0, 1, 2, 3, 5, 7, 30, 200, -1};
    printf("TCP_DEFER_ACCEPT");
    for (size_t i = 0; i < sizeof(defer) / sizeof(defer[0]); i++) {
        setint(l, IPPROTO_TCP, TCP_DEFER_ACCEPT, defer[i]);
        printf(" %d->%d", defer[i], getint(l, IPPROTO_TCP, TCP_DEFER_ACCEPT));
    }
    printf("\n");
    setint(l, IPPROTO_TCP, TCP_DEFER_ACCEPT, 0);
    setint(l, SOL_SOCKET, SO_RCVBUF, 10000);
    setint(l, SOL_SOCKET, SO_SNDBUF, 10000);
    setint(l, IPPROTO_TCP, TCP_NODELAY, 1);
    setint(l, SOL_SOCKET, SO_KEEPALIVE, 1);
    setint(l, IPPROTO_TCP, TCP_KEEPIDLE, 30);
    int c = connect_to(port_of(l), 0);
    int a = accept(l, NULL, NULL);
    CHECK(a >= 0);
    /* What an accepted socket inherits from its listener. */
    printf("accepted: rcvbuf %d sndbuf %d nodelay %d keepalive %d keepidle %d\n",
           getint(a, SOL_SOCKET, SO_RCVBUF), getint(a, SOL_SOCKET, SO_SNDBUF),
           getint(a, IPPROTO_TCP, TCP_NODELAY), getint(a, SOL_SOCKET, SO_KEEPALIVE),
           getint(a, IPPROTO_TCP, TCP_KEEPIDLE));
    setint(c, IPPROTO_TCP, TCP_CORK, 1);
    CHECK(write(c, "corked", 6) == 6);
    setint(c, IPPROTO_TCP, TCP_CORK, 0);   /* uncorking pushes what was held */
    char buf[16];
    CHECK(read(a, buf, sizeof(buf)) == 6);
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    CHECK(getsockopt(l, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0);
    int lstate = ti.tcpi_state;
    CHECK(getsockopt(a, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0);
    printf("TCP_INFO listener state %d, connection state %d\n", lstate, ti.tcpi_state);
    close(a);
    close(c);
    close(l);
}

/* sendfile from a regular file to a TCP socket, with and without an offset pointer,
 * as nginx serves files; the reader checks every byte. */
static void sendfile_to_socket(void)
{
    char path[] = "/tmp/inet_server_XXXXXX";
    int f = mkstemp(path);
    CHECK(f >= 0);
    unlink(path);
    static unsigned char data[3 << 20];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (unsigned char)(i * 7 + i / 4096);
    CHECK(write(f, data, sizeof(data)) == (ssize_t)sizeof(data));
    int l = listener(8);
    int c = connect_to(port_of(l), 0);
    int a = accept(l, NULL, NULL);
    CHECK(a >= 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        static unsigned char got[sizeof(data) + 1];
        size_t n = 0;
        close(a);
        ssize_t r;
        while ((r = read(c, got + n, sizeof(got) - n)) > 0)
            n += r;
        /* Sent: [0, 1 MiB) by offset, then [100, 100 + 2 MiB) by file position. */
        int good = n == (3u << 20) - (1u << 20) + (1u << 20) &&
                   memcmp(got, data, 1 << 20) == 0 &&
                   memcmp(got + (1 << 20), data + 100, 2 << 20) == 0;
        printf("sendfile reader: %zu bytes, %s\n", n, good ? "match" : "MISMATCH");
        fflush(stdout);
        _exit(good ? 0 : 1);
    }
    close(c);
    off_t off = 0;
    size_t sent = 0;
    while (sent < (1u << 20)) {
        ssize_t r = sendfile(a, f, &off, (1u << 20) - sent);
        CHECK(r > 0);
        sent += r;
    }
    printf("sendfile offset advanced to %lld, file position %lld\n", (long long)off,
           (long long)lseek(f, 0, SEEK_CUR));
    CHECK(lseek(f, 100, SEEK_SET) == 100);
    sent = 0;
    while (sent < (2u << 20)) {
        ssize_t r = sendfile(a, f, NULL, (2u << 20) - sent);
        CHECK(r > 0);
        sent += r;
    }
    printf("file position now %lld\n", (long long)lseek(f, 0, SEEK_CUR));
    off = sizeof(data);
    printf("sendfile at EOF: %zd\n", sendfile(a, f, &off, 4096));
    /* A non-blocking socket whose peer reads nothing: EAGAIN once full, never a hang. */
    int l2 = listener(1), c2 = connect_to(port_of(l2), 0), a2 = accept(l2, NULL, NULL);
    CHECK(a2 >= 0 && fcntl(a2, F_SETFL, O_NONBLOCK) == 0);
    off = 0;
    ssize_t r;
    long total = 0;
    while ((r = sendfile(a2, f, &off, sizeof(data))) > 0) {
        total += r;
        if (off == sizeof(data))
            off = 0;
    }
    printf("full non-blocking socket: %s after >0 bytes: %d\n", strerror(errno), total > 0);
    close(a);
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    close(a2);
    close(c2);
    close(l2);
    close(l);
    close(f);
}

static void epoll_listeners(void)
{
    int l = listener(16), ep = epoll_create1(EPOLL_CLOEXEC);
    CHECK(ep >= 0);
    CHECK(fcntl(l, F_SETFL, O_NONBLOCK) == 0);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.fd = l}, out[8];
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev) == 0);
    int c[4];
    for (int i = 0; i < 3; i++)
        c[i] = connect_to(port_of(l), 0);
    int n1 = epoll_wait(ep, out, 8, 1000);
    int n2 = epoll_wait(ep, out, 8, 0);   /* edge-triggered: no new edge yet */
    c[3] = connect_to(port_of(l), 0);
    int n3 = epoll_wait(ep, out, 8, 1000);  /* a new connection is a new edge */
    int accepted = 0;
    while (accept(l, NULL, NULL) >= 0)
        accepted++;
    printf("EPOLLET listener: %d %d %d, accepted %d then %s\n", n1, n2, n3, accepted,
           strerror(errno));
    /* EPOLLONESHOT: one report, then silence until EPOLL_CTL_MOD re-arms it. */
    int l1 = listener(4);
    int x = connect_to(port_of(l1), 0), y = accept(l1, NULL, NULL);
    CHECK(y >= 0);
    ev.events = EPOLLIN | EPOLLONESHOT | EPOLLRDHUP;
    ev.data.fd = y;
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, y, &ev) == 0);
    CHECK(write(x, "a", 1) == 1);
    int o1 = epoll_wait(ep, out, 8, 1000);
    CHECK(write(x, "b", 1) == 1);
    int o2 = epoll_wait(ep, out, 8, 0);
    CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, y, &ev) == 0);
    int o3 = epoll_wait(ep, out, 8, 1000);
    printf("EPOLLONESHOT: %d %d %d\n", o1, o2, o3);
    /* EPOLLRDHUP once the peer shuts down its writing side. */
    CHECK(shutdown(x, SHUT_WR) == 0);
    CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, y, &ev) == 0);
    CHECK(epoll_wait(ep, out, 8, 1000) == 1);
    printf("after peer SHUT_WR: IN %d RDHUP %d HUP %d\n", !!(out[0].events & EPOLLIN),
           !!(out[0].events & EPOLLRDHUP), !!(out[0].events & EPOLLHUP));
    /* EPOLLEXCLUSIVE: allowed on ADD, refused by MOD. */
    int ep2 = epoll_create1(0);
    struct epoll_event ex = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.fd = l1};
    CHECK(epoll_ctl(ep2, EPOLL_CTL_ADD, l1, &ex) == 0);
    CHECK_ERR(epoll_ctl(ep2, EPOLL_CTL_MOD, l1, &ex), EINVAL);
    CHECK(connect_to(port_of(l1), 0) >= 0);
    printf("EPOLLEXCLUSIVE listener: %d\n", epoll_wait(ep2, out, 8, 1000));
    close(ep2);
    close(x);
    close(y);
    close(l1);
    for (int i = 0; i < 4; i++)
        close(c[i]);
    close(ep);
    close(l);
}

/* Two listeners in one SO_REUSEPORT group share the connections (nginx's
 * `listen ... reuseport` with several workers relies on it). */
static void reuseport_group(void)
{
    int l[2];
    int port = 0;
    for (int i = 0; i < 2; i++) {
        l[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        setint(l[i], SOL_SOCKET, SO_REUSEPORT, 1);
        struct sockaddr_in a = lo4(port);
        CHECK(bind(l[i], (struct sockaddr *)&a, sizeof(a)) == 0);
        CHECK(listen(l[i], 64) == 0);
        port = port_of(l[i]);
    }
    int c[40], got[2] = {0, 0};
    for (int i = 0; i < 40; i++)
        c[i] = connect_to(port, 0);
    for (int i = 0; i < 2; i++) {
        int a;
        while ((a = accept(l[i], NULL, NULL)) >= 0) {
            got[i]++;
            close(a);
        }
    }
    printf("SO_REUSEPORT: %d accepted, both listeners used: %d\n", got[0] + got[1],
           got[0] > 0 && got[1] > 0);
    /* A listener that closes takes its queue with it; the group goes on. */
    close(l[0]);
    int d = connect_to(port, 0), a = -1;
    for (int i = 0; i < 100 && a < 0; i++) {
        a = accept(l[1], NULL, NULL);
        if (a < 0)
            usleep(10000);
    }
    printf("after one listener closed: accepted %d\n", a >= 0);
    close(a);
    close(d);
    for (int i = 0; i < 40; i++)
        close(c[i]);
    close(l[1]);
}

/* A full accept queue holds further SYNs back: their connects stay pending. */
static void full_queue(void)
{
    int l = listener(0);
    int c1 = connect_to(port_of(l), 1);
    usleep(100000);
    int c2 = connect_to(port_of(l), 1);
    usleep(100000);
    printf("backlog 0: first %s, second %s\n",
           (revents(c1, 0) & POLLOUT) ? "connected" : "pending",
           (revents(c2, 0) & POLLOUT) ? "connected" : "pending");
    int a = accept(l, NULL, NULL);
    CHECK(a >= 0);
    close(a);
    close(c1);
    close(c2);
    close(l);
}

/* TCP_DEFER_ACCEPT: the client is connected at once, but accept sees the
 * connection only when its first data (or FIN) arrives. */
static void defer_accept(void)
{
    int l = listener(8);
    setint(l, IPPROTO_TCP, TCP_DEFER_ACCEPT, 5);
    int c = connect_to(port_of(l), 1);
    short cl = revents(c, 1000);
    short before = revents(l, 200);
    CHECK(write(c, "hello", 5) == 5);
    short after = revents(l, 2000);
    int a = accept(l, NULL, NULL);
    char buf[8];
    CHECK(a >= 0 && read(a, buf, sizeof(buf)) == 5);
    int c2 = connect_to(port_of(l), 0);
    CHECK(shutdown(c2, SHUT_WR) == 0);           /* a FIN without data also completes it */
    short fin = revents(l, 2000);
    int a2 = accept(l, NULL, NULL);
    CHECK(a2 >= 0);
    printf("TCP_DEFER_ACCEPT: client connected %d, listener readable before data %d, "
           "after data %d, after a bare FIN %d, EOF %d\n", !!(cl & POLLOUT),
           !!(before & POLLIN), !!(after & POLLIN), !!(fin & POLLIN),
           read(a2, buf, sizeof(buf)) == 0);
    close(a2);
    close(c2);
    close(a);
    close(c);
    close(l);
}

static void *blocked_accept(void *arg)
{
    int l = *(int *)arg;
    errno = 0;
    int r = accept(l, NULL, NULL);
    return (void *)(long)(r >= 0 ? 0 : errno);
}

/* shutdown(SHUT_RD) of a listener stops it: a blocked accept returns EINVAL. */
static void shutdown_listener(void)
{
    int l = listener(4);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, blocked_accept, &l) == 0);
    usleep(100000);
    int r = shutdown(l, SHUT_RD);
    void *res;
    CHECK(pthread_join(th, &res) == 0);
    printf("shutdown(listener): %d, blocked accept: %s, SO_ACCEPTCONN %d\n", r,
           strerror((int)(long)res), getint(l, SOL_SOCKET, SO_ACCEPTCONN));
    close(l);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    accept4_flags();
    options();
    sendfile_to_socket();
    epoll_listeners();
    reuseport_group();
    full_queue();
    defer_accept();
    shutdown_listener();
    ok();
    return 0;
}
