/* AF_UNIX sockets: socketpair (stream, dgram, seqpacket), bind/listen/
 * accept/connect on a path and on an abstract name, autobind, SCM_RIGHTS
 * and SCM_CREDENTIALS across fork, SO_PEERCRED, poll/epoll readiness,
 * EOF/HUP after close, EPIPE with and without MSG_NOSIGNAL, shutdown,
 * non-blocking EAGAIN and ECONNREFUSED/ENOENT.  Linux: net/unix/af_unix.c. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include "check.h"

static char dir[64];

static socklen_t path_addr(struct sockaddr_un *sa, const char *name)
{
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    snprintf(sa->sun_path, sizeof sa->sun_path, "%s/%s", dir, name);
    return offsetof(struct sockaddr_un, sun_path) + strlen(sa->sun_path) + 1;
}

static socklen_t abstract_addr(struct sockaddr_un *sa, const char *name)
{
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    int n = snprintf(sa->sun_path + 1, sizeof sa->sun_path - 1, "%s-%d", name, (int)getpid());
    return offsetof(struct sockaddr_un, sun_path) + 1 + n;
}

static void wait_child(pid_t pid)
{
    int st;
    CHECK(waitpid(pid, &st, 0) == pid);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "child failed: status %#x\n", st);
        exit(1);
    }
}

/* Sends one byte and `fd` (if >= 0) with SCM_RIGHTS. */
static void send_fd(int sock, int fd)
{
    char c = 'F';
    struct iovec iov = {&c, 1};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = u.buf;
    msg.msg_controllen = sizeof u.buf;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof fd);
    CHECK(sendmsg(sock, &msg, 0) == 1);
}

/* Receives one byte and one fd sent with SCM_RIGHTS. */
static int recv_fd(int sock, int flags)
{
    char c = 0;
    struct iovec iov = {&c, 1};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = u.buf;
    msg.msg_controllen = sizeof u.buf;
    CHECK(recvmsg(sock, &msg, flags) == 1 && c == 'F');
    /* Linux echoes MSG_CMSG_CLOEXEC in msg_flags. */
    CHECK(msg.msg_flags == (flags & MSG_CMSG_CLOEXEC));
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    CHECK(cm != NULL);
    CHECK(cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS);
    CHECK(cm->cmsg_len == CMSG_LEN(sizeof(int)));
    int fd;
    memcpy(&fd, CMSG_DATA(cm), sizeof fd);
    CHECK(CMSG_NXTHDR(&msg, cm) == NULL);
    return fd;
}

