/* Re-opening pipe(2) ends by name, through /proc/self/fd/N and /dev/stdin (Linux:
 * fs/pipe.c fifo_open on a pipefs inode): each access mode gets that end of the same
 * pipe; no open waits for a partner or fails for lack of one, even after the other
 * end is closed; flags are the new open's own.  A socket re-opened so is ENXIO. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

static int reopen(int fd, int flags) {
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    return open(path, flags);
}

int main(void) {
    int p[2];
    char buf[16];
    CHECK(pipe(p) == 0);

    /* A second read end and a second write end of the same pipe. */
    int r2 = reopen(p[0], O_RDONLY);
    int w2 = reopen(p[1], O_WRONLY | O_NONBLOCK);
    CHECK(r2 >= 0 && w2 >= 0);
    CHECK(fcntl(w2, F_GETFL) & O_NONBLOCK);
    CHECK(!(fcntl(p[1], F_GETFL) & O_NONBLOCK));      /* a new open file description */
    CHECK(write(w2, "abc", 3) == 3);
    CHECK(read(p[0], buf, 1) == 1 && buf[0] == 'a');
    CHECK(read(r2, buf, 2) == 2 && buf[0] == 'b' && buf[1] == 'c');

    /* The access mode decides the end, whichever end the name came from. */
    int w3 = reopen(p[0], O_WRONLY);
    CHECK(w3 >= 0);
    CHECK(write(w3, "d", 1) == 1);
    CHECK(read(r2, buf, 1) == 1 && buf[0] == 'd');
    CHECK_ERR(read(w3, buf, 1), EBADF);

    struct stat a, b;
    CHECK(fstat(r2, &a) == 0 && fstat(p[0], &b) == 0);
    CHECK(S_ISFIFO(a.st_mode) && a.st_ino == b.st_ino && a.st_dev == b.st_dev);

    /* O_RDWR: both ends at once. */
    int rw = reopen(p[1], O_RDWR);
    CHECK(rw >= 0);
    CHECK(write(rw, "e", 1) == 1 && read(rw, buf, 1) == 1 && buf[0] == 'e');

    /* Every writer gone: a blocking re-open for reading neither waits nor fails, and
     * reads end-of-file; a non-blocking open for writing with no reader succeeds. */
    CHECK(close(p[1]) == 0 && close(w2) == 0 && close(w3) == 0 && close(rw) == 0);
    int r4 = reopen(p[0], O_RDONLY);
    CHECK(r4 >= 0);
    CHECK(read(r4, buf, 1) == 0);
    int q[2];
    CHECK(pipe(q) == 0);
    CHECK(close(q[0]) == 0);
    int w5 = reopen(q[1], O_WRONLY | O_NONBLOCK);
    CHECK(w5 >= 0);

    /* stdin as a pipe, through /dev/stdin. */
    int s[2];
    CHECK(pipe(s) == 0);
    CHECK(write(s[1], "stdin", 5) == 5);
    CHECK(dup2(s[0], 0) == 0);
    int in = open("/dev/stdin", O_RDONLY);
    CHECK(in >= 0);
    CHECK(read(in, buf, 5) == 5 && buf[0] == 's' && buf[4] == 'n');

    /* A socket cannot be re-opened by name. */
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK_ERR(reopen(sv[0], O_RDWR), ENXIO);

    puts("ok");
    return 0;
}
