/* poll, select and epoll on pipes. */
#define _GNU_SOURCE
#include <poll.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <time.h>
#include "check.h"

static double now(void)
{
    struct timespec ts;
    CHECK(clock_gettime(CLOCK_MONOTONIC, &ts) == 0);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(void)
{
    int p[2];
    char c;
    CHECK(pipe(p) == 0);

    /* poll: nothing ready with timeout 0 and 50ms; then readable. */
    struct pollfd pfd[2] = {{p[0], POLLIN, 0}, {p[1], POLLOUT, 0}};
    CHECK(poll(pfd, 1, 0) == 0 && pfd[0].revents == 0);
    double t0 = now();
    CHECK(poll(pfd, 1, 50) == 0);
    CHECK(now() - t0 >= 0.045);
    CHECK(poll(pfd, 2, 0) == 1 && pfd[1].revents == POLLOUT);
    CHECK(write(p[1], "x", 1) == 1);
    CHECK(poll(pfd, 2, -1) == 2);
    CHECK(pfd[0].revents == POLLIN && pfd[1].revents == POLLOUT);

    /* A negative fd is ignored; a closed fd reports POLLNVAL. */
    struct pollfd odd[2] = {{-1, POLLIN, 0}, {999, POLLIN, 0}};
    CHECK(poll(odd, 2, 0) == 1);
    CHECK(odd[0].revents == 0 && odd[1].revents == POLLNVAL);

    /* select: the same, with fd_sets. */
    fd_set rs, ws;
    struct timeval tv;
    FD_ZERO(&rs);
    FD_SET(p[0], &rs);
    tv = (struct timeval){0, 0};
    CHECK(select(p[0] + 1, &rs, NULL, NULL, &tv) == 1 && FD_ISSET(p[0], &rs));
    CHECK(read(p[0], &c, 1) == 1 && c == 'x');
    FD_ZERO(&rs);
    FD_SET(p[0], &rs);
    tv = (struct timeval){0, 0};
    CHECK(select(p[0] + 1, &rs, NULL, NULL, &tv) == 0 && !FD_ISSET(p[0], &rs));
    FD_SET(p[0], &rs);
    tv = (struct timeval){0, 50000};
    t0 = now();
    CHECK(select(p[0] + 1, &rs, NULL, NULL, &tv) == 0);
    CHECK(now() - t0 >= 0.045);
    FD_ZERO(&rs);
    FD_ZERO(&ws);
    FD_SET(p[0], &rs);
    FD_SET(p[1], &ws);
    tv = (struct timeval){1, 0};
    CHECK(select(p[1] + 1, &rs, &ws, NULL, &tv) == 1);
    CHECK(!FD_ISSET(p[0], &rs) && FD_ISSET(p[1], &ws));
    int closed = dup(p[0]);
    CHECK(closed >= 0 && close(closed) == 0);
    FD_ZERO(&rs);
    FD_SET(closed, &rs);
    tv = (struct timeval){0, 0};
    CHECK_ERR(select(closed + 1, &rs, NULL, NULL, &tv), EBADF);

    /* epoll: ADD, wait, MOD, DEL. */
    int ep = epoll_create1(EPOLL_CLOEXEC);
    CHECK(ep >= 0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0x1234};
    struct epoll_event out[4];
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) == 0);
    CHECK_ERR(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev), EEXIST);
    CHECK(epoll_wait(ep, out, 4, 0) == 0);
    t0 = now();
    CHECK(epoll_wait(ep, out, 4, 50) == 0);
    CHECK(now() - t0 >= 0.045);
    CHECK(write(p[1], "y", 1) == 1);
    CHECK(epoll_wait(ep, out, 4, -1) == 1);
    CHECK(out[0].events == EPOLLIN && out[0].data.u64 == 0x1234);
    /* Level-triggered: still ready while unread. */
    CHECK(epoll_wait(ep, out, 4, 0) == 1);

    ev = (struct epoll_event){.events = EPOLLOUT, .data.u64 = 0x5678};
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, p[1], &ev) == 0);
    CHECK(epoll_wait(ep, out, 4, 0) == 2);
    ev = (struct epoll_event){.events = 0, .data.u64 = 0x9};
    CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev) == 0);
    CHECK(epoll_wait(ep, out, 4, 0) == 1 && out[0].data.u64 == 0x5678);
    CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, p[1], NULL) == 0);
    CHECK_ERR(epoll_ctl(ep, EPOLL_CTL_DEL, p[1], NULL), ENOENT);
    CHECK_ERR(epoll_ctl(ep, EPOLL_CTL_MOD, p[1], &ev), ENOENT);
    CHECK(epoll_wait(ep, out, 4, 0) == 0);
    ev = (struct epoll_event){.events = EPOLLIN, .data.u64 = 0xabc};
    CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev) == 0);
    CHECK(epoll_wait(ep, out, 4, 0) == 1 && out[0].data.u64 == 0xabc);
    CHECK(read(p[0], &c, 1) == 1 && c == 'y');
    CHECK(epoll_wait(ep, out, 4, 0) == 0);

    /* After the writer closes: POLLHUP / EPOLLHUP on the read end. */
    CHECK(close(p[1]) == 0);
    pfd[0] = (struct pollfd){p[0], POLLIN, 0};
    CHECK(poll(pfd, 1, 0) == 1 && (pfd[0].revents & POLLHUP));
    CHECK(epoll_wait(ep, out, 4, 0) == 1 && (out[0].events & EPOLLHUP));
    FD_ZERO(&rs);
    FD_SET(p[0], &rs);
    tv = (struct timeval){0, 0};
    CHECK(select(p[0] + 1, &rs, NULL, NULL, &tv) == 1 && FD_ISSET(p[0], &rs));
    CHECK(read(p[0], &c, 1) == 0);

    CHECK(close(ep) == 0);
    CHECK(close(p[0]) == 0);
    ok();
    return 0;
}
