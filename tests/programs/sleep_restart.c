/* nanosleep stopped by SIGSTOP and continued goes on sleeping (restart_syscall
 * toward the same deadline), not EINTR; a handled signal ends it with EINTR and
 * the time left.  Linux: kernel/time/hrtimer.c do_nanosleep. */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include "check.h"

static void on_usr1(int sig) { (void)sig; }

static long ms_since(struct timespec *a)
{
    struct timespec b;
    clock_gettime(CLOCK_MONOTONIC, &b);
    return (b.tv_sec - a->tv_sec) * 1000 + (b.tv_nsec - a->tv_nsec) / 1000000;
}

int main(void)
{
    CHECK_ERR(syscall(SYS_restart_syscall), EINTR);          /* nothing to restart */

    int st;
    pid_t c;
    for (int kind = 0; kind < 2; kind++) {
        c = fork();
        if (c == 0) {
            struct timespec start, req = {1, 0}, rem = {9, 9};
            clock_gettime(CLOCK_MONOTONIC, &start);
            if (kind == 0)
                CHECK(nanosleep(&req, &rem) == 0);
            else
                CHECK(clock_nanosleep(CLOCK_MONOTONIC, 0, &req, &rem) == 0);
            CHECK(ms_since(&start) >= 1000);
            _exit(0);
        }
        usleep(200000);
        CHECK(kill(c, SIGSTOP) == 0);
        CHECK(waitpid(c, &st, WUNTRACED) == c && WIFSTOPPED(st));
        usleep(300000);
        CHECK(kill(c, SIGCONT) == 0);
        CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }

    /* A handler: EINTR and the time left. */
    struct sigaction sa = {0};
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
    pid_t me = getpid();
    c = fork();
    if (c == 0) {
        for (;;) {                       /* until the parent's sleep has seen one */
            usleep(200000);
            kill(me, SIGUSR1);
        }
    }
    struct timespec req = {30, 0}, rem = {0, 0};
    CHECK_ERR(nanosleep(&req, &rem), EINTR);
    CHECK(rem.tv_sec > 0 && rem.tv_sec < 30);
    CHECK(kill(c, SIGKILL) == 0);
    CHECK(waitpid(c, &st, 0) == c);
    ok();
    return 0;
}
