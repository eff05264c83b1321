/* dup, dup2, dup3, F_GETFD/F_SETFD, F_GETFL/F_SETFL, F_DUPFD(_CLOEXEC),
 * EBADF cases. */
#define _GNU_SOURCE
#include <fcntl.h>
#include "check.h"

int main(void)
{
    int p[2];
    char c;
    CHECK(pipe(p) == 0);

    /* dup: lowest free fd, shares the open file description. */
    int d = dup(p[1]);
    CHECK(d > p[1]);
    CHECK(fcntl(d, F_GETFD) == 0);
    CHECK(write(d, "a", 1) == 1);
    CHECK(read(p[0], &c, 1) == 1 && c == 'a');
    CHECK(close(p[1]) == 0);
    int d2 = dup(d);
    CHECK(d2 == p[1]);  /* the freed lower number is reused */
    CHECK(close(d2) == 0);

    /* dup2 onto a chosen number; same number is a no-op; replaces open fd. */
    CHECK(dup2(d, 50) == 50);
    CHECK(dup2(50, 50) == 50);
    CHECK(write(50, "b", 1) == 1);
    CHECK(read(p[0], &c, 1) == 1 && c == 'b');
    CHECK(dup2(p[0], 50) == 50);  /* 50 now the read end */
    CHECK(write(d, "c", 1) == 1);
    CHECK(read(50, &c, 1) == 1 && c == 'c');

    /* dup3: O_CLOEXEC, and the same fd twice is EINVAL. */
    CHECK(dup3(d, 51, O_CLOEXEC) == 51);
    CHECK(fcntl(51, F_GETFD) == FD_CLOEXEC);
    CHECK_ERR(dup3(51, 51, 0), EINVAL);
    CHECK_ERR(dup3(d, 52, 0x1234), EINVAL);
    CHECK(dup3(d, 51, 0) == 51);
    CHECK(fcntl(51, F_GETFD) == 0);

    /* F_SETFD/F_GETFD are per descriptor. */
    CHECK(fcntl(51, F_SETFD, FD_CLOEXEC) == 0);
    CHECK(fcntl(51, F_GETFD) == FD_CLOEXEC);
    CHECK(fcntl(d, F_GETFD) == 0);

    /* F_GETFL/F_SETFL: O_NONBLOCK is per description, so shared by dups. */
    CHECK((fcntl(p[0], F_GETFL) & O_ACCMODE) == O_RDONLY);
    CHECK((fcntl(d, F_GETFL) & O_ACCMODE) == O_WRONLY);
    CHECK(!(fcntl(p[0], F_GETFL) & O_NONBLOCK));
    CHECK(fcntl(p[0], F_SETFL, O_NONBLOCK) == 0);
    CHECK(fcntl(50, F_GETFL) & O_NONBLOCK);
    CHECK_ERR(read(50, &c, 1), EAGAIN);
    CHECK(fcntl(50, F_SETFL, 0) == 0);
    CHECK(!(fcntl(p[0], F_GETFL) & O_NONBLOCK));

    /* F_DUPFD picks the lowest fd >= arg; F_DUPFD_CLOEXEC sets the flag. */
    int f = fcntl(d, F_DUPFD, 60);
    CHECK(f == 60 && fcntl(f, F_GETFD) == 0);
    f = fcntl(d, F_DUPFD, 60);
    CHECK(f == 61);
    f = fcntl(d, F_DUPFD_CLOEXEC, 70);
    CHECK(f == 70 && fcntl(f, F_GETFD) == FD_CLOEXEC);
    CHECK(write(70, "d", 1) == 1);
    CHECK(read(p[0], &c, 1) == 1 && c == 'd');
    CHECK_ERR(fcntl(d, F_DUPFD, -1), EINVAL);

    /* EBADF. */
    CHECK_ERR(close(1000), EBADF);
    CHECK_ERR(close(-1), EBADF);
    CHECK_ERR(dup(1000), EBADF);
    CHECK_ERR(dup2(1000, 80), EBADF);
    CHECK_ERR(dup2(d, -1), EBADF);
    CHECK_ERR(dup3(1000, 80, 0), EBADF);
    CHECK_ERR(fcntl(1000, F_GETFD), EBADF);
    CHECK_ERR(fcntl(1000, F_GETFL), EBADF);
    CHECK_ERR(read(1000, &c, 1), EBADF);
    CHECK_ERR(write(-5, &c, 1), EBADF);
    CHECK_ERR(read(d, &c, 1), EBADF);     /* write-only end */
    CHECK_ERR(write(p[0], "x", 1), EBADF); /* read-only end */
    CHECK(close(70) == 0);
    CHECK_ERR(close(70), EBADF);
    CHECK_ERR(fcntl(70, F_GETFD), EBADF);

    /* Closing every write end gives EOF on the read end. */
    CHECK(close(d) == 0 && close(51) == 0 && close(60) == 0 && close(61) == 0);
    CHECK(read(p[0], &c, 1) == 0);
    CHECK(close(p[0]) == 0 && close(50) == 0);

    ok();
    return 0;
}
