/* Signal-driven I/O (issue #10): F_SETOWN/F_GETOWN, F_SETOWN_EX/F_GETOWN_EX,
 * F_SETSIG/F_GETSIG, O_ASYNC through F_SETFL and FIOASYNC, FIOSETOWN/SIOCGPGRP:
 * SIGIO (SI_KERNEL) or the F_SETSIG signal with si_fd, si_code POLL_IN/POLL_OUT
 * and si_band, when a pipe, a Unix socketpair or a TCP connection becomes
 * readable or writable; to a thread, a process or a process group; not to a
 * process the owner may not signal; nothing from an eventfd. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include "check.h"

static sigset_t all_io;

/* The next pending `sig`: its siginfo, waiting up to `ms` (0: only if pending). */
static int take(int sig, siginfo_t *si, int ms)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, sig);
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    return sigtimedwait(&s, si, &ts) == sig;
}

static int pending(int sig)
{
    sigset_t s;
    CHECK(sigpending(&s) == 0);
    return sigismember(&s, sig);
}

static void set_async(int fd, int sig)
{
    CHECK(fcntl(fd, F_SETOWN, getpid()) == 0);
    if (sig)
        CHECK(fcntl(fd, F_SETSIG, sig) == 0);
    CHECK(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_ASYNC) == 0);
}

static void owners(void)
{
    int p[2];
    CHECK(pipe(p) == 0);
    CHECK(fcntl(p[0], F_GETOWN) == 0 && fcntl(p[0], F_GETSIG) == 0);
    struct f_owner_ex ex = {-1, -1};
    CHECK(fcntl(p[0], F_GETOWN_EX, &ex) == 0 && ex.type == F_OWNER_TID && ex.pid == 0);
    CHECK(fcntl(p[0], F_SETOWN, getpid()) == 0 && fcntl(p[0], F_GETOWN) == getpid());
    CHECK(fcntl(p[0], F_GETOWN_EX, &ex) == 0 && ex.type == F_OWNER_PID && ex.pid == getpid());
    CHECK(fcntl(p[0], F_SETOWN, -getpgrp()) == 0 && fcntl(p[0], F_GETOWN) == -getpgrp());
    CHECK(fcntl(p[0], F_GETOWN_EX, &ex) == 0 && ex.type == F_OWNER_PGRP && ex.pid == getpgrp());
    ex.type = F_OWNER_TID;
    ex.pid = gettid();
    CHECK(fcntl(p[0], F_SETOWN_EX, &ex) == 0 && fcntl(p[0], F_GETOWN) == gettid());
    ex.type = 7;
    CHECK_ERR(fcntl(p[0], F_SETOWN_EX, &ex), EINVAL);
    ex.type = F_OWNER_PID;
    ex.pid = 0x3fffffff;
    CHECK_ERR(fcntl(p[0], F_SETOWN_EX, &ex), ESRCH);
    CHECK_ERR(fcntl(p[0], F_SETOWN_EX, NULL), EFAULT);
    CHECK_ERR(fcntl(p[0], F_SETOWN, 0x3fffffff), ESRCH);
    CHECK(fcntl(p[0], F_SETOWN, 0) == 0 && fcntl(p[0], F_GETOWN) == 0);
    CHECK_ERR(fcntl(p[0], F_SETSIG, 65), EINVAL);
    CHECK(fcntl(p[0], F_SETSIG, SIGRTMIN + 2) == 0 && fcntl(p[0], F_GETSIG) == SIGRTMIN + 2);
    /* A zombie can still be named (its pid is in use until it is reaped); a reaped
     * owner reads back as 0. */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0)
        _exit(0);
    siginfo_t zombie;
    CHECK(waitid(P_PID, pid, &zombie, WEXITED | WNOWAIT) == 0 && zombie.si_pid == pid);
    CHECK(fcntl(p[0], F_SETOWN, pid) == 0 && fcntl(p[0], F_GETOWN) == pid);
    ex.type = F_OWNER_PID;
    ex.pid = pid;
    CHECK(fcntl(p[0], F_SETOWN_EX, &ex) == 0 && fcntl(p[0], F_GETOWN) == pid);
    CHECK(waitpid(pid, NULL, 0) == pid);
    CHECK(fcntl(p[0], F_GETOWN) == 0);
    close(p[0]);
    close(p[1]);
}

