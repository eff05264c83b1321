/* clock_gettime, clock_getres, nanosleep, gettimeofday, time. */
#define _GNU_SOURCE
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include "check.h"

static long long ns(const struct timespec *ts)
{
    return ts->tv_sec * 1000000000LL + ts->tv_nsec;
}

int main(void)
{
    struct timespec a, b, res;

    /* MONOTONIC never goes backwards. */
    CHECK(clock_gettime(CLOCK_MONOTONIC, &a) == 0);
    for (int i = 0; i < 1000; i++) {
        CHECK(clock_gettime(CLOCK_MONOTONIC, &b) == 0);
        CHECK(b.tv_nsec >= 0 && b.tv_nsec < 1000000000);
        CHECK(ns(&b) >= ns(&a));
        a = b;
    }

    /* REALTIME is after 2020-01-01 and agrees with gettimeofday/time. */
    CHECK(clock_gettime(CLOCK_REALTIME, &a) == 0);
    CHECK(a.tv_sec > 1577836800);
    struct timeval tv;
    CHECK(gettimeofday(&tv, NULL) == 0);
    CHECK(tv.tv_usec >= 0 && tv.tv_usec < 1000000);
    CHECK(tv.tv_sec >= a.tv_sec && tv.tv_sec - a.tv_sec < 60);
    /* time() reads the coarse clock (the last tick's second), which may still be a
     * second behind CLOCK_REALTIME read just before it (seen natively in CI). */
    time_t t = time(NULL);
    CHECK(t + 1 >= a.tv_sec && t - a.tv_sec < 60);
    /* The raw syscalls, not only the vDSO. */
    CHECK(syscall(SYS_clock_gettime, CLOCK_REALTIME, &b) == 0);
    CHECK(b.tv_sec >= a.tv_sec && b.tv_sec - a.tv_sec < 60);
    CHECK(syscall(SYS_gettimeofday, &tv, NULL) == 0 && tv.tv_sec >= a.tv_sec);

    /* Other clocks work; a bad clock id is EINVAL. */
    CHECK(clock_gettime(CLOCK_BOOTTIME, &a) == 0);
    CHECK(clock_gettime(CLOCK_MONOTONIC_RAW, &a) == 0);
    CHECK(clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a) == 0);
    CHECK(clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a) == 0);
    CHECK_ERR(clock_gettime((clockid_t)12345, &a), EINVAL);

    /* clock_getres: positive and at most a millisecond. */
    CHECK(clock_getres(CLOCK_MONOTONIC, &res) == 0);
    CHECK(res.tv_sec == 0 && res.tv_nsec > 0 && res.tv_nsec <= 1000000);
    CHECK(clock_getres(CLOCK_REALTIME, &res) == 0);
    CHECK(res.tv_sec == 0 && res.tv_nsec > 0 && res.tv_nsec <= 1000000);

    /* nanosleep sleeps at least as long as asked. */
    struct timespec req = {0, 20 * 1000000};
    CHECK(clock_gettime(CLOCK_MONOTONIC, &a) == 0);
    CHECK(nanosleep(&req, NULL) == 0);
    CHECK(clock_gettime(CLOCK_MONOTONIC, &b) == 0);
    CHECK(ns(&b) - ns(&a) >= 20 * 1000000LL);
    req = (struct timespec){0, 1000000000};
    CHECK_ERR(nanosleep(&req, NULL), EINVAL);

    /* clock_nanosleep with an absolute deadline. */
    CHECK(clock_gettime(CLOCK_MONOTONIC, &a) == 0);
    req = a;
    req.tv_nsec += 10 * 1000000;
    if (req.tv_nsec >= 1000000000) {
        req.tv_sec++;
        req.tv_nsec -= 1000000000;
    }
    CHECK(clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &req, NULL) == 0);
    CHECK(clock_gettime(CLOCK_MONOTONIC, &b) == 0);
    CHECK(ns(&b) >= ns(&req));

    ok();
    return 0;
}