static void test_stream_pair(void)
{
    int sv[2];
    char buf[64];
    struct stat st;
    int v;
    socklen_t len;

    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(fstat(sv[0], &st) == 0 && S_ISSOCK(st.st_mode));
    len = sizeof v;
    CHECK(getsockopt(sv[0], SOL_SOCKET, SO_TYPE, &v, &len) == 0 && v == SOCK_STREAM);
    CHECK(len == sizeof v);
    CHECK(getsockopt(sv[0], SOL_SOCKET, SO_DOMAIN, &v, &len) == 0 && v == AF_UNIX);
    CHECK(getsockopt(sv[0], SOL_SOCKET, SO_PROTOCOL, &v, &len) == 0 && v == 0);
    CHECK(getsockopt(sv[0], SOL_SOCKET, SO_ACCEPTCONN, &v, &len) == 0 && v == 0);
    CHECK(getsockopt(sv[0], SOL_SOCKET, SO_ERROR, &v, &len) == 0 && v == 0);
    CHECK(getsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &v, &len) == 0 && v > 0);
    CHECK(getsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &v, &len) == 0 && v > 0);
    v = 65536;
    CHECK(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &v, sizeof v) == 0);
    CHECK(getsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &v, &len) == 0 && v == 2 * 65536);
    v = 1;
    CHECK(setsockopt(sv[0], SOL_SOCKET, SO_REUSEADDR, &v, sizeof v) == 0);
    CHECK(getsockopt(sv[0], SOL_SOCKET, SO_REUSEADDR, &v, &len) == 0 && v == 1);
    CHECK_ERR(getsockopt(sv[0], SOL_SOCKET, 12345, &v, &len), ENOPROTOOPT);
    CHECK_ERR(setsockopt(sv[0], SOL_SOCKET, SO_TYPE, &v, sizeof v), ENOPROTOOPT);

    struct ucred cr;
    len = sizeof cr;
    CHECK(getsockopt(sv[1], SOL_SOCKET, SO_PEERCRED, &cr, &len) == 0);
    CHECK(len == sizeof cr);
    CHECK(cr.pid == getpid() && cr.uid == geteuid() && cr.gid == getegid());

    struct sockaddr_un sa;
    len = sizeof sa;
    CHECK(getsockname(sv[0], (struct sockaddr *)&sa, &len) == 0);
    CHECK(len == sizeof(sa_family_t) && sa.sun_family == AF_UNIX);
    len = sizeof sa;
    CHECK(getpeername(sv[0], (struct sockaddr *)&sa, &len) == 0);
    CHECK(len == sizeof(sa_family_t));

    /* A byte stream: writes coalesce, reads split. */
    CHECK(write(sv[0], "hello", 5) == 5);
    CHECK(send(sv[0], "world", 5, 0) == 5);
    CHECK(ioctl(sv[1], FIONREAD, &v) == 0 && v == 10);
    CHECK(recv(sv[1], buf, 3, MSG_PEEK) == 3 && memcmp(buf, "hel", 3) == 0);
    CHECK(read(sv[1], buf, 7) == 7 && memcmp(buf, "hellowo", 7) == 0);
    CHECK(recv(sv[1], buf, sizeof buf, 0) == 3 && memcmp(buf, "rld", 3) == 0);
    CHECK_ERR(recv(sv[1], buf, sizeof buf, MSG_DONTWAIT), EAGAIN);
    /* Both directions. */
    CHECK(write(sv[1], "back", 4) == 4);
    CHECK(read(sv[0], buf, sizeof buf) == 4 && memcmp(buf, "back", 4) == 0);

    /* MSG_WAITALL gathers several writes. */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        for (int i = 0; i < 10; i++) {
            if (write(sv[0], "0123456789", 10) != 10)
                _exit(2);
            usleep(1000);
        }
        _exit(0);
    }
    CHECK(recv(sv[1], buf, 50, MSG_WAITALL) == 50);
    CHECK(recv(sv[1], buf, 50, MSG_WAITALL) == 50);
    wait_child(pid);

    /* shutdown(SHUT_WR): the peer reads EOF; we get EPIPE writing. */
    CHECK(shutdown(sv[0], SHUT_WR) == 0);
    CHECK(read(sv[1], buf, sizeof buf) == 0);
    CHECK_ERR(send(sv[0], "x", 1, MSG_NOSIGNAL), EPIPE);
    CHECK(write(sv[1], "still", 5) == 5);
    CHECK(read(sv[0], buf, sizeof buf) == 5);
    CHECK_ERR(shutdown(sv[0], 7), EINVAL);
    close(sv[0]);
    close(sv[1]);

    /* Not a socket. */
    CHECK_ERR(getsockopt(0 + STDERR_FILENO, SOL_SOCKET, SO_TYPE, &v, &len), ENOTSOCK);
    /* Bad types and protocols. */
    CHECK_ERR(socket(AF_UNIX, 42, 0), EINVAL);
    CHECK_ERR(socket(AF_UNIX, SOCK_STREAM, 7), EPROTONOSUPPORT);
    CHECK_ERR(socket(AF_UNIX, SOCK_STREAM | 0x10000000, 0), EINVAL);
}

