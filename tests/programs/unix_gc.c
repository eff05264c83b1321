/* Garbage collection of AF_UNIX sockets kept alive only by their own files
 * in flight, printed for comparison with Linux: a socket sent over itself,
 * two sockets sent to each other, and a listener holding a connection whose
 * queue holds the listener, each carrying a pipe's write end, are freed once
 * closed (the pipe's reader sees EOF); a socket in flight in an open
 * socket's queue is not.  Linux: net/unix/garbage.c (its collector runs
 * from a workqueue, so the reader polls for a few seconds). */
#define _GNU_SOURCE
#include <poll.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include "check.h"

static void send_fds(int sock, int a, int b)
{
    char c = 'x';
    struct iovec iov = {&c, 1};
    union {
        char buf[CMSG_SPACE(2 * sizeof(int))];
        struct cmsghdr align;
    } u;
    memset(&u, 0, sizeof u);
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1,
                         .msg_control = u.buf, .msg_controllen = sizeof u.buf};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(2 * sizeof(int));
    int fds[2] = {a, b};
    memcpy(CMSG_DATA(cm), fds, sizeof fds);
    CHECK(sendmsg(sock, &msg, 0) == 1);
}

/* Closes an unrelated pair (a unix release, which runs the collector). */
static void nudge(void)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    close(sv[0]);
    close(sv[1]);
}

static const char *pipe_state(int rd, int ms)
{
    nudge();
    struct pollfd p = {rd, POLLIN, 0};
    int n = poll(&p, 1, ms);
    if (n == 0)
        return "open";
    char c;
    return read(rd, &c, 1) == 0 ? "EOF" : "data";
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    int p[2], sv[2], sw[2];

    /* A socket in its own queue. */
    CHECK(pipe(p) == 0 && socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) == 0);
    send_fds(sv[1], sv[0], p[1]);                 /* queued on sv[0] */
    close(p[1]);
    close(sv[0]);
    close(sv[1]);
    printf("self cycle: %s\n", pipe_state(p[0], 5000));
    close(p[0]);

    /* Two sockets in each other's queues. */
    CHECK(pipe(p) == 0 && socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0 &&
          socketpair(AF_UNIX, SOCK_STREAM, 0, sw) == 0);
    send_fds(sv[1], sw[0], p[1]);                 /* sw[0] queued on sv[0] */
    send_fds(sw[1], sv[0], sv[0]);                /* sv[0] queued on sw[0] */
    close(p[1]);
    close(sv[0]);
    close(sw[0]);
    close(sv[1]);
    close(sw[1]);
    printf("two-socket cycle: %s\n", pipe_state(p[0], 5000));
    close(p[0]);

    /* A listener whose pending connection's queue holds the listener. */
    CHECK(pipe(p) == 0);
    int lst = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int n = snprintf(sa.sun_path + 1, sizeof sa.sun_path - 1, "gc-%d", (int)getpid());
    socklen_t alen = offsetof(struct sockaddr_un, sun_path) + 1 + n;
    CHECK(lst >= 0 && bind(lst, (struct sockaddr *)&sa, alen) == 0 && listen(lst, 4) == 0);
    int cl = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(cl >= 0 && connect(cl, (struct sockaddr *)&sa, alen) == 0);
    send_fds(cl, lst, p[1]);                      /* on the embryo, not yet accepted */
    close(p[1]);
    close(lst);
    close(cl);
    printf("listener cycle: %s\n", pipe_state(p[0], 5000));
    close(p[0]);

    /* In flight in an open socket's queue: alive until received. */
    CHECK(pipe(p) == 0 && socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) == 0);
    send_fds(sv[0], sv[0], p[1]);                 /* queued on sv[1], still open */
    close(p[1]);
    close(sv[0]);
    printf("reachable: %s\n", pipe_state(p[0], 300));
    char c;
    union {
        char buf[CMSG_SPACE(2 * sizeof(int))];
        struct cmsghdr align;
    } u;
    struct iovec iov = {&c, 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1,
                         .msg_control = u.buf, .msg_controllen = sizeof u.buf};
    CHECK(recvmsg(sv[1], &msg, 0) == 1);
    int fds[2];
    memcpy(fds, CMSG_DATA(CMSG_FIRSTHDR(&msg)), sizeof fds);
    close(fds[0]);
    close(fds[1]);
    printf("after receiving and closing: %s\n", pipe_state(p[0], 5000));
    ok();
    return 0;
}
