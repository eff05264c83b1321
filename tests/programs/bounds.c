/* Honest limits: what a sandbox lets a program hold, and what it gets past the bound.
 *
 * Usage: bounds TEST [ARG]
 *   zombies             fork children that exit at once, never reaping them, until fork
 *                       fails; reap them all; fork again until it fails.
 *   pipes               fill non-blocking pipes (64 KiB each) until a write or pipe() fails;
 *                       close them all; fill one pipe again.
 *   sigqueue [LIMIT]    with RLIMIT_SIGPENDING = LIMIT (if given), sigqueue SIGRTMIN to
 *                       ourselves (blocked) until it fails; kill() another RT signal;
 *                       take them all with sigtimedwait; sigqueue again.
 *   epoll               64 eventfds watched by more and more epoll instances until
 *                       epoll_ctl fails; close them; watch the 64 again.
 *   sockets             fill non-blocking AF_UNIX stream socketpairs until a send fails
 *                       other than EAGAIN; close them; send on a fresh pair.
 * Prints key=value lines (errno names), then alive=1, and exits 0.  slab_before and
 * slab_after are /proc/meminfo's SUnreclaim (kB) before and after (the sandbox reports
 * what its Sentry holds for the program there).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *ename(int e)
{
    switch (e) {
    case 0: return "0";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case ENOBUFS: return "ENOBUFS";
    case ENOSPC: return "ENOSPC";
    case EMFILE: return "EMFILE";
    case ENFILE: return "ENFILE";
    case EPERM: return "EPERM";
    default: {
        static char buf[32];
        snprintf(buf, sizeof buf, "E%d", e);
        return buf;
    }
    }
}

static long slab(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    long v = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "SUnreclaim: %ld", &v) == 1)
            break;
    fclose(f);
    return v;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
}

static int zombies(void)
{
    int n = 0, err = 0;
    for (;;) {
        pid_t p = fork();
        if (p == 0)
            _exit(0);
        if (p < 0) {
            err = errno;
            break;
        }
        if (++n >= 100000)
            break;
    }
    printf("zombies=%d\nfork_errno=%s\n", n, ename(err));
    /* Every child is a zombie now (or soon): reap them all. */
    int reaped = 0;
    while (wait(NULL) > 0)
        reaped++;
    printf("reaped=%d\n", reaped);
    /* The pids came back: the same number of forks works again. */
    int again = 0;
    err = 0;
    for (;;) {
        pid_t p = fork();
        if (p == 0)
            _exit(0);
        if (p < 0) {
            err = errno;
            break;
        }
        if (++again >= 100000)
            break;
    }
    while (wait(NULL) > 0)
        ;
    printf("again=%d\nagain_errno=%s\n", again, ename(err));
    return 0;
}

static int pipes(void)
{
    static char chunk[65536];
    static int fds[8192][2];
    int n = 0, err = 0, werr = 0;
    long bytes = 0;
    raise_nofile();
    printf("slab_before=%ld\n", slab());
    while (n < 8192) {
        if (pipe2(fds[n], O_NONBLOCK) < 0) {
            err = errno;
            break;
        }
        n++;
        ssize_t w;
        while ((w = write(fds[n - 1][1], chunk, sizeof chunk)) > 0)
            bytes += w;
        if (errno != EAGAIN) {
            werr = errno;
            break;
        }
    }
    printf("pipes=%d\nfilled_kb=%ld\npipe_errno=%s\nwrite_errno=%s\n", n, bytes / 1024,
           ename(err), ename(werr));
    printf("slab_full=%ld\n", slab());
    for (int i = 0; i < n; i++) {
        close(fds[i][0]);
        close(fds[i][1]);
    }
    printf("slab_after=%ld\n", slab());
    int p[2];
    long after = 0;
    ssize_t w;
    if (pipe2(p, O_NONBLOCK) == 0) {
        while ((w = write(p[1], chunk, sizeof chunk)) > 0)
            after += w;
    }
    printf("after=%ld\n", after);
    return 0;
}

