/* Pipes reopened through /proc/self/fd, F_SETPIPE_SZ limits, and the
 * O_LARGEFILE that open(2) forces (fs/pipe.c fifo_open, pipe_set_size). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/stat.h>
#include "check.h"

#define LARGEFILE 0100000   /* the kernel's O_LARGEFILE; glibc defines it as 0 on 64-bit */

int main(void)
{
    int p[2];
    char path[64], buf[8];
    CHECK(pipe(p) == 0);
    CHECK(write(p[1], "abc", 3) == 3);
    CHECK(close(p[1]) == 0);
    /* An anonymous pipe's read end opens without waiting for a writer. */
    snprintf(path, sizeof path, "/proc/self/fd/%d", p[0]);
    int r = open(path, O_RDONLY);
    CHECK(r >= 0);
    CHECK(fcntl(r, F_GETFL) == (O_RDONLY | LARGEFILE));
    CHECK(fcntl(p[0], F_GETFL) == O_RDONLY);
    CHECK(read(r, buf, sizeof buf) == 3 && memcmp(buf, "abc", 3) == 0);
    CHECK(read(r, buf, sizeof buf) == 0);
    /* A write end made by reopening the read end feeds the same pipe. */
    int w = open(path, O_WRONLY | O_NONBLOCK);
    CHECK(w >= 0);
    CHECK(write(w, "xy", 2) == 2);
    CHECK(read(p[0], buf, sizeof buf) == 2 && memcmp(buf, "xy", 2) == 0);
    close(w);
    close(r);

    /* F_SETPIPE_SZ: rounding, the 2 GiB cap and the fcntl arg's truncation. */
    int q[2];
    CHECK(pipe(q) == 0);
    CHECK(fcntl(q[0], F_SETPIPE_SZ, 0) == 4096);
    CHECK(fcntl(q[0], F_SETPIPE_SZ, 4097) == 8192);
    CHECK(fcntl(q[1], F_GETPIPE_SZ) == 8192);
    CHECK_ERR(fcntl(q[0], F_SETPIPE_SZ, 0x7fffffffffffffffL), EINVAL);
    CHECK_ERR(fcntl(q[1], F_SETPIPE_SZ, 0x80000001L), EINVAL);
    CHECK(fcntl(q[1], F_SETPIPE_SZ, 0x100000000L + 5000) == 8192);
    CHECK_ERR(fcntl(open("/dev/null", O_RDONLY), F_SETPIPE_SZ, 4096), EBADF);

    /* Named pipes and regular files carry O_LARGEFILE; O_PATH does not. */
    char fifo[] = "/tmp/pipe_reopen_XXXXXX";
    int tfd = mkstemp(fifo);
    CHECK(tfd >= 0);
    CHECK(fcntl(tfd, F_GETFL) == (O_RDWR | LARGEFILE));
    close(tfd);
    int pf = open(fifo, O_PATH);
    CHECK(pf >= 0 && fcntl(pf, F_GETFL) == O_PATH);
    close(pf);
    unlink(fifo);
    CHECK(mkfifo(fifo, 0600) == 0);
    int fr = open(fifo, O_RDONLY | O_NONBLOCK);
    CHECK(fr >= 0);
    int fw = open(fifo, O_WRONLY | O_NONBLOCK);
    CHECK(fw >= 0);
    CHECK(fcntl(fr, F_GETFL) == (O_RDONLY | O_NONBLOCK | LARGEFILE));
    CHECK(fcntl(fw, F_GETFL) == (O_WRONLY | O_NONBLOCK | LARGEFILE));
    CHECK(fcntl(fw, F_SETFL, 0) == 0);
    CHECK(fcntl(fw, F_GETFL) == (O_WRONLY | LARGEFILE));
    unlink(fifo);
    ok();
    return 0;
}
