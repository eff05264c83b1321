/* /proc/sys/kernel/{hostname,domainname} are pollable: a change by sethostname
 * or setdomainname wakes every epoll watching them with POLLERR|POLLPRI, once
 * (Linux: proc_sys_poll, uts_proc_notify).  Changes the hostname: run it in a
 * UTS namespace of its own (natively: unshare --uts). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include "check.h"

int main(void)
{
    int h1 = open("/proc/sys/kernel/hostname", O_RDONLY);
    int h2 = open("/proc/sys/kernel/hostname", O_RDONLY);
    int d = open("/proc/sys/kernel/domainname", O_RDONLY);
    CHECK(h1 >= 0 && h2 >= 0 && d >= 0);
    int e1 = epoll_create1(0), e2 = epoll_create1(0), e3 = epoll_create1(0);
    struct epoll_event ev = {0};
    CHECK(epoll_ctl(e1, EPOLL_CTL_ADD, h1, &ev) == 0);
    CHECK(epoll_ctl(e2, EPOLL_CTL_ADD, h2, &ev) == 0);
    CHECK(epoll_ctl(e3, EPOLL_CTL_ADD, d, &ev) == 0);
    CHECK(epoll_wait(e1, &ev, 1, 0) == 0);
    struct pollfd p = {h1, POLLIN, 0};
    CHECK(poll(&p, 1, 0) == 1 && p.revents == POLLIN);

    CHECK(sethostname("uts-poll-test", 13) == 0);
    CHECK(epoll_wait(e1, &ev, 1, 5000) == 1 && (ev.events & EPOLLERR));
    CHECK(epoll_wait(e2, &ev, 1, 5000) == 1 && (ev.events & EPOLLERR));
    CHECK(epoll_wait(e1, &ev, 1, 0) == 0);                   /* latched */
    CHECK(epoll_wait(e3, &ev, 1, 0) == 0);                   /* not the domain name */
    CHECK(setdomainname("uts.poll", 8) == 0);
    CHECK(epoll_wait(e3, &ev, 1, 5000) == 1 && (ev.events & EPOLLERR));
    char buf[64] = {0};
    int h3 = open("/proc/sys/kernel/hostname", O_RDONLY);
    CHECK(read(h3, buf, sizeof buf - 1) == 14 && strcmp(buf, "uts-poll-test\n") == 0);
    ok();
    return 0;
}
