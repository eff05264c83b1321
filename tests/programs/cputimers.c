/* CPU-time accounting and timers: getrusage, times, /proc/self/stat, the CPU
 * clocks, ITIMER_PROF and ITIMER_VIRTUAL, and POSIX timers (timer_create,
 * timer_settime, timer_gettime, timer_getoverrun, timer_delete) with
 * SIGEV_SIGNAL, SIGEV_NONE and SIGEV_THREAD_ID on wall and CPU clocks.
 * Raw syscalls for the timers, so ids are the kernel's. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/times.h>
#include <sys/wait.h>
#include <time.h>
#include "check.h"

static long long ns_of(clockid_t c)
{
    struct timespec ts;
    CHECK(clock_gettime(c, &ts) == 0);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Burns CPU (user code, the vDSO's clock) until this process has used `ms` of
 * CPU by `clock`, or 20 s of wall time pass (a loaded machine). */
static void burn(clockid_t clock, long ms)
{
    long long start = ns_of(clock), wall = ns_of(CLOCK_MONOTONIC);
    volatile unsigned long x = 0;
    while (ns_of(clock) - start < ms * 1000000LL && ns_of(CLOCK_MONOTONIC) - wall < 20000000000LL)
        for (int i = 0; i < 100000; i++)
            x += i;
}

static long long tv_ns(struct timeval tv) { return tv.tv_sec * 1000000000LL + tv.tv_usec * 1000LL; }

static volatile sig_atomic_t profs, vts;
static void on_prof(int s) { (void)s; profs++; }
static void on_vt(int s) { (void)s; vts++; }

static long timer_create_(clockid_t c, struct sigevent *ev, int *id)
{
    return syscall(SYS_timer_create, c, ev, id);
}

static long timer_settime_(int id, int flags, long long value_ns, long long interval_ns,
                           struct itimerspec *old)
{
    struct itimerspec its = {{interval_ns / 1000000000, interval_ns % 1000000000},
                             {value_ns / 1000000000, value_ns % 1000000000}};
    return syscall(SYS_timer_settime, id, flags, &its, old);
}

static int wait_sig(int sig, siginfo_t *si, long ms)
{
    sigset_t set;
    struct timespec to = {ms / 1000, (ms % 1000) * 1000000};
    sigemptyset(&set);
    sigaddset(&set, sig);
    return sigtimedwait(&set, si, &to);
}

