/* sigaction with SA_SIGINFO, sigprocmask/sigpending, raise, SIGCHLD,
 * SA_RESTART vs EINTR, default SIGTERM, SIGSEGV recovery via siglongjmp. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <sys/wait.h>
#include "check.h"

static volatile sig_atomic_t got_signo, got_code, got_pid, got_status, count;
static volatile void *got_addr;
static int wake_fd = -1;
static sigjmp_buf env;

static void on_info(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    got_signo = si->si_signo;
    got_code = si->si_code;
    got_pid = si->si_pid;
    got_status = si->si_status;
    count++;
    CHECK(sig == si->si_signo);
}

static void on_alarm(int sig)
{
    (void)sig;
    count++;
    if (wake_fd >= 0)
        write(wake_fd, "w", 1);
}

static void on_segv(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    got_signo = si->si_signo;
    got_code = si->si_code;
    got_addr = si->si_addr;
    siglongjmp(env, 1);
}

static void handle(int sig, void (*fn)(int, siginfo_t *, void *), int flags)
{
    struct sigaction sa = {0};
    sa.sa_sigaction = fn;
    sa.sa_flags = SA_SIGINFO | flags;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(sig, &sa, NULL) == 0);
}

static void reset(void)
{
    got_signo = got_code = got_pid = got_status = count = 0;
}

/* Blocking read interrupted by alarm(); returns read's result. */
static ssize_t read_with_alarm(int restart, char *c)
{
    int p[2];
    CHECK(pipe(p) == 0);
    struct sigaction sa = {0};
    sa.sa_handler = on_alarm;
    sa.sa_flags = restart ? SA_RESTART : 0;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
    /* With SA_RESTART the handler feeds the restarted read. */
    wake_fd = restart ? p[1] : -1;
    reset();
    alarm(1);
    ssize_t n = read(p[0], c, 1);
    int e = errno;
    alarm(0);
    CHECK(count == 1);
    close(p[0]);
    close(p[1]);
    errno = e;
    return n;
}

int main(void)
{
    pid_t me = getpid();
    int status;

    /* kill(getpid()) delivers SI_USER with our pid. */
    handle(SIGUSR1, on_info, 0);
    reset();
    CHECK(kill(me, SIGUSR1) == 0);
    CHECK(count == 1);
    CHECK(got_signo == SIGUSR1 && got_code == SI_USER && got_pid == me);

    /* raise() is tgkill: SI_TKILL. */
    reset();
    CHECK(raise(SIGUSR1) == 0);
    CHECK(count == 1 && got_signo == SIGUSR1 && got_code == SI_TKILL);

    /* A blocked signal stays pending until unblocked, then is delivered. */
    sigset_t set, old, pending;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    handle(SIGUSR2, on_info, 0);
    CHECK(sigprocmask(SIG_BLOCK, &set, &old) == 0);
    CHECK(!sigismember(&old, SIGUSR2));
    reset();
    CHECK(kill(me, SIGUSR2) == 0);
    CHECK(count == 0);
    CHECK(sigpending(&pending) == 0 && sigismember(&pending, SIGUSR2));
    CHECK(sigprocmask(SIG_UNBLOCK, &set, NULL) == 0);
    CHECK(count == 1 && got_signo == SIGUSR2);
    CHECK(sigpending(&pending) == 0 && !sigismember(&pending, SIGUSR2));

    /* SIGKILL and SIGSTOP cannot be caught. */
    struct sigaction sa = {0};
    sa.sa_handler = SIG_IGN;
    CHECK_ERR(sigaction(SIGKILL, &sa, NULL), EINVAL);
    CHECK_ERR(sigaction(SIGSTOP, &sa, NULL), EINVAL);

    /* SIGCHLD on child exit, with CLD_EXITED and the child's pid. */
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    CHECK(sigprocmask(SIG_BLOCK, &set, NULL) == 0);
    handle(SIGCHLD, on_info, 0);
    reset();
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0)
        _exit(9);
    CHECK(waitid(P_PID, pid, &(siginfo_t){0}, WEXITED | WNOWAIT) == 0);
    CHECK(sigpending(&pending) == 0 && sigismember(&pending, SIGCHLD));
    CHECK(sigprocmask(SIG_UNBLOCK, &set, NULL) == 0);
    CHECK(count == 1);
    CHECK(got_signo == SIGCHLD && got_code == CLD_EXITED);
    CHECK(got_pid == pid && got_status == 9);
    CHECK(waitpid(pid, &status, 0) == pid);
    signal(SIGCHLD, SIG_DFL);

    /* Without SA_RESTART a blocking read fails with EINTR... */
    char c = 0;
    CHECK(read_with_alarm(0, &c) == -1 && errno == EINTR);
    /* ...with it, the read is restarted and returns the handler's byte. */
    CHECK(read_with_alarm(1, &c) == 1 && c == 'w');

    /* SIGTERM's default action kills. */
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        signal(SIGTERM, SIG_DFL);
        for (;;)
            pause();
    }
    CHECK(kill(pid, SIGTERM) == 0);
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM);

    /* A null write faults; the handler escapes with siglongjmp. */
    handle(SIGSEGV, on_segv, SA_NODEFER);
    reset();
    for (int i = 0; i < 2; i++) {
        if (sigsetjmp(env, 1) == 0) {
            *(volatile int *)0 = 1;
            CHECK(!"null write did not fault");
        }
        CHECK(got_signo == SIGSEGV && got_code == SEGV_MAPERR);
        CHECK(got_addr == NULL);
    }
    /* siglongjmp restored the mask: SIGSEGV is not blocked. */
    CHECK(sigprocmask(SIG_BLOCK, NULL, &old) == 0);
    CHECK(!sigismember(&old, SIGSEGV));

    ok();
    return 0;
}
