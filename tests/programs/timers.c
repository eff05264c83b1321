/* timerfd and POSIX timers (issue #10): expirations counted and reset, absolute
 * and periodic timers, non-blocking reads, the sigevent kinds, overruns while
 * the timer's signal is blocked, and the errnos of bad arguments. */
#define _GNU_SOURCE
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>
#include "check.h"

static int64_t mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void timerfd(void)
{
    int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    CHECK(fd >= 0);
    uint64_t n;
    CHECK_ERR(read(fd, &n, sizeof n), EAGAIN);            /* disarmed */
    struct itimerspec its = {{0, 10000000}, {0, 10000000}};   /* 10 ms, periodic */
    CHECK(timerfd_settime(fd, 0, &its, NULL) == 0);
    struct itimerspec cur;
    CHECK(timerfd_gettime(fd, &cur) == 0);
    CHECK(cur.it_interval.tv_nsec == 10000000 && cur.it_value.tv_sec == 0);
    CHECK(cur.it_value.tv_nsec > 0 && cur.it_value.tv_nsec <= 10000000);
    usleep(55000);
    CHECK(read(fd, &n, sizeof n) == 8);
    CHECK(n >= 4);                                        /* expirations since arming */
    CHECK_ERR(read(fd, &n, 4), EINVAL);
    struct pollfd p = {fd, POLLIN, 0};
    CHECK(poll(&p, 1, 1000) == 1 && p.revents == POLLIN);
    CHECK(read(fd, &n, sizeof n) == 8 && n >= 1);
    /* Disarm; the old setting comes back. */
    struct itimerspec zero = {{0, 0}, {0, 0}}, old;
    CHECK(timerfd_settime(fd, 0, &zero, &old) == 0);
    CHECK(old.it_interval.tv_nsec == 10000000);
    CHECK_ERR(read(fd, &n, sizeof n), EAGAIN);
    close(fd);

    /* Absolute, blocking: the read waits for the deadline. */
    fd = timerfd_create(CLOCK_MONOTONIC, 0);
    CHECK(fd >= 0);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t start = mono_ns();
    struct itimerspec abs = {{0, 0}, {now.tv_sec, now.tv_nsec}};
    abs.it_value.tv_nsec += 30000000;
    if (abs.it_value.tv_nsec >= 1000000000) {
        abs.it_value.tv_sec++;
        abs.it_value.tv_nsec -= 1000000000;
    }
    CHECK(timerfd_settime(fd, TFD_TIMER_ABSTIME, &abs, NULL) == 0);
    CHECK(read(fd, &n, sizeof n) == 8 && n == 1);
    CHECK(mono_ns() - start >= 29000000);
    /* A deadline in the past expires at once. */
    struct itimerspec past = {{0, 0}, {0, 1}};
    CHECK(timerfd_settime(fd, TFD_TIMER_ABSTIME, &past, NULL) == 0);
    CHECK(read(fd, &n, sizeof n) == 8 && n == 1);
    struct itimerspec bad = {{0, 0}, {0, 1000000000}};
    CHECK_ERR(timerfd_settime(fd, 0, &bad, NULL), EINVAL);
    CHECK_ERR(timerfd_settime(fd, 4, &its, NULL), EINVAL);
    close(fd);
    CHECK_ERR(timerfd_create(CLOCK_PROCESS_CPUTIME_ID, 0), EINVAL);
    CHECK_ERR(timerfd_create(CLOCK_MONOTONIC, 0x10), EINVAL);
    CHECK_ERR(timerfd_settime(0, 0, &its, NULL), EINVAL);   /* not a timerfd */
}

static volatile sig_atomic_t got;
static volatile int got_code, got_timerid, got_value;

static void handler(int sig, siginfo_t *si, void *ctx)
{
    (void)sig; (void)ctx;
    got++;
    got_code = si->si_code;
    got_timerid = si->si_timerid;
    got_value = si->si_value.sival_int;
}

