/* Partial progress of writes to pipes, FIFOs, unix stream sockets and eventfds,
 * blocking and not, as Linux gives it (fs/pipe.c pipe_write, af_unix.c
 * unix_stream_sendmsg, fs/eventfd.c), and of sendfile into a pipe.  Pipe cases stay on 4096-byte boundaries,
 * where Linux's page slots and a byte count agree.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/sendfile.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include "check.h"

#define PIPE_CAP 65536

static char big[1 << 18];
static char sink[1 << 18];


static int pending(int fd)
{
    int n = -1;
    CHECK(ioctl(fd, FIONREAD, &n) == 0);
    return n;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Non-blocking: a partial count, or EAGAIN when nothing fits; atomic writes of
 * at most PIPE_BUF bytes all or nothing. */
static void nonblocking_pipe(int r, int w)
{
    CHECK(write(w, big, 1000) == 1000);
    CHECK(write(w, big, PIPE_CAP) == PIPE_CAP - 4096);      /* 15 free page slots */
    CHECK_ERR(write(w, big, 1), EAGAIN);
    CHECK_ERR(write(w, big, 5000), EAGAIN);
    CHECK(read(r, sink, sizeof sink) == PIPE_CAP - 4096 + 1000);
    CHECK(write(w, big, PIPE_CAP + 100) == PIPE_CAP);       /* an empty pipe, too big */
    CHECK(read(r, sink, 4096) == 4096);
    CHECK(write(w, big, 8192) == 4096);                     /* one slot free */
    CHECK(read(r, sink, 4096) == 4096);
    CHECK(write(w, big, 4096) == 4096);                     /* PIPE_BUF fits exactly */
    CHECK(read(r, sink, sizeof sink) == PIPE_CAP);
    /* A small write merges into the newest page while it has room. */
    CHECK(write(w, big, PIPE_CAP - 100) == PIPE_CAP - 100);
    CHECK(write(w, big, 36) == 36);                         /* 3996 + 36 bytes */
    CHECK(write(w, big, 64) == 64);                         /* a full page */
    CHECK_ERR(write(w, big, 1), EAGAIN);
    CHECK(pending(r) == PIPE_CAP);
    CHECK(read(r, sink, sizeof sink) == PIPE_CAP);
}

static volatile sig_atomic_t alarms;

static void on_alarm(int sig)
{
    (void)sig;
    alarms++;
}

static void alarm_in(long ms)
{
    struct itimerval it = {{0, 0}, {ms / 1000, (ms % 1000) * 1000}};
    CHECK(setitimer(ITIMER_REAL, &it, NULL) == 0);
}

struct reader {
    int fd;
    long total;
};

static void *slow_reader(void *p)
{
    struct reader *rd = p;
    sleep_ms(50);
    while (rd->total < (long)sizeof big) {
        ssize_t n = read(rd->fd, sink, 3000);
        if (n <= 0)
            break;
        rd->total += n;
    }
    return NULL;
}

static void *atomic_writer(void *p)
{
    int w = *(int *)p;
    CHECK(write(w, big, 200) == 200);
    return NULL;
}

/* Blocking: everything is written, however small the reads; a signal after
 * partial progress returns that progress, before any progress EINTR; a write
 * of at most PIPE_BUF waits until it fits whole. */
static void blocking_pipe(int r, int w)
{
    struct reader rd = {r, 0};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, slow_reader, &rd) == 0);
    CHECK(write(w, big, sizeof big) == (ssize_t)sizeof big);
    CHECK(pthread_join(th, NULL) == 0);
    CHECK(rd.total == (long)sizeof big);

    struct sigaction sa = {.sa_handler = on_alarm};     /* no SA_RESTART */
    CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
    alarm_in(100);
    CHECK(write(w, big, 100000) == PIPE_CAP);           /* filled, then interrupted */
    CHECK(alarms == 1);
    alarm_in(100);
    CHECK_ERR(write(w, big, 10), EINTR);                /* nothing fitted */
    CHECK(alarms == 2);

    CHECK(read(r, sink, 4096) == 4096);
    CHECK(write(w, big, 4000) == 4000);                 /* 96 bytes free now */
    CHECK(pending(r) == PIPE_CAP - 96);
    int wfd = w;
    CHECK(pthread_create(&th, NULL, atomic_writer, &wfd) == 0);
    sleep_ms(100);
    CHECK(pending(r) == PIPE_CAP - 96);                 /* not a byte of the 200 yet */
    CHECK(read(r, sink, 4096) == 4096);
    CHECK(pthread_join(th, NULL) == 0);
    CHECK(pending(r) == PIPE_CAP - 96 - 4096 + 200);
    CHECK(read(r, sink, sizeof sink) == PIPE_CAP - 96 - 4096 + 200);
    sa.sa_handler = SIG_DFL;
    CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
}

static void pipes(void)
{
    int p[2];
    CHECK(pipe2(p, O_NONBLOCK) == 0);
    nonblocking_pipe(p[0], p[1]);
    close(p[0]);
    close(p[1]);
    CHECK(pipe(p) == 0);
    blocking_pipe(p[0], p[1]);
    close(p[0]);
    close(p[1]);
}