static int sigq(long limit)
{
    struct rlimit rl;
    if (limit > 0) {
        rl.rlim_cur = rl.rlim_max = limit;
        if (setrlimit(RLIMIT_SIGPENDING, &rl) < 0)
            printf("setrlimit_errno=%s\n", ename(errno));
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGRTMIN);
    sigaddset(&set, SIGRTMIN + 1);
    sigprocmask(SIG_BLOCK, &set, NULL);
    printf("slab_before=%ld\n", slab());
    long n = 0;
    int err = 0;
    for (;;) {
        union sigval v = {.sival_int = (int)n};
        if (sigqueue(getpid(), SIGRTMIN, v) < 0) {
            err = errno;
            break;
        }
        if (++n >= 10000000)
            break;
    }
    printf("queued=%ld\nsigqueue_errno=%s\n", n, ename(err));
    /* kill() of a real-time signal past the limit still succeeds (its siginfo is lost). */
    printf("kill_rt=%d\n", kill(getpid(), SIGRTMIN + 1) == 0 ? 0 : errno);
    printf("slab_full=%ld\n", slab());
    struct timespec zero = {0, 0};
    long taken = 0, in_order = 1;
    siginfo_t si;
    int s;
    while ((s = sigtimedwait(&set, &si, &zero)) > 0) {
        if (s == SIGRTMIN) {
            if (si.si_value.sival_int != taken)
                in_order = 0;
            taken++;
        } else {
            printf("rt1_taken=1\n");
        }
    }
    printf("taken=%ld\nin_order=%ld\n", taken, in_order);
    printf("slab_after=%ld\n", slab());
    union sigval v = {.sival_int = 0};
    printf("again=%d\n", sigqueue(getpid(), SIGRTMIN, v) == 0 ? 0 : errno);
    return 0;
}

static int epolls(void)
{
    enum { NEV = 64, MAXEP = 3000 };
    static int ev[NEV], eps[MAXEP];
    raise_nofile();
    for (int i = 0; i < NEV; i++)
        ev[i] = eventfd(0, 0);
    printf("slab_before=%ld\n", slab());
    long watches = 0;
    int n = 0, err = 0;
    while (n < MAXEP && !err) {
        int ep = epoll_create1(0);
        if (ep < 0) {
            err = errno;
            break;
        }
        eps[n++] = ep;
        for (int i = 0; i < NEV; i++) {
            struct epoll_event e = {.events = EPOLLIN, .data.u32 = i};
            if (epoll_ctl(ep, EPOLL_CTL_ADD, ev[i], &e) < 0) {
                err = errno;
                break;
            }
            watches++;
        }
    }
    printf("epolls=%d\nwatches=%ld\nepoll_errno=%s\n", n, watches, ename(err));
    printf("slab_full=%ld\n", slab());
    for (int i = 0; i < n; i++)
        close(eps[i]);
    printf("slab_after=%ld\n", slab());
    int ep = epoll_create1(0), after = 0;
    for (int i = 0; i < NEV; i++) {
        struct epoll_event e = {.events = EPOLLIN, .data.u32 = i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, ev[i], &e) == 0)
            after++;
    }
    printf("after=%d\n", after);
    return 0;
}

static int sockets(void)
{
    static char chunk[65536];
    static int sv[4096][2];
    raise_nofile();
    printf("slab_before=%ld\n", slab());
    int n = 0, err = 0, serr = 0;
    long bytes = 0;
    while (n < 4096) {
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv[n]) < 0) {
            err = errno;
            break;
        }
        n++;
        ssize_t w;
        while ((w = send(sv[n - 1][0], chunk, sizeof chunk, 0)) > 0)
            bytes += w;
        if (errno != EAGAIN) {
            serr = errno;
            break;
        }
    }
    printf("pairs=%d\nqueued_kb=%ld\nsocketpair_errno=%s\nsend_errno=%s\n", n, bytes / 1024,
           ename(err), ename(serr));
    printf("slab_full=%ld\n", slab());
    for (int i = 0; i < n; i++) {
        close(sv[i][0]);
        close(sv[i][1]);
    }
    printf("slab_after=%ld\n", slab());
    int p[2];
    long after = -1;
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, p) == 0)
        after = send(p[0], chunk, 1000, 0);
    printf("after=%ld\n", after);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bounds zombies|pipes|sigqueue [LIMIT]|epoll|sockets\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IONBF, 0);
    int r = 2;
    if (!strcmp(argv[1], "zombies"))
        r = zombies();
    else if (!strcmp(argv[1], "pipes"))
        r = pipes();
    else if (!strcmp(argv[1], "sigqueue"))
        r = sigq(argc > 2 ? atol(argv[2]) : 0);
    else if (!strcmp(argv[1], "epoll"))
        r = epolls();
    else if (!strcmp(argv[1], "sockets"))
        r = sockets();
    printf("alive=1\n");
    return r;
}
