/* A SYN flood on loopback from inside: N non-blocking connects to a listener
 * (backlog 8) that never accepts.  The accept queue bounds what completes
 * (backlog + 1 connections); every other connect stays pending, never an error.
 * Meanwhile another connection keeps working: ROUNDS ping-pongs on a second
 * listener between bursts of the flood.  Prints what it saw and "ok".
 * usage: syn_flood N */
#define _GNU_SOURCE
#include "check.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>

#define BACKLOG 8
#define ROUNDS 50

static int listener(int backlog, struct sockaddr_in *a)
{
    socklen_t len = sizeof(*a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    a->sin_family = AF_INET;
    a->sin_port = 0;
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(fd >= 0);
    CHECK(bind(fd, (struct sockaddr *)a, sizeof(*a)) == 0);
    CHECK(listen(fd, backlog) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)a, &len) == 0);
    return fd;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 1000;
    struct rlimit rl;
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    if (rl.rlim_cur < (rlim_t)n + 64) {
        rl.rlim_cur = rl.rlim_max < (rlim_t)n + 64 ? rl.rlim_max : (rlim_t)n + 64;
        CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
    }
    CHECK(rl.rlim_cur >= (rlim_t)n + 64);

    struct sockaddr_in victim, echo;
    int v = listener(BACKLOG, &victim);
    int e = listener(4, &echo);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {        /* the echo server: it accepts and answers */
        close(v);
        int c = accept(e, NULL, NULL);
        char b;
        CHECK(c >= 0);
        while (read(c, &b, 1) == 1)
            CHECK(write(c, &b, 1) == 1);
        _exit(0);
    }
    int ec = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(connect(ec, (struct sockaddr *)&echo, sizeof(echo)) == 0);

    int *fds = calloc(n, sizeof(int));
    int step = n / ROUNDS > 0 ? n / ROUNDS : 1, pongs = 0;
    CHECK(fds != NULL);
    int made = 0, enobufs = 0;
    for (int i = 0; i < n; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (fds[i] < 0 && (errno == ENOBUFS || errno == ENOMEM)) {
            enobufs = 1;   /* the memory bound, not the fd limit, stopped the flood */
            break;
        }
        CHECK(fds[i] >= 0);
        made++;
        int r = connect(fds[i], (struct sockaddr *)&victim, sizeof(victim));
        CHECK(r == 0 || errno == EINPROGRESS);
        if (i % step == 0) {   /* the other service still answers during the flood */
            char b = 'x';
            CHECK(write(ec, &b, 1) == 1 && read(ec, &b, 1) == 1 && b == 'x');
            pongs++;
        }
    }
    int connected = 0, pending = 0, failed = 0;
    if (enobufs)
        printf("socket() refused with ENOBUFS after %s sockets\n", made > 100 ? "many" : "few");
    n = made;
    for (int i = 0; i < n; i++) {
        struct pollfd p = {.fd = fds[i], .events = POLLOUT};
        int err = 0;
        socklen_t len = sizeof(err);
        CHECK(poll(&p, 1, 0) >= 0);
        CHECK(getsockopt(fds[i], SOL_SOCKET, SO_ERROR, &err, &len) == 0);
        if (err)
            failed++;
        else if (p.revents & POLLOUT)
            connected++;
        else
            pending++;
    }
    printf("flood %d: connected %d pending %d failed %d, echo answered %d\n", n, connected,
           pending, failed, pongs == (n + step - 1) / step);
    /* The queue is what accept takes: exactly what completed, then nothing. */
    int accepted = 0, a;
    struct pollfd lp = {.fd = v, .events = POLLIN};
    while (poll(&lp, 1, 0) == 1 && (a = accept(v, NULL, NULL)) >= 0) {
        accepted++;
        close(a);
        if (accepted >= connected)
            break;
    }
    printf("accepted %d\n", accepted);
    for (int i = 0; i < n; i++)
        close(fds[i]);
    close(v);
    /* What the flood held is given back: new connections work again. */
    struct sockaddr_in again;
    int l2 = listener(4, &again), c2 = -1;
    for (int i = 0; i < 50 && c2 < 0; i++) {
        c2 = socket(AF_INET, SOCK_STREAM, 0);
        if (c2 < 0)
            usleep(100000);
    }
    CHECK(c2 >= 0 && connect(c2, (struct sockaddr *)&again, sizeof(again)) == 0);
    int a2 = accept(l2, NULL, NULL);
    CHECK(a2 >= 0 && write(c2, "z", 1) == 1);
    char z = 0;
    CHECK(read(a2, &z, 1) == 1 && z == 'z');
    printf("after the flood: a new connection works\n");
    close(a2);
    close(c2);
    close(l2);
    shutdown(ec, SHUT_WR);
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ok();
    return 0;
}
