/* For tests/e2e/test_cpu_placement.py: "syscalls" on stdout, then syscalls without
 * pause until a byte arrives on stdin (the test looks at the thread's placement
 * meanwhile, as long as load makes it take); then 1.5 s of computing without a
 * syscall (the clock is the vDSO's), "computed", wait for a byte again. */
#include "check.h"

#include <poll.h>
#include <sys/syscall.h>
#include <time.h>

int main(void)
{
    char c;
    CHECK(write(1, "syscalls\n", 9) == 9);
    for (;;) {
        for (int i = 0; i < 100; i++)
            syscall(SYS_getppid);
        struct pollfd p = {.fd = 0, .events = POLLIN};
        if (poll(&p, 1, 0) == 1)
            break;
    }
    CHECK(read(0, &c, 1) == 1);
    struct timespec t0, t;
    CHECK(clock_gettime(CLOCK_MONOTONIC, &t0) == 0);
    volatile unsigned long x = 0;
    do {
        for (int i = 0; i < 100000; i++)
            x += i;
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) < 1500000000L);
    CHECK(write(1, "computed\n", 9) == 9);
    CHECK(read(0, &c, 1) == 1);
    return 0;
}
