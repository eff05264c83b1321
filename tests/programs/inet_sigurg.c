/* SIGURG: TCP urgent data arriving on a socket signals its owner (F_SETOWN, a process
 * or a process group), as the kernel's signal (SI_KERNEL), with or without O_ASYNC;
 * no owner (or owner 0 again): no signal.  Self-checking: prints "ok". */
#define _GNU_SOURCE
#include "check.h"
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>

static void pair(int *c, int *s)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int l = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(l >= 0);
    CHECK(bind(l, (struct sockaddr *)&a, len) == 0);
    CHECK(listen(l, 1) == 0);
    CHECK(getsockname(l, (struct sockaddr *)&a, &len) == 0);
    *c = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(*c >= 0);
    CHECK(connect(*c, (struct sockaddr *)&a, len) == 0);
    *s = accept(l, NULL, NULL);
    CHECK(*s >= 0);
    close(l);
}

/* Sends one urgent byte and waits until the receiver has it (POLLPRI, then read). */
static void urgent(int c, int s)
{
    struct pollfd p = {.fd = s, .events = POLLPRI};
    char b;
    CHECK(send(c, "!", 1, MSG_OOB) == 1);
    CHECK(poll(&p, 1, 5000) == 1 && (p.revents & POLLPRI));
    CHECK(recv(s, &b, 1, MSG_OOB) == 1 && b == '!');
}

static int pending_sigurg(void)
{
    sigset_t set;
    CHECK(sigpending(&set) == 0);
    return sigismember(&set, SIGURG);
}

static void expect_sigurg(void)
{
    sigset_t set;
    siginfo_t si;
    struct timespec ts = {5, 0};
    sigemptyset(&set);
    sigaddset(&set, SIGURG);
    CHECK(sigtimedwait(&set, &si, &ts) == SIGURG);
    CHECK(si.si_code == SI_KERNEL);
    CHECK(!pending_sigurg());
}

int main(void)
{
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGURG);
    sigaddset(&block, SIGIO);       /* O_ASYNC's own signal (below): left pending */
    CHECK(sigprocmask(SIG_BLOCK, &block, NULL) == 0);
    int c, s;
    pair(&c, &s);

    urgent(c, s);                              /* no owner: no signal */
    CHECK(!pending_sigurg());

    CHECK(fcntl(s, F_SETOWN, getpid()) == 0);  /* the process, without O_ASYNC */
    urgent(c, s);
    expect_sigurg();

    CHECK(fcntl(s, F_SETOWN, -getpgrp()) == 0);    /* the process group */
    urgent(c, s);
    expect_sigurg();

    CHECK(fcntl(s, F_SETFL, O_ASYNC) == 0);        /* with O_ASYNC as well */
    CHECK(fcntl(s, F_SETOWN, getpid()) == 0);
    urgent(c, s);
    expect_sigurg();
    CHECK(fcntl(s, F_SETFL, 0) == 0);

    CHECK(fcntl(s, F_SETOWN, 0) == 0);         /* no owner again */
    urgent(c, s);
    CHECK(!pending_sigurg());

    /* The sender is not signalled: only the receiving socket's owner. */
    CHECK(fcntl(c, F_SETOWN, getpid()) == 0);
    urgent(c, s);
    CHECK(!pending_sigurg());
    puts("ok");
    return 0;
}
