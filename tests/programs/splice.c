/* splice(2) and tee(2) between pipes, loopback TCP sockets and files, as proxies
 * and servers use them, checked against Linux.  Bytes are never lost: what an
 * output does not take stays in its input.  Prints what it saw and "ok". */
#define _GNU_SOURCE
#include "check.h"
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>

static void tcp_pair(int *c, int *s)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof(a);
    int l = socket(AF_INET, SOCK_STREAM, 0);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(l >= 0 && bind(l, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(l, 1) == 0);
    CHECK(getsockname(l, (struct sockaddr *)&a, &len) == 0);
    *c = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(connect(*c, (struct sockaddr *)&a, sizeof(a)) == 0);
    *s = accept(l, NULL, NULL);
    CHECK(*s >= 0);
    close(l);
}

static long readall(int fd, char *buf, long want)
{
    long got = 0;
    while (got < want) {
        ssize_t r = read(fd, buf + got, want - got);
        if (r <= 0)
            break;
        got += r;
    }
    return got;
}

static int inq(int fd)
{
    int n = -1;
    CHECK(ioctl(fd, FIONREAD, &n) == 0);
    return n;
}

int main(void)
{
    static char buf[1 << 20], got[1 << 20];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (char)(i * 13 + i / 1000);
    int p[2], q[2], c, s;
    CHECK(pipe(p) == 0 && pipe(q) == 0);
    tcp_pair(&c, &s);

    /* pipe -> socket */
    CHECK(write(p[1], buf, 10000) == 10000);
    long moved = 0;
    while (moved < 10000) {
        ssize_t r = splice(p[0], NULL, c, NULL, 10000 - moved, 0);
        CHECK(r > 0);
        moved += r;
    }
    printf("pipe->socket %ld, same bytes %d\n", moved,
           readall(s, got, 10000) == 10000 && memcmp(got, buf, 10000) == 0);

    /* socket -> pipe: only what is there, then the rest stays in the socket */
    CHECK(write(c, buf, 5000) == 5000);
    long m = 0;
    while (m < 5000) {
        ssize_t r = splice(s, NULL, p[1], NULL, 100000, 0);
        CHECK(r > 0);
        m += r;
    }
    printf("socket->pipe %ld, same bytes %d\n", m,
           readall(p[0], got, 5000) == 5000 && memcmp(got, buf, 5000) == 0);

    /* socket -> a one-page pipe: the pipe takes what fits, the socket keeps the rest */
    CHECK(fcntl(q[1], F_SETPIPE_SZ, 4096) == 4096);
    CHECK(write(c, buf, 10000) == 10000);
    for (int i = 0; i < 100 && inq(s) < 10000; i++)
        usleep(10000);
    ssize_t r = splice(s, NULL, q[1], NULL, 10000, SPLICE_F_NONBLOCK);
    CHECK(r > 0 && r <= 4096);
    printf("into a full pipe: %s\n", splice(s, NULL, q[1], NULL, 10000, SPLICE_F_NONBLOCK) < 0
           && errno == EAGAIN ? "EAGAIN" : "?");
    long left = inq(s);
    long a = readall(q[0], got, r);
    long b = readall(s, got + a, left);
    printf("one-page pipe: conserved %d, in order %d\n", r + left == 10000,
           a + b == 10000 && memcmp(got, buf, 10000) == 0);

    /* pipe -> a full non-blocking socket: EAGAIN, and the pipe keeps every byte */
    CHECK(fcntl(c, F_SETFL, O_NONBLOCK) == 0);
    long filled = 0;
    while ((r = write(c, buf, sizeof(buf))) > 0)
        filled += r;
    CHECK(errno == EAGAIN);
    CHECK(write(p[1], buf, 50000) == 50000);
    r = splice(p[0], NULL, c, NULL, 50000, SPLICE_F_NONBLOCK);
    printf("into a full socket: %s, pipe still holds %d\n",
           r < 0 && errno == EAGAIN ? "EAGAIN" : "moved", inq(p[0]));
    CHECK(fcntl(c, F_SETFL, 0) == 0);
    /* Drain the socket, then the pipe's bytes go through in order. */
    for (long d = 0; d < filled;) {
        long want = filled - d < (long)sizeof(got) ? filled - d : (long)sizeof(got);
        CHECK(readall(s, got, want) == want);
        d += want;
    }
    moved = 0;
    while (moved < 50000) {
        r = splice(p[0], NULL, c, NULL, 50000 - moved, 0);
        CHECK(r > 0);
        moved += r;
    }
    printf("then: %ld, same bytes %d\n", moved,
           readall(s, got, 50000) == 50000 && memcmp(got, buf, 50000) == 0);

    /* file -> pipe with an offset (the file position stays), pipe -> file */
    char path[] = "/tmp/splice_XXXXXX";
    int f = mkstemp(path);
    CHECK(f >= 0);
    unlink(path);
    CHECK(write(f, buf, 30000) == 30000);
    loff_t off = 1000;
    r = splice(f, &off, p[1], NULL, 3000, 0);
    printf("file->pipe %zd, offset now %lld, position %lld, same bytes %d\n", r,
           (long long)off, (long long)lseek(f, 0, SEEK_CUR),
           readall(p[0], got, r) == r && memcmp(got, buf + 1000, r) == 0);
    CHECK(write(p[1], "spliced", 7) == 7);
    off = 5;
    r = splice(p[0], NULL, f, &off, 7, 0);
    CHECK(pread(f, got, 7, 5) == 7);
    printf("pipe->file %zd at offset, now %lld: %.7s\n", r, (long long)off, got);

    /* tee: copies without consuming */
    CHECK(write(p[1], "teedata", 7) == 7);
    r = tee(p[0], q[1], 100, 0);
    printf("tee %zd, source still %d, copy %d\n", r, inq(p[0]), inq(q[0]));
    CHECK(readall(p[0], got, 7) == 7 && readall(q[0], got + 7, 7) == 7);

    /* errors */
    CHECK_ERR(splice(c, NULL, s, NULL, 10, 0), EINVAL);         /* no pipe */
    off = 0;
    CHECK_ERR(splice(p[0], &off, c, NULL, 10, 0), ESPIPE);       /* offset on a pipe */
    CHECK_ERR(splice(p[0], NULL, p[1], NULL, 10, 0), EINVAL);    /* one pipe both ends */
    CHECK_ERR(splice(p[0], NULL, c, NULL, 10, 0x100), EINVAL);   /* unknown flag */
    CHECK_ERR(splice(p[0], NULL, c, NULL, 10, SPLICE_F_NONBLOCK), EAGAIN);   /* empty */
    CHECK_ERR(splice(p[1], NULL, c, NULL, 10, 0), EBADF);        /* write end */
    CHECK_ERR(tee(p[0], c, 10, 0), EINVAL);
    printf("splice of 0 bytes: %zd\n", splice(p[0], NULL, c, NULL, 0, 0));
    /* sendfile reads only regular files: from a socket or a pipe it is EINVAL, even
     * with nothing to read (it must not wait). */
    CHECK_ERR(sendfile(c, s, NULL, 10), EINVAL);
    CHECK_ERR(sendfile(c, p[0], NULL, 10), EINVAL);

    /* EOF: the peer closed */
    close(c);
    printf("socket at EOF: %zd\n", splice(s, NULL, p[1], NULL, 100, 0));
    ok();
    return 0;
}
