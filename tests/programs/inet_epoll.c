/* An epoll server and N non-blocking clients in one process, over loopback:
 * every client connects (EINPROGRESS), sends a line, reads its echo and closes.
 * Usage: inet_epoll [N] (default 100).  Prints the count served. */
#define _GNU_SOURCE
#include "check.h"
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#define MAXC 1000
enum { CONNECTING, SENT, DONE };
static int state[MAXC], cfd[MAXC];

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 100;
    CHECK(n > 0 && n <= MAXC);
    int l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    CHECK(bind(l, (struct sockaddr *)&a, sizeof(a)) == 0);
    CHECK(listen(l, SOMAXCONN) == 0);
    CHECK(getsockname(l, (struct sockaddr *)&a, &len) == 0);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 1ULL << 32};
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev) == 0);
    int inprogress = 0;
    for (int i = 0; i < n; i++) {
        cfd[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        CHECK(cfd[i] >= 0);
        int r = connect(cfd[i], (struct sockaddr *)&a, sizeof(a));
        CHECK(r == 0 || errno == EINPROGRESS);
        inprogress += r != 0;
        struct epoll_event ce = {.events = EPOLLOUT | EPOLLIN | EPOLLET, .data.u64 = 2ULL << 32 | i};
        CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, cfd[i], &ce) == 0);
    }
    int served = 0, finished = 0, accepted = 0;
    while (finished < n || served < n) {
        struct epoll_event evs[64];
        int k = epoll_wait(ep, evs, 64, 10000);
        CHECK(k > 0);
        for (int j = 0; j < k; j++) {
            unsigned kind = evs[j].data.u64 >> 32, idx = evs[j].data.u64 & 0xFFFFFFFF;
            if (kind == 1) {
                for (;;) {
                    int s = accept4(l, NULL, NULL, SOCK_NONBLOCK);
                    if (s < 0) {
                        CHECK(errno == EAGAIN);
                        break;
                    }
                    accepted++;
                    struct epoll_event se = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET,
                                             .data.u64 = 3ULL << 32 | s};
                    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, s, &se) == 0);
                }
            } else if (kind == 2) {
                int c = cfd[idx];
                if (state[idx] == CONNECTING && (evs[j].events & EPOLLOUT)) {
                    int err = -1;
                    socklen_t el = sizeof(err);
                    CHECK(getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err == 0);
                    char line[32];
                    int m = snprintf(line, sizeof(line), "client %d\n", idx);
                    CHECK(send(c, line, m, 0) == m);
                    state[idx] = SENT;
                }
                if (state[idx] == SENT && (evs[j].events & EPOLLIN)) {
                    char buf[64];
                    ssize_t m = recv(c, buf, sizeof(buf), 0);
                    if (m < 0) {
                        CHECK(errno == EAGAIN);
                        continue;
                    }
                    char want[32];
                    int wl = snprintf(want, sizeof(want), "client %d\n", idx);
                    CHECK(m == wl && memcmp(buf, want, wl) == 0);
                    state[idx] = DONE;
                    finished++;
                    CHECK(close(c) == 0);
                }
            } else {
                int s = idx;
                for (;;) {
                    char buf[64];
                    ssize_t m = recv(s, buf, sizeof(buf), 0);
                    if (m > 0) {
                        CHECK(send(s, buf, m, 0) == m);
                        continue;
                    }
                    if (m == 0) {
                        served++;
                        CHECK(close(s) == 0);
                    } else {
                        CHECK(errno == EAGAIN);
                    }
                    break;
                }
            }
        }
    }
    printf("accepted %d served %d finished %d\n", accepted, served, finished);
    (void)inprogress;
    ok();
    return 0;
}
