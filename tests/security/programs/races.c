/* Races: another thread changes what a syscall argument points to while the
 * Sentry reads it (a double fetch would check one value and use another).
 *
 * Usage: races ATTACK DIR [ITERATIONS]
 *   pathrace:    a thread flips a path buffer between DIR/sandboxok and
 *                DIR/hostonly1 while the main thread opens it O_CREAT|O_WRONLY.
 *   iovrace:     a thread flips a struct iovec's base and length (valid,
 *                NULL, kernel address, huge length) while writev runs.
 *   symlinkrace: a thread swaps a symlink between DIR/safe and DIR/target
 *                while the main thread creates files through it.
 *   statrace:    a thread flips struct timespecs between valid values and
 *                invalid nanoseconds while utimensat and clock_nanosleep read
 *                them.
 */
#include "sec.h"
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/uio.h>

static atomic_int stop;
static atomic_long flips;
static char pathbuf[4096];
static char path_a[4096], path_b[4096];
static struct iovec iov[2];
static char data[64] = "RACE-DATA-RACE-DATA-RACE-DATA\n";
static const char *dir;
static struct timespec times[2];
static struct timespec sleep_ts;

static void wait_flipping(void)
{
    while (flips < 10)
        sched_yield();
}

static void *flip_path(void *arg)
{
    size_t n = strlen(path_a) + 1;
    while (!stop) {
        memcpy(pathbuf, path_b, n);
        memcpy(pathbuf, path_a, n);
        flips++;
    }
    return NULL;
}

static void *flip_iov(void *arg)
{
    unsigned i = 0;
    while (!stop) {
        switch (i++ % 4) {
        case 0: iov[0].iov_base = data; iov[0].iov_len = 16; break;
        case 1: iov[0].iov_base = NULL; iov[0].iov_len = 1 << 30; break;
        case 2: iov[0].iov_base = (void *)0xffff880000000000UL; iov[0].iov_len = 4096; break;
        case 3: iov[0].iov_base = data; iov[0].iov_len = (size_t)-1 / 2; break;
        }
        iov[1].iov_len = (i & 1) ? 16 : ((size_t)1 << 62);
        flips++;
    }
    return NULL;
}

static void *flip_link(void *arg)
{
    char lnk[4096], tmp[4096], safe[4096], target[4096];
    snprintf(lnk, sizeof lnk, "%s/lnk", dir);
    snprintf(tmp, sizeof tmp, "%s/lnk.tmp", dir);
    snprintf(safe, sizeof safe, "%s/safe", dir);
    snprintf(target, sizeof target, "%s/target", dir);
    unsigned i = 0;
    while (!stop) {
        unlink(tmp);
        symlink((i++ & 1) ? target : safe, tmp);
        rename(tmp, lnk);
        flips++;
    }
    return NULL;
}

static void *flip_times(void *arg)
{
    unsigned i = 0;
    while (!stop) {
        long ns = (i++ & 1) ? 999999999L : 1000000000L;  /* valid / EINVAL */
        times[0].tv_nsec = ns;
        times[1].tv_nsec = ns;
        times[0].tv_sec = (i & 2) ? 1 : -1;
        sleep_ts.tv_nsec = (i & 1) ? 1000 : 1000000000L;
        flips++;
    }
    return NULL;
}

int main(int argc, char **argv)
{
    USAGE(argc, 3, "races ATTACK DIR [ITERATIONS]");
    const char *a = argv[1];
    dir = argv[2];
    int iters = argc > 3 ? atoi(argv[3]) : 1000;
    pthread_t th;
    int ok = 0, fail = 0;
    double t0 = now_mono();

    if (!strcmp(a, "pathrace")) {
        snprintf(path_a, sizeof path_a, "%s/sandboxok", dir);
        snprintf(path_b, sizeof path_b, "%s/hostonly1", dir);
        strcpy(pathbuf, path_a);
        pthread_create(&th, NULL, flip_path, NULL);
        wait_flipping();
        for (int i = 0; i < iters; i++) {
            int fd = open(pathbuf, O_CREAT | O_WRONLY | O_TRUNC, 0644);
            if (fd >= 0) {
                ok++;
                write(fd, "x", 1);
                close(fd);
            } else {
                fail++;
            }
        }
    } else if (!strcmp(a, "iovrace")) {
        char p[4096];
        snprintf(p, sizeof p, "%s/iovfile", dir);
        int fd = open(p, O_CREAT | O_WRONLY | O_TRUNC, 0644);
        if (fd < 0)
            die("open iovfile");
        iov[0].iov_base = data;
        iov[0].iov_len = 16;
        iov[1].iov_base = data + 16;
        iov[1].iov_len = 16;
        pthread_create(&th, NULL, flip_iov, NULL);
        wait_flipping();
        long total = 0;
        for (int i = 0; i < iters; i++) {
            ssize_t n = writev(fd, iov, 2);
            if (n >= 0) {
                ok++;
                total += n;
            } else {
                fail++;
            }
            n = preadv(fd, iov, 2, 0);   /* and the other direction */
        }
        kv("bytes", "%ld", total);
        close(fd);
    } else if (!strcmp(a, "symlinkrace")) {
        char p[4096];
        snprintf(p, sizeof p, "%s/lnk", dir);
        char safe[4096];
        snprintf(safe, sizeof safe, "%s/safe", dir);
        symlink(safe, p);
        pthread_create(&th, NULL, flip_link, NULL);
        wait_flipping();
        for (int i = 0; i < iters; i++) {
            char f[4096];
            snprintf(f, sizeof f, "%s/lnk/f%d", dir, i % 10);
            int fd = open(f, O_CREAT | O_WRONLY, 0644);
            if (fd >= 0) {
                ok++;
                close(fd);
            } else {
                fail++;
            }
        }
    } else if (!strcmp(a, "statrace")) {
        char p[4096];
        snprintf(p, sizeof p, "%s/timesfile", dir);
        close(open(p, O_CREAT | O_WRONLY, 0644));
        times[0].tv_sec = times[1].tv_sec = 1;
        pthread_create(&th, NULL, flip_times, NULL);
        wait_flipping();
        for (int i = 0; i < iters; i++) {
            if (utimensat(AT_FDCWD, p, times, 0) == 0)
                ok++;
            else
                fail++;
            struct timespec ts = {0, 1000};
            nanosleep(&ts, NULL);
            clock_nanosleep(CLOCK_MONOTONIC, 0, &sleep_ts, NULL) == 0 ? ok++ : fail++;
        }
    } else {
        fprintf(stderr, "unknown attack %s\n", a);
        return 2;
    }
    stop = 1;
    pthread_join(th, NULL);
    kv("flips", "%ld", (long)flips);
    kv("ok", "%d", ok);
    kv("fail", "%d", fail);
    kv("seconds", "%.3f", now_mono() - t0);
    kv("getpid", "%d", (int)getpid());
    return 0;
}