static void test_dgram_pair(void)
{
    int sv[2];
    char buf[64];

    CHECK(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) == 0);
    CHECK(fcntl(sv[0], F_GETFD) == FD_CLOEXEC);
    /* Message boundaries are kept. */
    CHECK(send(sv[0], "one", 3, 0) == 3);
    CHECK(send(sv[0], "three", 5, 0) == 5);
    CHECK(send(sv[0], "", 0, 0) == 0);
    int v;
    CHECK(ioctl(sv[1], FIONREAD, &v) == 0 && v == 3);
    CHECK(recv(sv[1], buf, sizeof buf, MSG_PEEK) == 3);
    CHECK(recv(sv[1], buf, sizeof buf, 0) == 3 && memcmp(buf, "one", 3) == 0);
    /* Truncation: MSG_TRUNC reports the real length and the flag. */
    struct iovec iov = {buf, 2};
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    CHECK(recvmsg(sv[1], &msg, MSG_TRUNC) == 5);
    CHECK(msg.msg_flags & MSG_TRUNC);
    CHECK(memcmp(buf, "th", 2) == 0);
    CHECK(recv(sv[1], buf, sizeof buf, 0) == 0);     /* the empty datagram */
    CHECK_ERR(recv(sv[1], buf, sizeof buf, MSG_DONTWAIT), EAGAIN);

    /* Datagrams too large for the send buffer. */
    static char big[300000];
    CHECK_ERR(send(sv[0], big, sizeof big, 0), EMSGSIZE);

    /* The peer closed: the first send is refused, then we are disconnected. */
    close(sv[1]);
    CHECK_ERR(send(sv[0], "x", 1, 0), ECONNREFUSED);
    CHECK_ERR(send(sv[0], "x", 1, 0), ENOTCONN);
    close(sv[0]);

    /* SOCK_SEQPACKET: boundaries, then EOF once the peer is gone. */
    CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0);
    CHECK(write(sv[0], "abc", 3) == 3);
    CHECK(write(sv[0], "defg", 4) == 4);
    CHECK(read(sv[1], buf, sizeof buf) == 3);
    CHECK(read(sv[1], buf, 2) == 2);                 /* the rest is dropped */
    CHECK_ERR(recv(sv[1], buf, sizeof buf, MSG_DONTWAIT), EAGAIN);
    close(sv[0]);
    CHECK(read(sv[1], buf, sizeof buf) == 0);
    CHECK_ERR(send(sv[1], "x", 1, MSG_NOSIGNAL), EPIPE);
    close(sv[1]);

    /* Named datagram sockets: sendto a path, recvfrom names the sender. */
    struct sockaddr_un a, b, from;
    socklen_t alen = path_addr(&a, "dgram-a"), blen = path_addr(&b, "dgram-b");
    int sa = socket(AF_UNIX, SOCK_DGRAM, 0), sb = socket(AF_UNIX, SOCK_DGRAM, 0);
    CHECK(sa >= 0 && sb >= 0);
    CHECK(bind(sa, (struct sockaddr *)&a, alen) == 0);
    CHECK(bind(sb, (struct sockaddr *)&b, blen) == 0);
    CHECK_ERR(send(sa, "x", 1, 0), ENOTCONN);
    CHECK(sendto(sa, "ping", 4, 0, (struct sockaddr *)&b, blen) == 4);
    socklen_t flen = sizeof from;
    CHECK(recvfrom(sb, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen) == 4);
    CHECK(flen == alen && strcmp(from.sun_path, a.sun_path) == 0);
    /* connect() sets the default destination. */
    CHECK(connect(sb, (struct sockaddr *)&a, alen) == 0);
    CHECK(send(sb, "pong", 4, 0) == 4);
    flen = sizeof from;
    CHECK(recvfrom(sa, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen) == 4);
    CHECK(flen == blen && memcmp(buf, "pong", 4) == 0);
    /* An unbound sender has no name. */
    int sc = socket(AF_UNIX, SOCK_DGRAM, 0);
    CHECK(sendto(sc, "anon", 4, 0, (struct sockaddr *)&a, alen) == 4);
    flen = sizeof from;
    CHECK(recvfrom(sa, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen) == 4);
    CHECK(flen == 0);
    /* sb is connected to sa: only sa may send to it. */
    CHECK_ERR(sendto(sc, "x", 1, 0, (struct sockaddr *)&b, blen), EPERM);
    /* A stream socket is the wrong type. */
    struct sockaddr_un missing;
    socklen_t mlen = path_addr(&missing, "nothing-here");
    CHECK_ERR(sendto(sc, "x", 1, 0, (struct sockaddr *)&missing, mlen), ENOENT);
    close(sa);
    close(sb);
    close(sc);
    unlink(a.sun_path);
    unlink(b.sun_path);
}

