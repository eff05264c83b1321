/* isatty and TCGETS.  The harness runs us with stdin from /dev/null and
 * stdout/stderr on pipes. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include "check.h"

int main(void)
{
    struct stat st, null_st;
    struct termios tio;

    /* stdin is /dev/null: a character device, but not a terminal. */
    CHECK(stat("/dev/null", &null_st) == 0 && S_ISCHR(null_st.st_mode));
    CHECK(fstat(0, &st) == 0);
    CHECK(S_ISCHR(st.st_mode) && st.st_rdev == null_st.st_rdev);
    errno = 0;
    CHECK(isatty(0) == 0 && errno == ENOTTY);

    /* For each standard fd, isatty agrees with TCGETS. */
    for (int fd = 0; fd < 3; fd++) {
        int tty = isatty(fd);
        int r = ioctl(fd, TCGETS, &tio);
        CHECK(tty == (r == 0));
        CHECK(tty || errno == ENOTTY);
        CHECK(fstat(fd, &st) == 0);
        if (!S_ISCHR(st.st_mode))
            CHECK(!tty);
    }

    /* A pipe is not a terminal. */
    int p[2];
    CHECK(pipe(p) == 0);
    CHECK_ERR(ioctl(p[0], TCGETS, &tio), ENOTTY);
    CHECK_ERR(ioctl(p[1], TCGETS, &tio), ENOTTY);
    errno = 0;
    CHECK(isatty(p[0]) == 0 && errno == ENOTTY);

    /* Nor is a regular file, or /dev/zero. */
    int fd = open("/dev/zero", O_RDONLY);
    CHECK(fd >= 0);
    CHECK_ERR(ioctl(fd, TCGETS, &tio), ENOTTY);
    CHECK(close(fd) == 0);
    char path[] = "/tmp/pyvisor-tty-XXXXXX";
    fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK_ERR(ioctl(fd, TCGETS, &tio), ENOTTY);
    CHECK(close(fd) == 0 && unlink(path) == 0);

    /* A bad fd is EBADF. */
    CHECK_ERR(ioctl(1000, TCGETS, &tio), EBADF);
    errno = 0;
    CHECK(isatty(1000) == 0 && errno == EBADF);

    /* FIONREAD on a pipe counts the unread bytes. */
    int avail = -1;
    CHECK(write(p[1], "abc", 3) == 3);
    CHECK(ioctl(p[0], FIONREAD, &avail) == 0 && avail == 3);

    ok();
    return 0;
}
