/* Named FIFO opens: the blocking-open rendezvous of fs/pipe.c fifo_open.  A
 * blocking O_WRONLY open waits for a reader and a blocking O_RDONLY one for a
 * writer; O_WRONLY|O_NONBLOCK without a reader is ENXIO; O_RDWR never waits; a
 * signal interrupts the wait (EINTR without SA_RESTART) and leaves no end open. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include "check.h"

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static void on_alarm(int s) { (void)s; }

int main(void)
{
    char dir[] = "/tmp/fifo_openXXXXXX", path[64];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/f", dir);
    CHECK(mkfifo(path, 0600) == 0);

    CHECK_ERR(open(path, O_WRONLY | O_NONBLOCK), ENXIO);
    int r = open(path, O_RDONLY | O_NONBLOCK);
    CHECK(r >= 0);
    int w = open(path, O_WRONLY | O_NONBLOCK);         /* a reader exists now */
    CHECK(w >= 0);
    CHECK(close(w) == 0 && close(r) == 0);
    int rw = open(path, O_RDWR);                       /* never waits */
    CHECK(rw >= 0 && close(rw) == 0);

    /* A writer waits for a reader that comes 100 ms later. */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        nap_ms(100);
        int fd = open(path, O_RDONLY);
        char buf[8];
        _exit(fd >= 0 && read(fd, buf, sizeof(buf)) == 5 ? 0 : 1);
    }
    long long t0 = now_ms();
    w = open(path, O_WRONLY);
    CHECK(w >= 0 && now_ms() - t0 >= 50);
    CHECK(write(w, "hello", 5) == 5 && close(w) == 0);
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);

    /* A reader waits for a writer. */
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        nap_ms(100);
        int fd = open(path, O_WRONLY);
        _exit(fd >= 0 && write(fd, "abc", 3) == 3 ? 0 : 1);
    }
    t0 = now_ms();
    r = open(path, O_RDONLY);
    CHECK(r >= 0 && now_ms() - t0 >= 50);
    char buf[8];
    CHECK(read(r, buf, sizeof(buf)) == 3 && close(r) == 0);
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);

    /* A signal interrupts the wait: EINTR, and the reader end it made is gone. */
    struct sigaction sa = {0};
    sa.sa_handler = on_alarm;
    CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
    alarm(1);
    CHECK_ERR(open(path, O_RDONLY), EINTR);
    CHECK_ERR(open(path, O_WRONLY | O_NONBLOCK), ENXIO);
    alarm(1);
    CHECK_ERR(open(path, O_WRONLY), EINTR);

    CHECK(unlink(path) == 0 && rmdir(dir) == 0);
    ok();
    return 0;
}
