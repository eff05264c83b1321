/* Nested epoll: cycles are ELOOP (ep_loop_check), and a waiter on an outer
 * epoll (epoll_wait or poll) wakes when a file watched by an inner one becomes
 * ready.  Linux: fs/eventpoll.c. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include "check.h"

static int wfd;

static void *writer(void *arg)
{
    usleep(100000);
    CHECK(write(wfd, "x", 1) == 1);
    return arg;
}

static void add(int ep, int fd, int events)
{
    struct epoll_event e = {.events = events, .data.fd = fd};
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) == 0);
}

int main(void)
{
    int a = epoll_create1(0), b = epoll_create1(0), c = epoll_create1(0);
    CHECK(a >= 0 && b >= 0 && c >= 0);
    struct epoll_event e = {.events = EPOLLIN};
    CHECK_ERR(epoll_ctl(a, EPOLL_CTL_ADD, a, &e), EINVAL);
    add(a, b, EPOLLIN);
    CHECK_ERR(epoll_ctl(b, EPOLL_CTL_ADD, a, &e), ELOOP);
    add(b, c, EPOLLIN);
    CHECK_ERR(epoll_ctl(c, EPOLL_CTL_ADD, a, &e), ELOOP);

    int p[2];
    CHECK(pipe2(p, O_NONBLOCK) == 0);
    wfd = p[1];
    add(c, p[0], EPOLLIN);
    struct epoll_event out[2];
    CHECK(epoll_wait(a, out, 2, 0) == 0);
    for (int i = 0; i < 2; i++) {
        pthread_t th;
        CHECK(pthread_create(&th, NULL, writer, NULL) == 0);
        if (i == 0) {
            CHECK(epoll_wait(a, out, 2, 10000) == 1 && out[0].data.fd == b);
        } else {
            struct pollfd pfd = {a, POLLIN, 0};
            CHECK(poll(&pfd, 1, 10000) == 1 && pfd.revents == POLLIN);
        }
        CHECK(epoll_wait(c, out, 2, 0) == 1 && out[0].data.fd == p[0]);
        char ch;
        CHECK(read(p[0], &ch, 1) == 1);
        CHECK(pthread_join(th, NULL) == 0);
        CHECK(epoll_wait(a, out, 2, 0) == 0);
    }
    ok();
    return 0;
}