static void test_listen_path(void)
{
    struct sockaddr_un sa, got;
    socklen_t len = path_addr(&sa, "listener"), glen;
    char buf[64];
    int v;

    int ls = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(ls >= 0);
    CHECK_ERR(listen(ls, 5), EINVAL);                 /* not bound */
    CHECK_ERR(accept(ls, NULL, NULL), EINVAL);        /* not listening */
    CHECK(bind(ls, (struct sockaddr *)&sa, len) == 0);
    CHECK_ERR(bind(ls, (struct sockaddr *)&sa, len), EADDRINUSE);

    struct stat st;
    CHECK(stat(sa.sun_path, &st) == 0 && S_ISSOCK(st.st_mode));
    CHECK_ERR(open(sa.sun_path, O_RDWR), ENXIO);

    glen = sizeof got;
    CHECK(getsockname(ls, (struct sockaddr *)&got, &glen) == 0);
    CHECK(glen == len && strcmp(got.sun_path, sa.sun_path) == 0);

    /* Bound but not listening: refused. */
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK_ERR(connect(c, (struct sockaddr *)&sa, len), ECONNREFUSED);
    close(c);

    CHECK(listen(ls, 5) == 0);
    len = sizeof v;
    CHECK(getsockopt(ls, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) == 0 && v == 1);
    len = path_addr(&sa, "listener");

    /* Non-blocking accept with nobody waiting. */
    CHECK(fcntl(ls, F_SETFL, O_NONBLOCK) == 0);
    CHECK_ERR(accept(ls, NULL, NULL), EAGAIN);
    CHECK(fcntl(ls, F_SETFL, 0) == 0);
    struct pollfd pfd = {ls, POLLIN, 0};
    CHECK(poll(&pfd, 1, 0) == 0);

    /* A child connects and talks; the parent accepts (blocking). */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int s = socket(AF_UNIX, SOCK_STREAM, 0);
        CHECK(s >= 0);
        CHECK(connect(s, (struct sockaddr *)&sa, len) == 0);
        CHECK_ERR(connect(s, (struct sockaddr *)&sa, len), EISCONN);
        struct sockaddr_un peer;
        socklen_t plen = sizeof peer;
        CHECK(getpeername(s, (struct sockaddr *)&peer, &plen) == 0);
        CHECK(plen == len && strcmp(peer.sun_path, sa.sun_path) == 0);
        struct ucred cr;
        socklen_t clen = sizeof cr;
        CHECK(getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cr, &clen) == 0);
        CHECK(cr.pid == getppid());
        CHECK(write(s, "request", 7) == 7);
        char b[16];
        CHECK(read(s, b, sizeof b) == 5 && memcmp(b, "reply", 5) == 0);
        CHECK(read(s, b, sizeof b) == 0);
        _exit(0);
    }
    struct sockaddr_un peer;
    socklen_t plen = sizeof peer;
    int a = accept4(ls, (struct sockaddr *)&peer, &plen, SOCK_CLOEXEC);
    CHECK(a >= 0);
    CHECK(plen == sizeof(sa_family_t));               /* the client is unbound */
    CHECK(fcntl(a, F_GETFD) == FD_CLOEXEC);
    glen = sizeof got;
    CHECK(getsockname(a, (struct sockaddr *)&got, &glen) == 0);
    CHECK(glen == len && strcmp(got.sun_path, sa.sun_path) == 0);
    struct ucred cr;
    socklen_t clen = sizeof cr;
    CHECK(getsockopt(a, SOL_SOCKET, SO_PEERCRED, &cr, &clen) == 0);
    CHECK(cr.pid == pid);
    CHECK(read(a, buf, sizeof buf) == 7 && memcmp(buf, "request", 7) == 0);
    CHECK(write(a, "reply", 5) == 5);
    close(a);
    wait_child(pid);

    /* Data sent before accept() waits in the new connection. */
    c = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    CHECK(connect(c, (struct sockaddr *)&sa, len) == 0);
    CHECK(write(c, "early", 5) == 5);
    CHECK(poll(&pfd, 1, 1000) == 1 && pfd.revents == POLLIN);
    a = accept(ls, NULL, NULL);
    CHECK(a >= 0);
    CHECK(fcntl(a, F_GETFD) == 0);
    CHECK(read(a, buf, sizeof buf) == 5 && memcmp(buf, "early", 5) == 0);
    close(a);
    CHECK(read(c, buf, sizeof buf) == 0);
    close(c);

    /* A pending connection whose listener goes away is reset. */
    c = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(connect(c, (struct sockaddr *)&sa, len) == 0);
    close(ls);
    CHECK_ERR(read(c, buf, sizeof buf), ECONNRESET);
    CHECK(read(c, buf, sizeof buf) == 0);
    close(c);

    /* The name outlives the socket, but nobody answers. */
    c = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK_ERR(connect(c, (struct sockaddr *)&sa, len), ECONNREFUSED);
    /* A file that is not a socket, and a missing one. */
    struct sockaddr_un f;
    socklen_t flen = path_addr(&f, "regular");
    int fd = open(f.sun_path, O_CREAT | O_WRONLY, 0600);
    CHECK(fd >= 0);
    close(fd);
    CHECK_ERR(connect(c, (struct sockaddr *)&f, flen), ECONNREFUSED);
    CHECK_ERR(bind(c, (struct sockaddr *)&f, flen), EADDRINUSE);
    unlink(f.sun_path);
    CHECK_ERR(connect(c, (struct sockaddr *)&f, flen), ENOENT);
    /* A datagram socket at the path: wrong type. */
    int d = socket(AF_UNIX, SOCK_DGRAM, 0);
    CHECK(bind(d, (struct sockaddr *)&f, flen) == 0);
    CHECK_ERR(connect(c, (struct sockaddr *)&f, flen), EPROTOTYPE);
    close(d);
    unlink(f.sun_path);
    close(c);
    CHECK(unlink(sa.sun_path) == 0);
}

