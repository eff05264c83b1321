/* SO_PEERPIDFD, SO_PASSPIDFD and SCM_PIDFD on AF_UNIX sockets (Linux 6.5+;
 * a reaped peer's pidfd from SO_PEERPIDFD is 6.15's PIDFD_STALE): the peer's
 * pidfd names the process that connected (waitid(P_PIDFD) reaps it), a
 * received message carries its sender's pidfd after SCM_CREDENTIALS, a
 * control buffer without room for it is MSG_CTRUNC, and a sender already
 * reaped gives -ESRCH in place of a descriptor.  Printed for comparison.
 * Linux: net/core/sock.c (SO_PEERPIDFD), include/net/scm.h (scm_pidfd_recv). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include "check.h"

#ifndef SO_PASSPIDFD
#define SO_PASSPIDFD 76
#define SO_PEERPIDFD 77
#define SCM_PIDFD 4
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

/* A child that runs `body`, then waits for the pipe to close and exits. */
static pid_t spawn(void (*body)(void *), void *arg, int *release)
{
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(p[1]);
        body(arg);
        char c;
        read(p[0], &c, 1);
        _exit(0);
    }
    close(p[0]);
    *release = p[1];
    return pid;
}

static struct sockaddr_un listen_addr;
static socklen_t listen_len;

static void connect_body(void *arg)
{
    (void)arg;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&listen_addr, listen_len) != 0)
        _exit(3);
}

static void send_body(void *arg)
{
    if (send(*(int *)arg, "x", 1, 0) != 1)
        _exit(3);
}

static const char *waited(int pidfd, pid_t want)
{
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PIDFD, pidfd, &si, WEXITED) != 0)
        return strerrorname_np(errno);
    return si.si_pid == want ? "the child" : "another process";
}

/* Receives one message and prints its control messages; returns the pidfd. */
static int receive(int fd, size_t controllen, int use_control)
{
    char c;
    struct iovec iov = {&c, 1};
    union {
        char buf[256];
        struct cmsghdr align;
    } u;
    memset(&u, 0, sizeof u);
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    if (use_control) {
        msg.msg_control = u.buf;
        msg.msg_controllen = controllen;
    }
    CHECK(recvmsg(fd, &msg, MSG_DONTWAIT) == 1);
    printf("  flags:%s", msg.msg_flags & MSG_CTRUNC ? " MSG_CTRUNC" : "");
    int pidfd = -1;
    if (use_control) {
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
            if (cm->cmsg_type == SCM_CREDENTIALS) {
                printf(" SCM_CREDENTIALS");
            } else if (cm->cmsg_type == SCM_PIDFD) {
                memcpy(&pidfd, CMSG_DATA(cm), sizeof pidfd);
                if (pidfd >= 0)
                    printf(" SCM_PIDFD(fd, cloexec %d)", !!(fcntl(pidfd, F_GETFD) & FD_CLOEXEC));
                else
                    printf(" SCM_PIDFD(%s)", strerrorname_np(-pidfd));
            } else {
                printf(" type %d", cm->cmsg_type);
            }
        }
    }
    printf("\n");
    return pidfd;
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    int one = 1, v = -1;
    socklen_t len = sizeof v;

    int lone = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(lone >= 0);
    int r = getsockopt(lone, SOL_SOCKET, SO_PEERPIDFD, &v, &len);
    printf("unconnected SO_PEERPIDFD: %d %s\n", r, r ? strerrorname_np(errno) : "");
    len = sizeof v;
    CHECK(getsockopt(lone, SOL_SOCKET, SO_PASSPIDFD, &v, &len) == 0);
    printf("SO_PASSPIDFD default %d", v);
    CHECK(setsockopt(lone, SOL_SOCKET, SO_PASSPIDFD, &one, sizeof one) == 0);
    CHECK(getsockopt(lone, SOL_SOCKET, SO_PASSPIDFD, &v, &len) == 0);
    printf(", set %d\n", v);
    close(lone);

    /* The peer's pidfd names the process that connected. */
    int lst = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(lst >= 0);
    listen_addr.sun_family = AF_UNIX;
    int n = snprintf(listen_addr.sun_path + 1, sizeof listen_addr.sun_path - 1,
                     "pidfd-%d", (int)getpid());
    listen_len = offsetof(struct sockaddr_un, sun_path) + 1 + n;
    CHECK(bind(lst, (struct sockaddr *)&listen_addr, listen_len) == 0);
    CHECK(listen(lst, 4) == 0);
    int release;
    pid_t a = spawn(connect_body, NULL, &release);
    int conn = accept(lst, NULL, NULL);
    CHECK(conn >= 0);
    int pfd = -1;
    len = sizeof pfd;
    CHECK(getsockopt(conn, SOL_SOCKET, SO_PEERPIDFD, &pfd, &len) == 0);
    printf("SO_PEERPIDFD: fd, cloexec %d\n", !!(fcntl(pfd, F_GETFD) & FD_CLOEXEC));
    close(release);
    printf("waitid on it reaps: %s\n", waited(pfd, a));
    len = sizeof v;
    r = getsockopt(conn, SOL_SOCKET, SO_PEERPIDFD, &v, &len);
    printf("SO_PEERPIDFD of a reaped peer: %s\n", r == 0 ? "fd" : strerrorname_np(errno));
    close(conn);
    close(lst);

    /* SCM_PIDFD: the sender's pidfd, after SCM_CREDENTIALS. */
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) == 0);
    CHECK(setsockopt(sv[0], SOL_SOCKET, SO_PASSPIDFD, &one, sizeof one) == 0);
    pid_t b = spawn(send_body, &sv[1], &release);
    usleep(1000);
    char c;
    CHECK(recv(sv[0], &c, 1, MSG_PEEK) == 1);
    printf("pidfd only:\n");
    int got = receive(sv[0], 256, 1);
    close(release);
    printf("waitid on the received pidfd: %s\n", got >= 0 ? waited(got, b) : "none");

    CHECK(setsockopt(sv[0], SOL_SOCKET, SO_PASSCRED, &one, sizeof one) == 0);
    for (int i = 0; i < 4; i++)
        CHECK(send(sv[1], "y", 1, 0) == 1);
    printf("creds and pidfd:\n");
    close(receive(sv[0], 256, 1));
    printf("control of 16 bytes:\n");
    receive(sv[0], 16, 1);
    printf("room for creds only:\n");
    receive(sv[0], CMSG_SPACE(sizeof(struct ucred)), 1);
    printf("no control:\n");
    receive(sv[0], 0, 0);

    /* A sender reaped before the receive: -ESRCH in place of a descriptor. */
    int rel2;
    pid_t d = spawn(send_body, &sv[1], &rel2);
    close(rel2);
    CHECK(waitpid(d, NULL, 0) == d);
    printf("sender reaped:\n");
    receive(sv[0], 256, 1);
    ok();
    return 0;
}
