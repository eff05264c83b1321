/* AF_UNIX details, printed for comparison with Linux: sends after one's own
 * SHUT_WR (EPIPE; SIGPIPE from write(2) only on a stream), zero-length
 * writes (an empty datagram; nothing on a stream), a shut-down sender of a
 * shared datagram receiver, SCM_CREDENTIALS checks (ESRCH, EINVAL, EPERM
 * without CAP_SYS_ADMIN), SO_SNDBUF/SO_RCVBUF ceilings, and the mode of a
 * bound path (the socket's fchmod'ed mode less the umask).  Run as root.
 * Linux: net/unix/af_unix.c, net/core/scm.c, net/core/sock.c. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/capability.h>
#include <signal.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include "check.h"

static volatile int sigpipes;

static void on_sigpipe(int sig)
{
    (void)sig;
    sigpipes++;
}

static const char *res(long r)
{
    static char buf[64];
    if (r < 0)
        snprintf(buf, sizeof buf, "-1 %s", strerrorname_np(errno));
    else
        snprintf(buf, sizeof buf, "%ld", r);
    return buf;
}

static const char *tname(int type)
{
    return type == SOCK_STREAM ? "stream" : type == SOCK_DGRAM ? "dgram" : "seqpacket";
}

static void shut_wr(int type)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, type, 0, sv) == 0);
    CHECK(send(sv[1], "abc", 3, 0) == 3);
    CHECK(shutdown(sv[1], SHUT_WR) == 0);
    sigpipes = 0;
    printf("%s send after SHUT_WR: %s\n", tname(type), res(send(sv[1], "abc", 3, MSG_NOSIGNAL)));
    printf("%s write after SHUT_WR: %s", tname(type), res(write(sv[1], "abc", 3)));
    printf(" sigpipes %d\n", sigpipes);
    char buf[8];
    printf("%s peer reads: %s\n", tname(type), res(recv(sv[0], buf, sizeof buf, MSG_DONTWAIT)));
    printf("%s peer reads again: %s\n", tname(type), res(recv(sv[0], buf, sizeof buf, MSG_DONTWAIT)));
    printf("%s peer sends back: %s\n", tname(type), res(send(sv[0], "x", 1, MSG_NOSIGNAL)));
    close(sv[0]);
    close(sv[1]);
}

static void zero_writes(int type)
{
    int sv[2];
    char buf[8];
    CHECK(socketpair(AF_UNIX, type | SOCK_NONBLOCK, 0, sv) == 0);
    printf("%s write 0: %s\n", tname(type), res(write(sv[1], buf, 0)));
    printf("%s read after it: %s\n", tname(type), res(read(sv[0], buf, sizeof buf)));
    struct iovec iov = {buf, 0};
    printf("%s writev 0: %s\n", tname(type), res(writev(sv[1], &iov, 1)));
    printf("%s read after it: %s\n", tname(type), res(read(sv[0], buf, sizeof buf)));
    printf("%s read 0 of nothing: %s\n", tname(type), res(read(sv[0], buf, 0)));
    close(sv[0]);
    close(sv[1]);
}

static void shared_receiver(void)
{
    int rx = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    int s1 = socket(AF_UNIX, SOCK_DGRAM, 0), s2 = socket(AF_UNIX, SOCK_DGRAM, 0);
    CHECK(rx >= 0 && s1 >= 0 && s2 >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int n = snprintf(sa.sun_path + 1, sizeof sa.sun_path - 1, "dgram-sem-%d", (int)getpid());
    socklen_t len = offsetof(struct sockaddr_un, sun_path) + 1 + n;
    CHECK(bind(rx, (struct sockaddr *)&sa, len) == 0);
    CHECK(connect(s1, (struct sockaddr *)&sa, len) == 0);
    CHECK(connect(s2, (struct sockaddr *)&sa, len) == 0);
    CHECK(send(s1, "one", 3, 0) == 3);
    CHECK(shutdown(s1, SHUT_WR) == 0);
    printf("shared: shut sender: %s\n", res(send(s1, "two", 3, MSG_NOSIGNAL)));
    printf("shared: other sender: %s\n", res(send(s2, "xyz", 3, 0)));
    char buf[8];
    printf("shared: recv %s\n", res(recv(rx, buf, sizeof buf, 0)));
    printf("shared: recv %s\n", res(recv(rx, buf, sizeof buf, 0)));
    printf("shared: recv %s\n", res(recv(rx, buf, sizeof buf, 0)));
    close(rx);
    close(s1);
    close(s2);
}

static long send_creds(int fd, pid_t pid, uid_t uid, gid_t gid)
{
    char c = 'c';
    struct iovec iov = {&c, 1};
    union {
        char buf[CMSG_SPACE(sizeof(struct ucred))];
        struct cmsghdr align;
    } u;
    memset(&u, 0, sizeof u);
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1,
                         .msg_control = u.buf, .msg_controllen = sizeof u.buf};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_CREDENTIALS;
    cm->cmsg_len = CMSG_LEN(sizeof(struct ucred));
    struct ucred cr = {pid, uid, gid};
    memcpy(CMSG_DATA(cm), &cr, sizeof cr);
    return sendmsg(fd, &msg, 0);
}

static void creds(void)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) == 0);
    int one = 1;
    CHECK(setsockopt(sv[0], SOL_SOCKET, SO_PASSCRED, &one, sizeof one) == 0);
    int pfd[2];
    CHECK(pipe(pfd) == 0);
    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        char b;
        close(pfd[1]);
        read(pfd[0], &b, 1);
        _exit(0);
    }
    close(pfd[0]);
    printf("creds own: %s\n", res(send_creds(sv[1], getpid(), getuid(), getgid())));
    printf("creds child pid: %s\n", res(send_creds(sv[1], child, getuid(), getgid())));
    printf("creds pid -1: %s\n", res(send_creds(sv[1], -1, getuid(), getgid())));
    printf("creds uid -1: %s\n", res(send_creds(sv[1], getpid(), (uid_t)-1, getgid())));
    printf("creds gid -1: %s\n", res(send_creds(sv[1], getpid(), getuid(), (gid_t)-1)));
    printf("creds other uid as root: %s\n", res(send_creds(sv[1], getpid(), 1234, getgid())));

    /* Without CAP_SYS_ADMIN: only one's own pid. */
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    CHECK(syscall(SYS_capget, &hdr, data) == 0);
    data[CAP_SYS_ADMIN / 32].effective &= ~(1u << (CAP_SYS_ADMIN % 32));
    CHECK(syscall(SYS_capset, &hdr, data) == 0);
    printf("nocap own: %s\n", res(send_creds(sv[1], getpid(), getuid(), getgid())));
    printf("nocap child pid: %s\n", res(send_creds(sv[1], child, getuid(), getgid())));
    printf("nocap pid -1: %s\n", res(send_creds(sv[1], -1, getuid(), getgid())));
    data[CAP_SYS_ADMIN / 32].effective |= 1u << (CAP_SYS_ADMIN % 32);
    CHECK(syscall(SYS_capset, &hdr, data) == 0);

    /* The receiver sees what was sent: own pid, then the child's. */
    char c;
    for (int i = 0; i < 4; i++) {
        union {
            char buf[CMSG_SPACE(sizeof(struct ucred))];
            struct cmsghdr align;
        } u;
        struct iovec iov = {&c, 1};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1,
                             .msg_control = u.buf, .msg_controllen = sizeof u.buf};
        if (recvmsg(sv[0], &msg, MSG_DONTWAIT) < 0)
            break;
        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
        CHECK(cm && cm->cmsg_type == SCM_CREDENTIALS);
        struct ucred cr;
        memcpy(&cr, CMSG_DATA(cm), sizeof cr);
        printf("received: pid %s uid %u\n", cr.pid == getpid() ? "self" :
               cr.pid == child ? "child" : "other", cr.uid);
    }
    close(pfd[1]);
    CHECK(waitpid(child, NULL, 0) == child);
    close(sv[0]);
    close(sv[1]);
}

