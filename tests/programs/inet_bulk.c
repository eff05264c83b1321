/* A large TCP transfer over loopback with a checksum: a forked child sends
 * MiB mebibytes of a pseudo-random stream, the parent receives and checks it.
 * Usage: inet_bulk MiB [4|6].  Prints the size and the checksum. */
#define _GNU_SOURCE
#include "check.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

static uint64_t next(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static void fill(uint64_t *seed, unsigned char *buf, size_t n)
{
    for (size_t i = 0; i < n; i += 8) {
        uint64_t v = next(seed);
        memcpy(buf + i, &v, 8);
    }
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    long mib = atol(argv[1]);
    int v6 = argc > 2 && argv[2][0] == '6';
    long total = mib << 20;
    int fam = v6 ? AF_INET6 : AF_INET;
    struct sockaddr_storage ss = {0};
    socklen_t len;
    if (v6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
        len = sizeof(*a);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof(*a);
    }
    int l = socket(fam, SOCK_STREAM, 0);
    CHECK(bind(l, (struct sockaddr *)&ss, len) == 0 && listen(l, 1) == 0);
    CHECK(getsockname(l, (struct sockaddr *)&ss, &len) == 0);
    static unsigned char buf[1 << 16];
    pid_t pid = fork();
    if (pid == 0) {
        int c = socket(fam, SOCK_STREAM, 0);
        CHECK(connect(c, (struct sockaddr *)&ss, len) == 0);
        uint64_t seed = 88172645463325252ULL;
        for (long sent = 0; sent < total; sent += sizeof(buf)) {
            fill(&seed, buf, sizeof(buf));
            size_t off = 0;
            while (off < sizeof(buf)) {
                ssize_t n = send(c, buf + off, sizeof(buf) - off, 0);
                CHECK(n > 0);
                off += n;
            }
        }
        close(c);
        _exit(0);
    }
    int s = accept(l, NULL, NULL);
    CHECK(s >= 0);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint64_t seed = 88172645463325252ULL, sum = 1469598103934665603ULL;
    static unsigned char want[1 << 16];
    long got = 0, filled = 0;
    size_t woff = sizeof(want);
    for (;;) {
        ssize_t n = recv(s, buf, sizeof(buf), 0);
        CHECK(n >= 0);
        if (n == 0)
            break;
        for (ssize_t i = 0; i < n; i++) {
            if (woff == sizeof(want)) {
                fill(&seed, want, sizeof(want));
                filled += sizeof(want);
                woff = 0;
            }
            CHECK(buf[i] == want[woff]);
            woff++;
            sum = (sum ^ buf[i]) * 1099511628211ULL;
        }
        got += n;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && st == 0);
    CHECK(got == total);
    double secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("bytes %ld checksum %016llx\n", got, (unsigned long long)sum);
    fprintf(stderr, "throughput %.1f MiB/s\n", got / 1048576.0 / secs);
    ok();
    return 0;
}