static void fifos(void)
{
    char path[] = "/tmp/partial_writes.XXXXXX";
    CHECK(mkdtemp(path) != NULL);
    char fifo[64];
    snprintf(fifo, sizeof fifo, "%s/fifo", path);
    CHECK(mkfifo(fifo, 0600) == 0);
    int r = open(fifo, O_RDONLY | O_NONBLOCK);
    CHECK(r >= 0);
    int w = open(fifo, O_WRONLY | O_NONBLOCK);
    CHECK(w >= 0);
    nonblocking_pipe(r, w);
    close(w);
    close(r);
    unlink(fifo);
    rmdir(path);
}

/* Unix stream sockets: the buffer sizes differ from Linux's, so only the shape
 * is checked: a big non-blocking send is partial, then EAGAIN; an interrupted
 * blocking send returns its progress. */
static void stream_sockets(void)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    int sz = 32768;
    CHECK(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz) == 0);
    CHECK(setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz) == 0);
    int fl = fcntl(sv[0], F_GETFL);
    CHECK(fcntl(sv[0], F_SETFL, fl | O_NONBLOCK) == 0);
    ssize_t n = write(sv[0], big, sizeof big);
    CHECK(n > 0 && n < (ssize_t)sizeof big);
    CHECK_ERR(write(sv[0], big, sizeof big), EAGAIN);
    CHECK_ERR(send(sv[0], big, 1, 0), EAGAIN);
    CHECK(fcntl(sv[0], F_SETFL, fl) == 0);
    CHECK_ERR(send(sv[0], big, 1, MSG_DONTWAIT), EAGAIN);
    struct sigaction sa = {.sa_handler = on_alarm};
    CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
    while (recv(sv[1], sink, sizeof sink, MSG_DONTWAIT) > 0)
        ;                   /* room again, but not for all of the next write */
    alarms = 0;
    alarm_in(100);
    n = write(sv[0], big, sizeof big);
    CHECK(n > 0 && n < (ssize_t)sizeof big && alarms == 1);
    close(sv[0]);
    close(sv[1]);
    sa.sa_handler = SIG_DFL;
    CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
}

static void eventfds(void)
{
    int e = eventfd(0, EFD_NONBLOCK);
    CHECK(e >= 0);
    uint64_t v[2] = {5, 7};
    CHECK_ERR(write(e, v, sizeof v), EINVAL);   /* exactly one value per write */
    CHECK(write(e, v, 8) == 8);
    uint64_t got[2];
    CHECK(read(e, got, sizeof got) == 8 && got[0] == 5);
    CHECK_ERR(read(e, got, 8), EAGAIN);
    v[0] = 1;
    CHECK(write(e, v, 8) == 8);
    v[0] = 0xfffffffffffffffeULL;
    CHECK_ERR(write(e, v, 8), EAGAIN);          /* would overflow */
    CHECK_ERR(write(e, v, 4), EINVAL);
    close(e);
}

/* sendfile into a non-blocking pipe: the input's position advances by what the
 * pipe took, and not at all on EAGAIN; pipes and eventfds cannot be read by it. */
static void sendfiles(void)
{
    char path[] = "/tmp/partial_writes.XXXXXX";
    int f = mkstemp(path);
    CHECK(f >= 0);
    unlink(path);
    CHECK(write(f, big, 100000) == 100000);
    CHECK(lseek(f, 0, SEEK_SET) == 0);
    int p[2];
    CHECK(pipe2(p, O_NONBLOCK) == 0);
    CHECK(write(p[1], big, PIPE_CAP - 4096) == PIPE_CAP - 4096);
    CHECK(sendfile(p[1], f, NULL, 20000) == 4096);           /* one slot free */
    CHECK(lseek(f, 0, SEEK_CUR) == 4096);
    CHECK_ERR(sendfile(p[1], f, NULL, 20000), EAGAIN);
    CHECK(lseek(f, 0, SEEK_CUR) == 4096);                   /* nothing consumed */
    off_t off = 10;
    CHECK(read(p[0], sink, sizeof sink) == PIPE_CAP);
    CHECK(sendfile(p[1], f, &off, 20000) == 20000);
    CHECK(off == 10 + 20000 && lseek(f, 0, SEEK_CUR) == 4096);
    int q[2];
    CHECK(pipe(q) == 0);
    CHECK(write(q[1], "hello", 5) == 5);
    CHECK_ERR(sendfile(p[1], q[0], NULL, 5), EINVAL);
    off = 0;
    CHECK_ERR(sendfile(p[1], q[0], &off, 5), ESPIPE);
    int e = eventfd(1, 0);
    CHECK_ERR(sendfile(p[1], e, NULL, 8), EINVAL);
    /* Offsets near 2^63 (found by the fuzzer: the new offset overflowed). */
    off = 0x7fffffffffffffffLL - 2;
    CHECK_ERR(sendfile(p[1], f, &off, 100), EINVAL);
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(write(sv[1], "hello", 5) == 5);
    off = 0x7fffffffffffffffLL;
    CHECK_ERR(sendfile(p[1], sv[0], &off, 5), ESPIPE);
    close(sv[0]);
    close(sv[1]);
    close(e);
    close(q[0]);
    close(q[1]);
    close(p[0]);
    close(p[1]);
    close(f);
}

int main(void)
{
    memset(big, 'x', sizeof big);
    pipes();
    fifos();
    stream_sockets();
    eventfds();
    sendfiles();
    ok();
    return 0;
}