int main(void)
{
    /* --- accounting ------------------------------------------------------------ */
    burn(CLOCK_PROCESS_CPUTIME_ID, 300);
    CHECK(ns_of(CLOCK_PROCESS_CPUTIME_ID) >= 300000000LL);
    CHECK(ns_of(CLOCK_THREAD_CPUTIME_ID) >= 300000000LL);
    clockid_t mine;
    CHECK(clock_getcpuclockid(getpid(), &mine) == 0);
    CHECK(ns_of(mine) >= 300000000LL);
    struct rusage ru;
    CHECK(getrusage(RUSAGE_SELF, &ru) == 0);
    CHECK(tv_ns(ru.ru_utime) + tv_ns(ru.ru_stime) >= 200000000LL);
    CHECK(tv_ns(ru.ru_utime) > 0);
    struct tms tm;
    CHECK(times(&tm) != (clock_t)-1);
    CHECK(tm.tms_utime + tm.tms_stime >= 20 && tm.tms_cutime == 0);
    FILE *f = fopen("/proc/self/stat", "r");
    CHECK(f != NULL);
    unsigned long ut = 0, st = 0;
    CHECK(fscanf(f, "%*d %*s %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2);
    fclose(f);
    CHECK(ut + st >= 20);
    CHECK_ERR(getrusage(5, &ru), EINVAL);

    /* A child's time reaches the parent's children counters when it is reaped. */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        burn(CLOCK_PROCESS_CPUTIME_ID, 200);
        _exit(0);
    }
    CHECK(waitpid(pid, NULL, 0) == pid);
    CHECK(getrusage(RUSAGE_CHILDREN, &ru) == 0);
    CHECK(tv_ns(ru.ru_utime) + tv_ns(ru.ru_stime) >= 150000000LL);
    CHECK(times(&tm) != (clock_t)-1 && tm.tms_cutime + tm.tms_cstime >= 15);

    /* --- ITIMER_PROF and ITIMER_VIRTUAL ---------------------------------------- */
    signal(SIGPROF, on_prof);
    signal(SIGVTALRM, on_vt);
    struct itimerval it = {{0, 20000}, {0, 20000}}, cur;
    CHECK(setitimer(ITIMER_PROF, &it, NULL) == 0);
    CHECK(getitimer(ITIMER_PROF, &cur) == 0);
    CHECK(cur.it_interval.tv_usec == 20000 && cur.it_value.tv_sec == 0);
    CHECK(cur.it_value.tv_usec > 0 && cur.it_value.tv_usec <= 30000);   /* Linux: + a tick */
    long long wall = ns_of(CLOCK_MONOTONIC);
    while (profs < 3 && ns_of(CLOCK_MONOTONIC) - wall < 20000000000LL)
        burn(CLOCK_PROCESS_CPUTIME_ID, 10);
    CHECK(profs >= 3);
    struct itimerval zero = {{0, 0}, {0, 0}};
    CHECK(setitimer(ITIMER_PROF, &zero, &cur) == 0);
    CHECK(cur.it_interval.tv_usec == 20000);
    CHECK(getitimer(ITIMER_PROF, &cur) == 0 && cur.it_value.tv_usec == 0 && cur.it_value.tv_sec == 0);
    CHECK(setitimer(ITIMER_VIRTUAL, &it, NULL) == 0);
    wall = ns_of(CLOCK_MONOTONIC);
    while (vts < 2 && ns_of(CLOCK_MONOTONIC) - wall < 20000000000LL)
        burn(CLOCK_PROCESS_CPUTIME_ID, 10);
    CHECK(vts >= 2);
    CHECK(setitimer(ITIMER_VIRTUAL, &zero, NULL) == 0);

    /* --- POSIX timers ---------------------------------------------------------- */
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGRTMIN);
    sigaddset(&block, SIGRTMIN + 1);
    sigaddset(&block, SIGALRM);
    CHECK(sigprocmask(SIG_BLOCK, &block, NULL) == 0);

    /* One-shot on CLOCK_MONOTONIC: the siginfo names the timer and its value. */
    struct sigevent ev = {0};
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = SIGRTMIN;
    ev.sigev_value.sival_int = 42;
    int id;
    CHECK(timer_create_(CLOCK_MONOTONIC, &ev, &id) == 0);
    CHECK(timer_settime_(id, 0, 10000000, 0, NULL) == 0);
    siginfo_t si;
    CHECK(wait_sig(SIGRTMIN, &si, 5000) == SIGRTMIN);
    CHECK(si.si_code == SI_TIMER && si.si_value.sival_int == 42);
    CHECK(si.si_timerid == id && si.si_overrun == 0);
    struct itimerspec its;
    CHECK(syscall(SYS_timer_gettime, id, &its) == 0);
    CHECK(its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0);

    /* Periodic with its signal blocked: one signal, the rest counted as overruns. */
    ev.sigev_signo = SIGRTMIN + 1;
    int per;
    CHECK(timer_create_(CLOCK_MONOTONIC, &ev, &per) == 0 && per != id);
    CHECK(timer_settime_(per, 0, 1000000, 1000000, NULL) == 0);
    struct timespec nap = {0, 60000000};
    nanosleep(&nap, NULL);
    CHECK(wait_sig(SIGRTMIN + 1, &si, 5000) == SIGRTMIN + 1);
    CHECK(si.si_timerid == per && si.si_overrun >= 10);
    CHECK(syscall(SYS_timer_getoverrun, per) == si.si_overrun);
    CHECK(syscall(SYS_timer_gettime, per, &its) == 0);
    CHECK(its.it_interval.tv_sec == 0 && its.it_interval.tv_nsec == 1000000);
    CHECK(its.it_value.tv_sec == 0 && its.it_value.tv_nsec <= 1000000);
    CHECK(syscall(SYS_timer_delete, per) == 0);
    CHECK_ERR(syscall(SYS_timer_delete, per), EINVAL);
    CHECK_ERR(syscall(SYS_timer_gettime, per, &its), EINVAL);
    CHECK_ERR(syscall(SYS_timer_getoverrun, per), EINVAL);

    /* Absolute CLOCK_REALTIME expiry; old value returned by settime. */
    int rt;
    ev.sigev_signo = SIGRTMIN;
    CHECK(timer_create_(CLOCK_REALTIME, &ev, &rt) == 0);
    CHECK(timer_settime_(rt, 0, 10000000000LL, 0, NULL) == 0);
    struct itimerspec old;
    long long at = ns_of(CLOCK_REALTIME) + 20000000;
    CHECK(timer_settime_(rt, TIMER_ABSTIME, at, 0, &old) == 0);
    CHECK(old.it_value.tv_sec == 9 || (old.it_value.tv_sec == 10 && old.it_value.tv_nsec == 0));
    CHECK(wait_sig(SIGRTMIN, &si, 5000) == SIGRTMIN && si.si_timerid == rt);
    CHECK(ns_of(CLOCK_REALTIME) >= at);

    /* No sigevent: SIGALRM with the timer id as its value. */
    int dflt;
    CHECK(timer_create_(CLOCK_MONOTONIC, NULL, &dflt) == 0);
    CHECK(timer_settime_(dflt, 0, 5000000, 0, NULL) == 0);
    CHECK(wait_sig(SIGALRM, &si, 5000) == SIGALRM);
    CHECK(si.si_code == SI_TIMER && si.si_value.sival_int == dflt && si.si_timerid == dflt);

    /* SIGEV_NONE: counts down, never signals. */
    struct sigevent none = {0};
    none.sigev_notify = SIGEV_NONE;
    int quiet;
    CHECK(timer_create_(CLOCK_MONOTONIC, &none, &quiet) == 0);
    CHECK(timer_settime_(quiet, 0, 3000000000LL, 0, NULL) == 0);
    CHECK(syscall(SYS_timer_gettime, quiet, &its) == 0);
    CHECK(its.it_value.tv_sec == 2 || its.it_value.tv_sec == 3);

    /* SIGEV_THREAD_ID to this thread. */
    struct sigevent tev = {0};
    tev.sigev_notify = SIGEV_THREAD_ID;
    tev.sigev_signo = SIGRTMIN;
    tev._sigev_un._tid = (pid_t)syscall(SYS_gettid);
    int tt;
    CHECK(timer_create_(CLOCK_MONOTONIC, &tev, &tt) == 0);
    CHECK(timer_settime_(tt, 0, 5000000, 0, NULL) == 0);
    CHECK(wait_sig(SIGRTMIN, &si, 5000) == SIGRTMIN && si.si_timerid == tt);

    /* A CPU-time clock: fires once the process has used 50 ms of CPU. */
    int cpu;
    CHECK(timer_create_(CLOCK_PROCESS_CPUTIME_ID, &ev, &cpu) == 0);
    long long used = ns_of(CLOCK_PROCESS_CPUTIME_ID);
    CHECK(timer_settime_(cpu, 0, 50000000, 0, NULL) == 0);
    burn(CLOCK_PROCESS_CPUTIME_ID, 100);
    CHECK(wait_sig(SIGRTMIN, &si, 5000) == SIGRTMIN && si.si_timerid == cpu);
    CHECK(ns_of(CLOCK_PROCESS_CPUTIME_ID) - used >= 50000000LL);

    /* Errors. */
    int bad;
    CHECK_ERR(timer_create_((clockid_t)12345, &ev, &bad), EINVAL);
    struct sigevent badsig = ev;
    badsig.sigev_signo = 0;
    CHECK_ERR(timer_create_(CLOCK_MONOTONIC, &badsig, &bad), EINVAL);
    badsig.sigev_signo = 65;
    CHECK_ERR(timer_create_(CLOCK_MONOTONIC, &badsig, &bad), EINVAL);
    badsig = ev;
    badsig.sigev_notify = 99;
    CHECK_ERR(timer_create_(CLOCK_MONOTONIC, &badsig, &bad), EINVAL);
    struct itimerspec wrong = {{0, 0}, {0, 1000000000}};
    CHECK_ERR(syscall(SYS_timer_settime, dflt, 0, &wrong, NULL), EINVAL);
    CHECK_ERR(syscall(SYS_timer_settime, 4242, 0, &its, NULL), EINVAL);
    CHECK_ERR(syscall(SYS_timer_create, CLOCK_MONOTONIC, &ev, (void *)8), EFAULT);
    ok();
    return 0;
}
