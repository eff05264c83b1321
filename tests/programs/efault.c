/* Bad user pointers give EFAULT, and the process lives on. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include "check.h"

/* volatile, so the compiler neither warns about nor reasons on them. */
static void *volatile bad1 = (void *)1;
static void *volatile bad8 = (void *)8;
static void *volatile dead = (void *)0xdead0000UL;
#define BAD1 bad1
#define BAD8 bad8
#define DEAD dead

int main(void)
{
    int p[2];
    CHECK(pipe(p) == 0);
    CHECK(write(p[1], "0123456789", 10) == 10);

    /* read into and write from unmapped memory. */
    CHECK_ERR(read(p[0], BAD1, 10), EFAULT);
    CHECK_ERR(write(p[1], DEAD, 10), EFAULT);
    CHECK_ERR(syscall(SYS_pread64, p[0], DEAD, 10, 0), ESPIPE);
    struct iovec bad_iov = {DEAD, 4};
    CHECK_ERR(writev(p[1], &bad_iov, 1), EFAULT);
    CHECK_ERR(writev(p[1], DEAD, 1), EFAULT);

    /* Paths. */
    CHECK_ERR(syscall(SYS_open, BAD1, O_RDONLY), EFAULT);
    CHECK_ERR(syscall(SYS_openat, AT_FDCWD, DEAD, O_RDONLY), EFAULT);
    CHECK_ERR(syscall(SYS_stat, BAD1, DEAD), EFAULT);
    CHECK_ERR(syscall(SYS_access, DEAD, F_OK), EFAULT);

    /* Output structures. */
    CHECK_ERR(syscall(SYS_stat, "/", BAD8), EFAULT);
    CHECK_ERR(syscall(SYS_fstat, p[0], BAD8), EFAULT);
    CHECK_ERR(syscall(SYS_clock_gettime, CLOCK_MONOTONIC, BAD8), EFAULT);
    CHECK_ERR(syscall(SYS_uname, DEAD), EFAULT);
    CHECK_ERR(syscall(SYS_getcwd, DEAD, 4096), EFAULT);

    /* Input structures. */
    CHECK_ERR(syscall(SYS_nanosleep, BAD8, NULL), EFAULT);
    CHECK_ERR(syscall(SYS_rt_sigaction, 10, DEAD, NULL, 8), EFAULT);

    /* pipe2 into a bad array leaves no fds behind. */
    int before = dup(0);
    CHECK(before >= 0 && close(before) == 0);
    CHECK_ERR(syscall(SYS_pipe2, BAD1, 0), EFAULT);
    int after = dup(0);
    CHECK(after == before && close(after) == 0);

    /* The data in the pipe is still there, all of it. */
    char buf[16];
    CHECK(read(p[0], buf, sizeof buf) == 10);
    CHECK(memcmp(buf, "0123456789", 10) == 0);
    CHECK(close(p[0]) == 0 && close(p[1]) == 0);

    ok();
    return 0;
}