static void buffers(void)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    CHECK(fd >= 0);
    int v, got;
    socklen_t len = sizeof got;
    int maxes[2];
    const char *files[2] = {"/proc/sys/net/core/wmem_max", "/proc/sys/net/core/rmem_max"};
    for (int i = 0; i < 2; i++) {
        /* The ceiling is the host's (global sysctls), read where it shows. */
        FILE *f = fopen(files[i], "r");
        maxes[i] = 212992;
        if (f) {
            CHECK(fscanf(f, "%d", &maxes[i]) == 1);
            fclose(f);
        }
    }
    v = 1 << 30;
    CHECK(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v) == 0);
    CHECK(getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &got, &len) == 0);
    printf("sndbuf huge: %s\n", got == 2 * maxes[0] ? "2*wmem_max" : "other");
    CHECK(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof v) == 0);
    CHECK(getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &got, &len) == 0);
    printf("rcvbuf huge: %s\n", got == 2 * maxes[1] ? "2*rmem_max" : "other");
    v = 100000;
    CHECK(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v) == 0);
    CHECK(getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &got, &len) == 0);
    printf("sndbuf 100000: %d\n", got);
    v = 1;
    CHECK(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v) == 0);
    CHECK(getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &got, &len) == 0);
    printf("sndbuf 1: %d\n", got);
    close(fd);
}

static void bound_mode(void)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    CHECK(fchmod(fd, 0765) == 0);
    mode_t old = umask(0123);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "/tmp/unix-mode-%d", (int)getpid());
    unlink(sa.sun_path);
    CHECK(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    umask(old);
    struct stat st;
    CHECK(stat(sa.sun_path, &st) == 0);
    printf("bound node mode: %o\n", (unsigned)st.st_mode);
    CHECK(unlink(sa.sun_path) == 0);
    close(fd);
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    signal(SIGPIPE, SIG_DFL);
    shut_wr(SOCK_DGRAM);
    shut_wr(SOCK_SEQPACKET);
    signal(SIGPIPE, on_sigpipe);
    shut_wr(SOCK_STREAM);
    zero_writes(SOCK_DGRAM);
    zero_writes(SOCK_SEQPACKET);
    zero_writes(SOCK_STREAM);
    shared_receiver();
    creds();
    buffers();
    bound_mode();
    ok();
    return 0;
}
