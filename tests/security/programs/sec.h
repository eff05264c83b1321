/* Shared helpers for the attack programs of tests/security.
 *
 * An attack program does not judge itself: it reports what each step
 * returned as `key=value` lines on stdout, and the Python test decides
 * (an attack must work natively and fail, without effect, in the sandbox).
 * A program exits 0 when it ran to the end, 2 on a usage or set-up error.
 */
#ifndef PYVISOR_SEC_H
#define PYVISOR_SEC_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* key=value on its own line, flushed at once (a later crash loses nothing). */
static __attribute__((unused)) void kv(const char *key, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static __attribute__((unused)) void kv(const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("%s=", key);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
}

static __attribute__((unused)) const char *ename(int e)
{
    const char *n = e ? strerrorname_np(e) : "0";
    return n ? n : "E?";
}

/* Reports the result of a call that returns -1 and sets errno on failure:
 * key=<ret> and key_errno=<ENAME> (0 on success). */
static __attribute__((unused)) long res(const char *key, long r)
{
    int e = errno;
    char k[256];
    kv(key, "%ld", r);
    snprintf(k, sizeof k, "%s_errno", key);
    kv(k, "%s", r == -1 ? ename(e) : "0");
    errno = e;
    return r;
}

/* The same for a raw result that is -errno on failure (inline asm). */
static __attribute__((unused)) long rawres(const char *key, long r)
{
    char k[256];
    kv(key, "%ld", r);
    snprintf(k, sizeof k, "%s_errno", key);
    kv(k, "%s", (r < 0 && r > -4096) ? ename((int)-r) : "0");
    return r;
}

/* Describes a wait status: exit:N or signal:N. */
static __attribute__((unused)) void status_kv(const char *key, int status)
{
    if (WIFEXITED(status))
        kv(key, "exit:%d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        kv(key, "signal:%d", WTERMSIG(status));
    else
        kv(key, "other:%#x", status);
}

static __attribute__((unused)) double now_mono(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

/* waitpid with a deadline: SIGKILLs the child after `secs` seconds.
 * Returns the status; *timed_out tells whether it had to be killed. */
static __attribute__((unused)) int wait_deadline(pid_t pid, double secs, int *timed_out)
{
    double end = now_mono() + secs;
    int status = 0;
    *timed_out = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return status;
        if (r < 0 && errno != EINTR)
            return -1;
        if (now_mono() > end && !*timed_out) {
            *timed_out = 1;
            kill(pid, SIGKILL);
            end = now_mono() + 10;
        }
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

static __attribute__((unused)) void die(const char *what)
{
    fprintf(stderr, "setup: %s: %s\n", what, strerror(errno));
    exit(2);
}

#define USAGE(argc, n, text)                                                \
    do {                                                                    \
        if ((argc) < (n)) {                                                 \
            fprintf(stderr, "usage: %s\n", text);                           \
            exit(2);                                                        \
        }                                                                   \
    } while (0)

#endif