static void test_abstract(void)
{
    struct sockaddr_un sa, got;
    socklen_t len = abstract_addr(&sa, "pyvisor-unix"), glen;
    char buf[16];

    int ls = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    CHECK(ls >= 0);
    CHECK(bind(ls, (struct sockaddr *)&sa, len) == 0);
    int other = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    CHECK_ERR(bind(other, (struct sockaddr *)&sa, len), EADDRINUSE);
    close(other);
    CHECK(listen(ls, 1) == 0);
    glen = sizeof got;
    CHECK(getsockname(ls, (struct sockaddr *)&got, &glen) == 0);
    CHECK(glen == len && memcmp(&got, &sa, len) == 0);

    int c = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    CHECK(connect(c, (struct sockaddr *)&sa, len) == 0);
    int a = accept(ls, NULL, NULL);
    CHECK(a >= 0);
    CHECK(send(c, "msg1", 4, 0) == 4);
    CHECK(send(c, "msg22", 5, 0) == 5);
    CHECK(recv(a, buf, sizeof buf, 0) == 4);
    CHECK(recv(a, buf, sizeof buf, 0) == 5 && memcmp(buf, "msg22", 5) == 0);
    close(a);
    close(c);
    close(ls);

    /* Once closed, the name is free again and connecting is refused. */
    c = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    CHECK_ERR(connect(c, (struct sockaddr *)&sa, len), ECONNREFUSED);
    ls = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    CHECK(bind(ls, (struct sockaddr *)&sa, len) == 0);
    close(ls);
    close(c);

    /* Autobind: an address of just the family picks an abstract name. */
    int s = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un fam = {.sun_family = AF_UNIX};
    CHECK(bind(s, (struct sockaddr *)&fam, sizeof(sa_family_t)) == 0);
    glen = sizeof got;
    CHECK(getsockname(s, (struct sockaddr *)&got, &glen) == 0);
    CHECK(glen == offsetof(struct sockaddr_un, sun_path) + 6);
    CHECK(got.sun_path[0] == 0);
    for (int i = 1; i < 6; i++)
        CHECK(strchr("0123456789abcdef", got.sun_path[i]) != NULL);
    /* Others can send to it by that name. */
    int t = socket(AF_UNIX, SOCK_DGRAM, 0);
    CHECK(sendto(t, "hi", 2, 0, (struct sockaddr *)&got, glen) == 2);
    CHECK(recv(s, buf, sizeof buf, 0) == 2);
    close(t);
    close(s);

    /* Bad addresses. */
    s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un bad = {.sun_family = AF_INET};
    CHECK_ERR(bind(s, (struct sockaddr *)&bad, sizeof bad), EINVAL);
    CHECK_ERR(connect(s, (struct sockaddr *)&fam, 1), EINVAL);
    CHECK_ERR(connect(s, (struct sockaddr *)&fam, sizeof fam + 1), EINVAL);
    close(s);
}