static void pipes(void)
{
    int p[2];
    char buf[16];
    siginfo_t si;
    CHECK(pipe(p) == 0);
    /* Plain SIGIO: sent as the kernel's, no siginfo fields. */
    set_async(p[0], 0);
    CHECK(!pending(SIGIO));
    CHECK(write(p[1], "a", 1) == 1);
    CHECK(take(SIGIO, &si, 1000) && si.si_code == SI_KERNEL && si.si_fd == 0);
    /* F_SETSIG: one queued signal per event, with the fd and the band. */
    CHECK(fcntl(p[0], F_SETSIG, SIGRTMIN) == 0);
    CHECK(write(p[1], "b", 1) == 1);
    CHECK(write(p[1], "c", 1) == 1);
    for (int i = 0; i < 2; i++) {
        CHECK(take(SIGRTMIN, &si, 1000));
        CHECK(si.si_code == POLL_IN && si.si_fd == p[0] && si.si_band == (POLLIN | POLLRDNORM));
    }
    CHECK(!take(SIGRTMIN, &si, 0));
    /* The write end: room after a read is POLL_OUT. */
    set_async(p[1], SIGRTMIN + 1);
    CHECK(read(p[0], buf, sizeof buf) == 3);
    CHECK(take(SIGRTMIN + 1, &si, 1000));
    CHECK(si.si_code == POLL_OUT && si.si_fd == p[1] &&
          si.si_band == (POLLOUT | POLLWRNORM | POLLWRBAND));
    CHECK(!take(SIGRTMIN + 1, &si, 0) && !take(SIGRTMIN, &si, 0));
    /* O_ASYNC off: nothing. */
    CHECK(fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) & ~O_ASYNC) == 0);
    CHECK(write(p[1], "d", 1) == 1);
    CHECK(!take(SIGRTMIN, &si, 0));
    /* The writer goes: the reader hears of it (POLL_IN). */
    CHECK(fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) | O_ASYNC) == 0);
    close(p[1]);
    CHECK(take(SIGRTMIN, &si, 1000) && si.si_code == POLL_IN && si.si_fd == p[0]);
    close(p[0]);
    CHECK(!take(SIGRTMIN, &si, 0) && !pending(SIGIO));
}

static void unix_pair(void)
{
    int sv[2], on = 1, pid = getpid(), got = -1;
    siginfo_t si;
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(ioctl(sv[1], SIOCGPGRP, &got) == 0 && got == 0);
    CHECK(ioctl(sv[1], FIOSETOWN, &pid) == 0);
    CHECK(ioctl(sv[1], FIOGETOWN, &got) == 0 && got == pid);
    CHECK(fcntl(sv[1], F_SETSIG, SIGRTMIN) == 0);
    CHECK(ioctl(sv[1], FIOASYNC, &on) == 0 && (fcntl(sv[1], F_GETFL) & O_ASYNC));
    CHECK_ERR(ioctl(sv[1], FIOASYNC, NULL), EFAULT);
    CHECK(write(sv[0], "hello", 5) == 5);
    CHECK(take(SIGRTMIN, &si, 1000));
    CHECK(si.si_code == POLL_IN && si.si_fd == sv[1] && si.si_band == (POLLIN | POLLRDNORM));
    CHECK(!take(SIGRTMIN, &si, 0));
    on = 0;
    CHECK(ioctl(sv[1], FIOASYNC, &on) == 0 && !(fcntl(sv[1], F_GETFL) & O_ASYNC));
    CHECK(write(sv[0], "x", 1) == 1);
    CHECK(!take(SIGRTMIN, &si, 0));
    close(sv[1]);
    close(sv[0]);
}

static void no_fasync(void)
{
    int efd = eventfd(0, 0), on = 1, pid = getpid();
    siginfo_t si;
    CHECK(efd >= 0);
    CHECK_ERR(ioctl(efd, FIOASYNC, &on), ENOTTY);         /* no .fasync */
    CHECK_ERR(ioctl(efd, FIOSETOWN, &pid), ENOTTY);       /* not a socket */
    set_async(efd, SIGRTMIN);                             /* accepted, not kept */
    CHECK(!(fcntl(efd, F_GETFL) & O_ASYNC));
    uint64_t one = 1;
    CHECK(write(efd, &one, 8) == 8);
    CHECK(!take(SIGRTMIN, &si, 0) && !pending(SIGIO));
    close(efd);
}

