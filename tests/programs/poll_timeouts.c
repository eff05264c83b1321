/* select/pselect6/ppoll write the time left back to their timeout (not a zero
 * one, not under STICKY_TIMEOUTS); sigset sizes; select clamps nfds to the fd
 * table, not RLIMIT_NOFILE; personality(2) personas and flags are inherited.
 * Linux: fs/select.c poll_select_finish, kernel/exec_domain.c. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/personality.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include "check.h"

static long sys_pselect6(int n, fd_set *r, struct timespec *ts, void *mask)
{
    return syscall(SYS_pselect6, n, r, NULL, NULL, ts, mask);
}

int main(void)
{
    struct timeval tv = {0, 10000};
    CHECK(syscall(SYS_select, 1, NULL, NULL, NULL, &tv) == 0);
    CHECK(tv.tv_sec == 0 && tv.tv_usec == 0);
    struct timespec ts = {0, 10000000};
    CHECK(sys_pselect6(1, NULL, &ts, NULL) == 0);
    CHECK(ts.tv_sec == 0 && ts.tv_nsec == 0);
    ts.tv_nsec = 10000000;
    CHECK(syscall(SYS_ppoll, NULL, 0, &ts, NULL, 8) == 0);
    CHECK(ts.tv_sec == 0 && ts.tv_nsec == 0);

    /* A ready fd: the time left is written and is most of the timeout. */
    int p[2];
    CHECK(pipe(p) == 0);
    CHECK(write(p[1], "x", 1) == 1);
    struct pollfd pfd = {p[0], POLLIN, 0};
    ts.tv_sec = 100;
    ts.tv_nsec = 0;
    CHECK(syscall(SYS_ppoll, &pfd, 1, &ts, NULL, 8) == 1);
    CHECK(ts.tv_sec >= 50 && ts.tv_sec < 100);
    fd_set rs;
    FD_ZERO(&rs);
    FD_SET(p[0], &rs);
    tv.tv_sec = 100;
    tv.tv_usec = 0;
    CHECK(syscall(SYS_select, p[0] + 1, &rs, NULL, NULL, &tv) == 1);
    CHECK(tv.tv_sec >= 50 && tv.tv_sec < 100);

    /* Sigset sizes: only sizeof(sigset_t) for the kernel, 8. */
    sigset_t set;
    sigemptyset(&set);
    ts.tv_sec = ts.tv_nsec = 0;
    CHECK_ERR(syscall(SYS_ppoll, NULL, 0, &ts, &set, 128), EINVAL);
    CHECK(syscall(SYS_ppoll, NULL, 0, &ts, NULL, 128) == 0);
    struct { void *p; size_t n; } m = {&set, 7};
    CHECK_ERR(sys_pselect6(1, NULL, &ts, &m), EINVAL);
    m.p = NULL;
    CHECK(sys_pselect6(1, NULL, &ts, &m) == 0);
    m.p = &set;
    m.n = 8;
    CHECK(sys_pselect6(1, NULL, &ts, &m) == 0);

    /* select ignores RLIMIT_NOFILE (sshd relies on it); poll does not. */
    struct rlimit old, zero = {0, 0};
    CHECK(getrlimit(RLIMIT_NOFILE, &old) == 0);
    zero.rlim_max = old.rlim_max;
    CHECK(setrlimit(RLIMIT_NOFILE, &zero) == 0);
    tv.tv_sec = tv.tv_usec = 0;
    CHECK(syscall(SYS_select, p[0] + 1, &rs, NULL, NULL, &tv) == 1);
    CHECK_ERR(poll(&pfd, 1, 0), EINVAL);
    CHECK(setrlimit(RLIMIT_NOFILE, &old) == 0);
    /* Bits past the fd table are ignored; an unopened fd inside it is EBADF. */
    fd_set big[4];
    memset(big, 0, sizeof big);
    FD_SET(p[0], &big[0]);
    ((unsigned long *)big)[(4 * sizeof(fd_set)) / 8 - 1] = 1UL << 63;
    tv.tv_sec = tv.tv_usec = 0;
    CHECK(syscall(SYS_select, 4 * FD_SETSIZE, big, NULL, NULL, &tv) == 1);
    FD_ZERO(&rs);
    FD_SET(60, &rs);
    CHECK_ERR(syscall(SYS_select, 61, &rs, NULL, NULL, &tv), EBADF);

    /* personality: personas and flags, kept across fork. */
    CHECK(personality(0xffffffff) == PER_LINUX);
    pid_t c = fork();
    if (c == 0) {
        CHECK(personality(PER_BSD | SHORT_INODE) == PER_LINUX);
        CHECK(personality(WHOLE_SECONDS | STICKY_TIMEOUTS) == (PER_BSD | SHORT_INODE));
        pid_t g = fork();
        if (g == 0) {
            CHECK(personality(0xffffffff) == (WHOLE_SECONDS | STICKY_TIMEOUTS));
            /* STICKY_TIMEOUTS: the timeout is left as it was. */
            struct timespec s = {0, 1000000};
            CHECK(syscall(SYS_ppoll, NULL, 0, &s, NULL, 8) == 0);
            CHECK(s.tv_sec == 0 && s.tv_nsec == 1000000);
            struct timeval v = {0, 1000};
            CHECK(syscall(SYS_select, 0, NULL, NULL, NULL, &v) == 0);
            CHECK(v.tv_sec == 0 && v.tv_usec == 1000);
            _exit(0);
        }
        int st;
        CHECK(waitpid(g, &st, 0) == g && WIFEXITED(st) && WEXITSTATUS(st) == 0);
        _exit(0);
    }
    int st;
    CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(personality(0xffffffff) == PER_LINUX);
    ok();
    return 0;
}