static void test_scm_rights(void)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);

    /* The child exists before the pipe: it can only get it by message. */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(sv[0]);
        int fd = recv_fd(sv[1], MSG_CMSG_CLOEXEC);
        CHECK(fcntl(fd, F_GETFD) == FD_CLOEXEC);
        struct stat st;
        CHECK(fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode));
        char b[32];
        ssize_t n = read(fd, b, sizeof b);
        CHECK(n == 12 && memcmp(b, "through pipe", 12) == 0);
        close(fd);
        /* And a second one, without MSG_CMSG_CLOEXEC. */
        fd = recv_fd(sv[1], 0);
        CHECK(fcntl(fd, F_GETFD) == 0);
        CHECK(write(fd, "answer", 6) == 6);
        close(fd);
        CHECK(write(sv[1], "done", 4) == 4);
        _exit(0);
    }
    close(sv[1]);
    int p[2], q[2];
    CHECK(pipe(p) == 0 && pipe(q) == 0);
    send_fd(sv[0], p[0]);
    close(p[0]);                                   /* in flight: still open */
    CHECK(write(p[1], "through pipe", 12) == 12);
    close(p[1]);
    send_fd(sv[0], q[1]);
    close(q[1]);
    char buf[16];
    CHECK(read(q[0], buf, sizeof buf) == 6 && memcmp(buf, "answer", 6) == 0);
    CHECK(read(q[0], buf, sizeof buf) == 0);       /* every writer is closed */
    CHECK(read(sv[0], buf, sizeof buf) == 4);
    close(q[0]);
    wait_child(pid);
    close(sv[0]);

    /* Control space too small: MSG_CTRUNC and the fd is closed. */
    CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) == 0);
    CHECK(pipe(p) == 0);
    send_fd(sv[0], p[1]);
    close(p[1]);
    char c;
    struct iovec iov = {&c, 1};
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    CHECK(recvmsg(sv[1], &msg, 0) == 1);
    CHECK(msg.msg_flags & MSG_CTRUNC);
    CHECK(read(p[0], buf, sizeof buf) == 0);       /* the write end is gone */
    close(p[0]);
    /* A bad fd cannot be sent. */
    char cbuf[CMSG_SPACE(sizeof(int))];
    msg.msg_control = cbuf;
    msg.msg_controllen = sizeof cbuf;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    int badfd = 999;
    memcpy(CMSG_DATA(cm), &badfd, sizeof badfd);
    CHECK_ERR(sendmsg(sv[0], &msg, 0), EBADF);
    /* A message dropped unread releases its fds. */
    CHECK(pipe(p) == 0);
    send_fd(sv[0], p[1]);
    close(p[1]);
    close(sv[1]);
    CHECK(read(p[0], buf, sizeof buf) == 0);
    close(p[0]);
    close(sv[0]);
}

static void test_scm_credentials(void)
{
    int sv[2], on = 1;
    CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) == 0);
    CHECK(setsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &on, sizeof on) == 0);
    int v;
    socklen_t len = sizeof v;
    CHECK(getsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &v, &len) == 0 && v == 1);

    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        CHECK(send(sv[0], "cred", 4, 0) == 4);
        _exit(0);
    }
    wait_child(pid);
    char b[8];
    struct iovec iov = {b, sizeof b};
    union {
        char buf[CMSG_SPACE(sizeof(struct ucred))];
        struct cmsghdr align;
    } u;
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = u.buf;
    msg.msg_controllen = sizeof u.buf;
    CHECK(recvmsg(sv[1], &msg, 0) == 4);
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    CHECK(cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_CREDENTIALS);
    CHECK(cm->cmsg_len == CMSG_LEN(sizeof(struct ucred)));
    struct ucred cr;
    memcpy(&cr, CMSG_DATA(cm), sizeof cr);
    CHECK(cr.pid == pid && cr.uid == getuid() && cr.gid == getgid());

    /* Explicit credentials: our own are accepted. */
    struct ucred mine = {getpid(), getuid(), getgid()};
    msg.msg_controllen = sizeof u.buf;
    cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_CREDENTIALS;
    cm->cmsg_len = CMSG_LEN(sizeof mine);
    memcpy(CMSG_DATA(cm), &mine, sizeof mine);
    iov.iov_len = 2;
    CHECK(sendmsg(sv[0], &msg, 0) == 2);
    iov.iov_len = sizeof b;
    msg.msg_controllen = sizeof u.buf;
    CHECK(recvmsg(sv[1], &msg, 0) == 2);
    cm = CMSG_FIRSTHDR(&msg);
    CHECK(cm && cm->cmsg_type == SCM_CREDENTIALS);
    memcpy(&cr, CMSG_DATA(cm), sizeof cr);
    CHECK(cr.pid == getpid());
    close(sv[0]);
    close(sv[1]);
}

