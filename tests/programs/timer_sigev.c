/* timer_create(2) through the raw syscall with SIGEV_THREAD, which the kernel
 * treats as SIGEV_SIGNAL (good_sigevent); its signal interrupts a blocking
 * FIFO open (EINTR).  Linux: kernel/time/posix-timers.c, fs/pipe.c. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include "check.h"

static volatile sig_atomic_t got;
static volatile int got_value, got_code;

static void handler(int sig, siginfo_t *si, void *uc)
{
    got++;
    got_value = si->si_value.sival_int;
    got_code = si->si_code;
}

int main(void)
{
    struct sigaction sa = {0};
    sa.sa_sigaction = handler;
    sa.sa_flags = SA_SIGINFO;                       /* no SA_RESTART */
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);

    struct sigevent sev = {0};
    sev.sigev_notify = SIGEV_THREAD;
    sev.sigev_signo = SIGUSR1;
    sev.sigev_value.sival_int = 42;
    int id;
    CHECK(syscall(SYS_timer_create, CLOCK_MONOTONIC, &sev, &id) == 0);
    sev.sigev_signo = 0;
    int bad;
    CHECK_ERR(syscall(SYS_timer_create, CLOCK_MONOTONIC, &sev, &bad), EINVAL);
    sev.sigev_notify = 3;
    sev.sigev_signo = SIGUSR1;
    CHECK_ERR(syscall(SYS_timer_create, CLOCK_MONOTONIC, &sev, &bad), EINVAL);

    struct itimerspec its = {{0, 50000000}, {0, 50000000}};
    CHECK(syscall(SYS_timer_settime, id, 0, &its, NULL) == 0);

    char path[] = "/tmp/timer_sigev_XXXXXX";
    CHECK(mkdtemp(path) != NULL);
    char fifo[64];
    snprintf(fifo, sizeof fifo, "%s/f", path);
    CHECK(mknod(fifo, S_IFIFO | 0600, 0) == 0);
    CHECK_ERR(open(fifo, O_WRONLY), EINTR);
    CHECK_ERR(open(fifo, O_RDONLY), EINTR);
    CHECK(got >= 2 && got_value == 42 && got_code == SI_TIMER);
    CHECK(syscall(SYS_timer_delete, id) == 0);
    unlink(fifo);
    rmdir(path);
    ok();
    return 0;
}
