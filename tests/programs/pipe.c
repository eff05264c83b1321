/* pipe2, read/write, EOF after close, O_NONBLOCK EAGAIN, O_CLOEXEC. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include "check.h"

int main(void)
{
    int p[2];
    char buf[16];

    /* Plain pipe: data in order, EOF once the writer is closed. */
    CHECK(pipe2(p, 0) == 0);
    CHECK(write(p[1], "hello", 5) == 5);
    CHECK(write(p[1], "world", 5) == 5);
    CHECK(read(p[0], buf, 5) == 5 && memcmp(buf, "hello", 5) == 0);
    CHECK(close(p[1]) == 0);
    CHECK(read(p[0], buf, sizeof buf) == 5 && memcmp(buf, "world", 5) == 0);
    CHECK(read(p[0], buf, sizeof buf) == 0);
    CHECK(fcntl(p[0], F_GETFD) == 0);
    CHECK(close(p[0]) == 0);

    /* Writing with no reader: EPIPE (SIGPIPE ignored). */
    signal(SIGPIPE, SIG_IGN);
    CHECK(pipe2(p, 0) == 0);
    CHECK(close(p[0]) == 0);
    CHECK_ERR(write(p[1], "x", 1), EPIPE);
    CHECK(close(p[1]) == 0);

    /* O_NONBLOCK: empty read and full write give EAGAIN. */
    CHECK(pipe2(p, O_NONBLOCK) == 0);
    CHECK(fcntl(p[0], F_GETFL) & O_NONBLOCK);
    CHECK(fcntl(p[1], F_GETFL) & O_NONBLOCK);
    CHECK_ERR(read(p[0], buf, sizeof buf), EAGAIN);
    char big[4096];
    memset(big, 'a', sizeof big);
    long total = 0;
    for (;;) {
        ssize_t n = write(p[1], big, sizeof big);
        if (n < 0) {
            CHECK(errno == EAGAIN);
            break;
        }
        total += n;
        CHECK(total <= 16 << 20);
    }
    CHECK(total >= 4096);
    CHECK(read(p[0], buf, sizeof buf) == sizeof buf && buf[0] == 'a');
    close(p[0]);
    close(p[1]);

    /* O_CLOEXEC sets FD_CLOEXEC on both ends. */
    CHECK(pipe2(p, O_CLOEXEC) == 0);
    CHECK(fcntl(p[0], F_GETFD) == FD_CLOEXEC);
    CHECK(fcntl(p[1], F_GETFD) == FD_CLOEXEC);
    close(p[0]);
    close(p[1]);

    /* Unknown flags: EINVAL. */
    CHECK_ERR(pipe2(p, 0x40000000), EINVAL);

    /* Across fork: the child writes, the parent reads until EOF. */
    CHECK(pipe2(p, 0) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        for (int i = 0; i < 100; i++)
            if (write(p[1], "0123456789", 10) != 10)
                _exit(2);
        _exit(0);
    }
    close(p[1]);
    long got = 0;
    ssize_t n;
    while ((n = read(p[0], buf, sizeof buf)) > 0)
        got += n;
    CHECK(n == 0);
    CHECK(got == 1000);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(p[0]);

    ok();
    return 0;
}