static void test_poll_hup(void)
{
    int sv[2];
    char buf[8];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    struct pollfd pfd[2] = {{sv[0], POLLIN | POLLOUT, 0}, {sv[1], POLLIN, 0}};
    CHECK(poll(pfd, 2, 0) == 1);
    CHECK(pfd[0].revents == POLLOUT && pfd[1].revents == 0);
    CHECK(write(sv[0], "x", 1) == 1);
    CHECK(poll(pfd, 2, 0) == 2 && pfd[1].revents == POLLIN);

    /* epoll sees the same. */
    int ep = epoll_create1(EPOLL_CLOEXEC);
    CHECK(ep >= 0);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = 7};
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, sv[1], &ev) == 0);
    struct epoll_event out[2];
    CHECK(epoll_wait(ep, out, 2, 0) == 1 && out[0].data.u32 == 7 && out[0].events == EPOLLIN);
    CHECK(read(sv[1], buf, sizeof buf) == 1);
    CHECK(epoll_wait(ep, out, 2, 0) == 0);

    /* A child closes its end later: the blocked poll wakes with HUP. */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(sv[1]);
        usleep(20000);
        close(sv[0]);
        _exit(0);
    }
    close(sv[0]);
    pfd[1].events = POLLIN;
    CHECK(poll(&pfd[1], 1, 5000) == 1);
    CHECK(pfd[1].revents == (POLLIN | POLLHUP));
    CHECK(epoll_wait(ep, out, 2, 0) == 1);
    CHECK(out[0].events == (EPOLLIN | EPOLLRDHUP | EPOLLHUP));
    CHECK(read(sv[1], buf, sizeof buf) == 0);
    wait_child(pid);

    /* Writing to a closed peer: EPIPE, SIGPIPE unless MSG_NOSIGNAL. */
    CHECK_ERR(send(sv[1], "x", 1, MSG_NOSIGNAL), EPIPE);
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    CHECK(sigprocmask(SIG_BLOCK, &set, &old) == 0);
    CHECK_ERR(write(sv[1], "x", 1), EPIPE);
    sigset_t pend;
    CHECK(sigpending(&pend) == 0 && sigismember(&pend, SIGPIPE));
    int sig;
    CHECK(sigwait(&set, &sig) == 0 && sig == SIGPIPE);
    CHECK_ERR(send(sv[1], "x", 1, MSG_NOSIGNAL), EPIPE);
    CHECK(sigpending(&pend) == 0 && !sigismember(&pend, SIGPIPE));
    CHECK(sigprocmask(SIG_SETMASK, &old, NULL) == 0);
    close(sv[1]);
    close(ep);

    /* An unconnected stream socket polls as HUP|OUT. */
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct pollfd one = {s, POLLIN | POLLOUT, 0};
    CHECK(poll(&one, 1, 0) == 1 && one.revents == (POLLOUT | POLLHUP));
    CHECK_ERR(send(s, "x", 1, MSG_NOSIGNAL), ENOTCONN);
    CHECK_ERR(read(s, buf, 1), EINVAL);
    struct sockaddr_un sa;
    socklen_t len = sizeof sa;
    CHECK_ERR(getpeername(s, (struct sockaddr *)&sa, &len), ENOTCONN);
    close(s);

    /* A full non-blocking stream: EAGAIN, then POLLOUT once drained. */
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    static char chunk[4096];
    long total = 0;
    for (;;) {
        ssize_t n = write(sv[0], chunk, sizeof chunk);
        if (n < 0) {
            CHECK(errno == EAGAIN);
            break;
        }
        total += n;
        CHECK(total < (64 << 20));
    }
    CHECK(total > 4096);
    struct pollfd w = {sv[0], POLLOUT, 0};
    CHECK(poll(&w, 1, 0) == 0);
    while (total > 0) {
        ssize_t n = read(sv[1], chunk, sizeof chunk);
        CHECK(n > 0);
        total -= n;
    }
    CHECK_ERR(read(sv[1], chunk, sizeof chunk), EAGAIN);
    CHECK(poll(&w, 1, 0) == 1 && w.revents == POLLOUT);
    close(sv[0]);
    close(sv[1]);
}

int main(void)
{
    strcpy(dir, "/tmp/pyvisor-unix-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    test_stream_pair();
    test_dgram_pair();
    test_listen_path();
    test_abstract();
    test_scm_rights();
    test_scm_credentials();
    test_poll_hup();
    CHECK(rmdir(dir) == 0);
    ok();
    return 0;
}