static void tcp(void)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(l >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    CHECK(bind(l, (struct sockaddr *)&a, sizeof a) == 0 && listen(l, 4) == 0);
    CHECK(getsockname(l, (struct sockaddr *)&a, &alen) == 0);
    set_async(l, SIGRTMIN + 1);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(c >= 0 && connect(c, (struct sockaddr *)&a, sizeof a) == 0);
    siginfo_t si;
    /* A connection to accept makes the listener readable. */
    CHECK(take(SIGRTMIN + 1, &si, 2000) && si.si_code == POLL_IN && si.si_fd == l);
    int s = accept(l, NULL, NULL);
    CHECK(s >= 0);
    struct f_owner_ex ex = {F_OWNER_TID, gettid()};
    CHECK(fcntl(s, F_SETOWN_EX, &ex) == 0 && fcntl(s, F_SETSIG, SIGRTMIN) == 0);
    CHECK(fcntl(s, F_SETFL, fcntl(s, F_GETFL) | O_ASYNC) == 0);
    CHECK(write(c, "ping", 4) == 4);
    CHECK(take(SIGRTMIN, &si, 2000));
    CHECK(si.si_code == POLL_IN && si.si_fd == s && (si.si_band & POLLIN));
    char buf[8];
    CHECK(read(s, buf, sizeof buf) == 4);
    close(c);
    close(s);
    close(l);
    while (take(SIGRTMIN, &si, 0) || take(SIGRTMIN + 1, &si, 0))
        ;
}

/* The owner's credentials decide: a process that gave up root may not signal root. */
static void permission(void)
{
    if (getuid() != 0)
        return;
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int p[2];
        CHECK(setresuid(65534, 65534, 65534) == 0);
        CHECK(pipe(p) == 0);
        CHECK(fcntl(p[0], F_SETOWN, getppid()) == 0);
        CHECK(fcntl(p[0], F_SETFL, O_ASYNC) == 0);
        CHECK(write(p[1], "x", 1) == 1);
        /* And itself it may. */
        CHECK(fcntl(p[0], F_SETOWN, getpid()) == 0);
        CHECK(write(p[1], "y", 1) == 1);
        CHECK(pending(SIGIO));
        _exit(0);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(!pending(SIGIO));
}

/* A negative owner is a process group: every member gets it. */
static void group(void)
{
    pid_t leader = fork();
    CHECK(leader >= 0);
    if (leader == 0) {
        int go[2], p[2];
        CHECK(setpgid(0, 0) == 0 && pipe(go) == 0 && pipe(p) == 0);
        pid_t member = fork();
        CHECK(member >= 0);
        if (member == 0) {
            char c;
            CHECK(read(go[0], &c, 1) == 1);
            _exit(pending(SIGIO) ? 0 : 3);
        }
        CHECK(fcntl(p[0], F_SETOWN, -getpgrp()) == 0);
        CHECK(fcntl(p[0], F_SETFL, O_ASYNC) == 0);
        CHECK(write(p[1], "x", 1) == 1);
        CHECK(pending(SIGIO));
        CHECK(write(go[1], "g", 1) == 1);
        int st;
        CHECK(waitpid(member, &st, 0) == member && WIFEXITED(st) && WEXITSTATUS(st) == 0);
        _exit(0);
    }
    int st;
    CHECK(waitpid(leader, &st, 0) == leader && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(!pending(SIGIO));
}

/* F_OWNER_TID: the signal goes to that thread only. */
static int tpipe[2];
static volatile pid_t worker_tid;

static void *worker(void *arg)
{
    (void)arg;
    worker_tid = gettid();
    siginfo_t si;
    return (void *)(long)(take(SIGRTMIN, &si, 5000) && si.si_fd == tpipe[0]);
}

static void thread_owner(void)
{
    pthread_t th;
    CHECK(pipe(tpipe) == 0);
    CHECK(pthread_create(&th, NULL, worker, NULL) == 0);
    while (!worker_tid)
        sched_yield();
    struct f_owner_ex ex = {F_OWNER_TID, worker_tid};
    CHECK(fcntl(tpipe[0], F_SETOWN_EX, &ex) == 0);
    CHECK(fcntl(tpipe[0], F_SETSIG, SIGRTMIN) == 0);
    CHECK(fcntl(tpipe[0], F_SETFL, O_ASYNC) == 0);
    CHECK(write(tpipe[1], "t", 1) == 1);
    CHECK(!pending(SIGRTMIN));                  /* not this thread's, not the process's */
    void *ret;
    CHECK(pthread_join(th, &ret) == 0 && ret == (void *)1L);
    close(tpipe[0]);
    close(tpipe[1]);
}

int main(void)
{
    sigemptyset(&all_io);
    sigaddset(&all_io, SIGIO);
    for (int s = SIGRTMIN; s <= SIGRTMIN + 2; s++)
        sigaddset(&all_io, s);
    CHECK(sigprocmask(SIG_BLOCK, &all_io, NULL) == 0);
    owners();
    pipes();
    unix_pair();
    no_fasync();
    tcp();
    permission();
    group();
    thread_owner();
    ok();
    return 0;
}
