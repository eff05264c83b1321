/* clone3 and pidfds (issue #10): clone3 as fork, CLONE_PARENT_SETTID,
 * CLONE_CLEAR_SIGHAND, CLONE_PIDFD, pidfd_open, poll on exit,
 * pidfd_send_signal, pidfd_getfd, waitid(P_PIDFD) and the errnos. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include "check.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

static long clone3(struct clone_args *ca) { return syscall(SYS_clone3, ca, sizeof *ca); }
static int pidfd_open(pid_t pid, unsigned flags) { return syscall(SYS_pidfd_open, pid, flags); }

static void noop(int sig) { (void)sig; }

int main(void)
{
    /* clone3 as fork, with the parent tid stored. */
    struct clone_args ca = {0};
    pid_t ptid = 0;
    ca.flags = CLONE_PARENT_SETTID;
    ca.parent_tid = (uintptr_t)&ptid;
    ca.exit_signal = SIGCHLD;
    long pid = clone3(&ca);
    CHECK(pid >= 0);
    if (pid == 0)
        _exit(7);
    CHECK(ptid == pid);
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 7);

    /* CLONE_CLEAR_SIGHAND: handlers reset, ignored signals stay ignored. */
    signal(SIGUSR1, noop);
    signal(SIGUSR2, SIG_IGN);
    struct clone_args cs = {.flags = CLONE_CLEAR_SIGHAND, .exit_signal = SIGCHLD};
    pid = clone3(&cs);
    CHECK(pid >= 0);
    if (pid == 0) {
        struct sigaction a1, a2;
        sigaction(SIGUSR1, NULL, &a1);
        sigaction(SIGUSR2, NULL, &a2);
        _exit(a1.sa_handler == SIG_DFL && a2.sa_handler == SIG_IGN ? 0 : 1);
    }
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    signal(SIGUSR2, SIG_DFL);

    struct clone_args bad = {.flags = 1ULL << 63, .exit_signal = SIGCHLD};
    CHECK_ERR(clone3(&bad), EINVAL);
    struct clone_args bad2 = {.flags = CLONE_CLEAR_SIGHAND | CLONE_SIGHAND | CLONE_VM,
                              .exit_signal = SIGCHLD};
    CHECK_ERR(clone3(&bad2), EINVAL);
    CHECK_ERR(syscall(SYS_clone3, &ca, 32), EINVAL);

    /* CLONE_PIDFD: a pidfd that polls readable when the child exits. */
    int pidfd = -1;
    struct clone_args cp = {.flags = CLONE_PIDFD, .pidfd = (uintptr_t)&pidfd,
                            .exit_signal = SIGCHLD};
    pid = clone3(&cp);
    CHECK(pid >= 0);
    if (pid == 0) {
        pause();
        _exit(0);
    }
    CHECK(pidfd >= 0);
    CHECK(fcntl(pidfd, F_GETFD) == FD_CLOEXEC);
    struct pollfd p = {pidfd, POLLIN, 0};
    CHECK(poll(&p, 1, 0) == 0);
    siginfo_t si;
    CHECK(waitid(P_PIDFD, pidfd, &si, WEXITED | WNOHANG) == 0 && si.si_pid == 0);
    CHECK(syscall(SYS_pidfd_send_signal, pidfd, SIGTERM, NULL, 0) == 0);
    CHECK(poll(&p, 1, 5000) == 1 && (p.revents & POLLIN));
    CHECK(waitid(P_PIDFD, pidfd, &si, WEXITED) == 0);
    CHECK(si.si_pid == pid && si.si_code == CLD_KILLED && si.si_status == SIGTERM);
    CHECK_ERR(syscall(SYS_pidfd_send_signal, pidfd, SIGTERM, NULL, 0), ESRCH);
    close(pidfd);

    /* pidfd_open and pidfd_getfd on ourselves. */
    int self = pidfd_open(getpid(), 0);
    CHECK(self >= 0);
    int fds[2];
    CHECK(pipe(fds) == 0);
    int copy = syscall(SYS_pidfd_getfd, self, fds[1], 0);
    CHECK(copy >= 0 && copy != fds[1]);
    CHECK(write(copy, "z", 1) == 1);
    char c;
    CHECK(read(fds[0], &c, 1) == 1 && c == 'z');
    CHECK_ERR(syscall(SYS_pidfd_getfd, self, 9999, 0), EBADF);
    CHECK_ERR(syscall(SYS_pidfd_getfd, self, fds[1], 1), EINVAL);
    CHECK(syscall(SYS_pidfd_send_signal, self, 0, NULL, 0) == 0);
    CHECK_ERR(syscall(SYS_pidfd_send_signal, fds[0], 0, NULL, 0), EBADF);
    CHECK_ERR(syscall(SYS_pidfd_send_signal, self, 0, NULL, 3), EINVAL);
    CHECK_ERR(pidfd_open(0, 0), EINVAL);
    CHECK_ERR(pidfd_open(getpid(), 1), EINVAL);
    CHECK_ERR(pidfd_open(1 << 22, 0), ESRCH);
    ok();
    return 0;
}
