/* Writes larger than the Sentry stages at once (4 MiB): a blocking write(2) or
 * writev(2) to a pipe or a unix stream socket writes all of it while a reader
 * drains, a regular file takes all of it, a non-blocking pipe takes what fits.
 * A stream socket whose peer goes away mid-write returns the partial count
 * without SIGPIPE, and the next write fails with EPIPE and SIGPIPE
 * (unix_stream_sendmsg); a pipe sends SIGPIPE even after partial progress
 * (pipe_write).  The data must arrive intact, in order.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include "check.h"

#define MiB (1 << 20)

static unsigned char *buf;              /* 20 MiB of a known pattern */
static volatile sig_atomic_t sigpipes;

static unsigned char pattern(size_t i)
{
    return (unsigned char)(i * 7 + (i >> 12));
}

struct drain {
    int fd;
    size_t want;
    size_t got;
    int intact;
};

static void *drainer(void *arg)
{
    struct drain *d = arg;
    static unsigned char in[1 << 16];
    d->intact = 1;
    while (d->got < d->want) {
        ssize_t n = read(d->fd, in, sizeof(in));
        if (n <= 0)
            break;
        for (ssize_t i = 0; i < n; i++)
            if (in[i] != pattern(d->got + i))
                d->intact = 0;
        d->got += n;
    }
    return NULL;
}

/* write(2) of `len` bytes to wfd while a thread drains rfd. */
static void write_drained(int wfd, int rfd, size_t len)
{
    struct drain d = {rfd, len, 0, 0};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, drainer, &d) == 0);
    CHECK(write(wfd, buf, len) == (ssize_t)len);
    CHECK(pthread_join(th, NULL) == 0);
    CHECK(d.got == len && d.intact);
}

static void test_pipe_and_socket(void)
{
    int p[2], s[2];
    CHECK(pipe(p) == 0);
    write_drained(p[1], p[0], 12 * MiB);
    /* writev: three 5 MiB iovecs, one staged chunk straddling two of them */
    struct iovec iov[3] = {{buf, 5 * MiB}, {buf + 5 * MiB, 5 * MiB}, {buf + 10 * MiB, 5 * MiB}};
    struct drain d = {p[0], 15 * MiB, 0, 0};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, drainer, &d) == 0);
    CHECK(writev(p[1], iov, 3) == 15 * MiB);
    CHECK(pthread_join(th, NULL) == 0);
    CHECK(d.got == 15 * MiB && d.intact);
    /* non-blocking and nobody reading: what fits, then EAGAIN */
    CHECK(fcntl(p[1], F_SETFL, O_NONBLOCK) == 0);
    CHECK(write(p[1], buf, 12 * MiB) == 65536);
    CHECK_ERR(write(p[1], buf, 12 * MiB), EAGAIN);
    /* absurd lengths (1 GiB each, far past the buffer; 3 GiB in all): cut to MAX_RW_COUNT; the
     * pipe, drained, takes what fits before any byte past the buffer is needed */
    char sink[65536];
    CHECK(read(p[0], sink, sizeof(sink)) == sizeof(sink));
    struct iovec huge[3] = {{buf, 1UL << 30}, {buf, 1UL << 30}, {buf, 1UL << 30}};
    CHECK(writev(p[1], huge, 3) == 65536);
    /* 1024 segments of 64 TiB each at an unmapped address: 2^56 bytes asked, EFAULT */
    static struct iovec many[1024];
    for (int i = 0; i < 1024; i++) {
        many[i].iov_base = (void *)0x10000;
        many[i].iov_len = 1UL << 46;
    }
    CHECK(read(p[0], sink, sizeof(sink)) == sizeof(sink));
    CHECK_ERR(writev(p[1], many, 1024), EFAULT);
    close(p[0]);
    close(p[1]);

    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, s) == 0);
    write_drained(s[0], s[1], 10 * MiB);
    close(s[0]);
    close(s[1]);
}

static void test_regular_file(void)
{
    char path[] = "/tmp/big_writes.XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK(unlink(path) == 0);
    CHECK(write(fd, buf, 9 * MiB) == 9 * MiB);
    CHECK(pwrite(fd, buf, 9 * MiB, 1) == 9 * MiB);
    struct stat st;
    CHECK(fstat(fd, &st) == 0 && st.st_size == 9 * MiB + 1);
    static unsigned char back[9 * MiB];
    CHECK(pread(fd, back, 9 * MiB, 1) == 9 * MiB);
    CHECK(memcmp(back, buf, 9 * MiB) == 0);
    CHECK(lseek(fd, 0, SEEK_CUR) == 9 * MiB);
    close(fd);

    /* RLIMIT_FSIZE on a chunk boundary (8 MiB): a 12 MiB write stops there without a
     * signal; the next write gets EFBIG (SIGXFSZ ignored). */
    char path2[] = "/tmp/big_writes.XXXXXX";
    fd = mkstemp(path2);
    CHECK(fd >= 0);
    CHECK(unlink(path2) == 0);
    struct rlimit old, lim;
    CHECK(getrlimit(RLIMIT_FSIZE, &old) == 0);
    lim = old;
    lim.rlim_cur = 8 * MiB;
    CHECK(signal(SIGXFSZ, SIG_IGN) != SIG_ERR);
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    CHECK(write(fd, buf, 12 * MiB) == 8 * MiB);
    CHECK_ERR(write(fd, buf, 1), EFBIG);
    CHECK(setrlimit(RLIMIT_FSIZE, &old) == 0);
    close(fd);
}

static void on_sigpipe(int sig)
{
    (void)sig;
    sigpipes++;
}

struct writer {
    int fd;
    volatile int started;
    ssize_t first, second;
    int second_errno;
    int pipes_after_first;
};

static void *writer(void *arg)
{
    struct writer *w = arg;
    w->started = 1;
    w->first = write(w->fd, buf, 20 * MiB);
    w->pipes_after_first = sigpipes;
    w->second = write(w->fd, buf, 20 * MiB);
    w->second_errno = errno;
    return NULL;
}

/* The peer closes while a 20 MiB write is under way (some of it already sent). */
static void peer_gone(int wfd, int rfd, int pipe_like)
{
    struct writer w = {wfd, 0, 0, 0, 0, 0};
    pthread_t th;
    sigpipes = 0;
    CHECK(pthread_create(&th, NULL, writer, &w) == 0);
    int queued = 0;
    while (queued == 0) {
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
        CHECK(ioctl(rfd, FIONREAD, &queued) == 0);
    }
    struct timespec pause = {0, 100000000};
    nanosleep(&pause, NULL);
    close(rfd);
    CHECK(pthread_join(th, NULL) == 0);
    CHECK(w.first > 0 && w.first < 20 * MiB);
    CHECK(w.pipes_after_first == (pipe_like ? 1 : 0));
    CHECK(w.second == -1 && w.second_errno == EPIPE);
    CHECK(sigpipes == (pipe_like ? 2 : 1));
    close(wfd);
}

static void test_peer_gone(void)
{
    struct sigaction sa = {0};
    sa.sa_handler = on_sigpipe;
    CHECK(sigaction(SIGPIPE, &sa, NULL) == 0);
    int s[2], p[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, s) == 0);
    peer_gone(s[0], s[1], 0);
    CHECK(pipe(p) == 0);
    peer_gone(p[1], p[0], 1);
}

int main(void)
{
    buf = malloc(20 * MiB);
    CHECK(buf != NULL);
    for (size_t i = 0; i < 20 * MiB; i++)
        buf[i] = pattern(i);
    test_pipe_and_socket();
    test_regular_file();
    test_peer_gone();
    puts("ok");
    return 0;
}