static void posix_timers(void)
{
    struct sigaction sa = {0};
    sa.sa_sigaction = handler;
    sa.sa_flags = SA_SIGINFO;
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);

    struct sigevent sev = {0};
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = SIGUSR1;
    sev.sigev_value.sival_int = 77;
    timer_t t1;
    CHECK(timer_create(CLOCK_MONOTONIC, &sev, &t1) == 0);
    struct itimerspec its = {{0, 0}, {0, 20000000}};
    CHECK(timer_settime(t1, 0, &its, NULL) == 0);
    while (!got)
        pause();
    CHECK(got_code == SI_TIMER && got_value == 77 && got_timerid == (int)(intptr_t)t1);
    struct itimerspec cur;
    CHECK(timer_gettime(t1, &cur) == 0 && cur.it_value.tv_sec == 0 && cur.it_value.tv_nsec == 0);

    /* Periodic with the signal blocked: one signal, the rest are overruns. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    CHECK(sigprocmask(SIG_BLOCK, &set, NULL) == 0);
    struct itimerspec per = {{0, 10000000}, {0, 10000000}};
    CHECK(timer_settime(t1, 0, &per, NULL) == 0);
    usleep(65000);
    siginfo_t si;
    struct timespec zero = {0, 0};
    CHECK(sigtimedwait(&set, &si, &zero) == SIGUSR1);
    CHECK(si.si_code == SI_TIMER && si.si_overrun >= 3);
    CHECK(timer_getoverrun(t1) >= 3);
    CHECK(timer_delete(t1) == 0);
    sigtimedwait(&set, &si, &zero);                   /* one more may have come */
    CHECK(sigprocmask(SIG_UNBLOCK, &set, NULL) == 0);
    CHECK_ERR(timer_delete(t1), EINVAL);
    CHECK_ERR(timer_settime(t1, 0, &its, NULL), EINVAL);

    /* SIGEV_THREAD_ID names a thread of this process; SIGEV_NONE only counts. */
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev._sigev_un._tid = gettid();
    timer_t t2;
    CHECK(timer_create(CLOCK_MONOTONIC, &sev, &t2) == 0);
    got = 0;
    CHECK(timer_settime(t2, 0, &its, NULL) == 0);
    while (!got)
        pause();
    CHECK(timer_delete(t2) == 0);
    sev._sigev_un._tid = 1 << 30;
    CHECK_ERR(timer_create(CLOCK_MONOTONIC, &sev, &t2), EINVAL);
    sev.sigev_notify = SIGEV_NONE;
    CHECK(timer_create(CLOCK_MONOTONIC, &sev, &t2) == 0);
    CHECK(timer_settime(t2, 0, &its, NULL) == 0);
    CHECK(timer_gettime(t2, &cur) == 0 && cur.it_value.tv_nsec > 0);
    CHECK(timer_delete(t2) == 0);
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = 0;
    CHECK_ERR(timer_create(CLOCK_MONOTONIC, &sev, &t2), EINVAL);
    CHECK_ERR(timer_create(1234, NULL, &t2), EINVAL);

    /* A CPU-time timer fires after CPU time. */
    sev.sigev_signo = SIGUSR1;
    timer_t t3;
    CHECK(timer_create(CLOCK_PROCESS_CPUTIME_ID, &sev, &t3) == 0);
    got = 0;
    CHECK(timer_settime(t3, 0, &its, NULL) == 0);
    while (!got)
        ;
    CHECK(timer_delete(t3) == 0);
    struct itimerspec neg = {{0, -2}, {0, 1000000}};
    CHECK(timer_create(CLOCK_MONOTONIC, NULL, &t3) == 0);
    CHECK_ERR(timer_settime(t3, 0, &neg, NULL), EINVAL);
    CHECK(timer_delete(t3) == 0);
}

int main(void)
{
    timerfd();
    posix_timers();
    ok();
    return 0;
}
