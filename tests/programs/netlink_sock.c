/* AF_NETLINK sockets of three protocols (NETLINK_ROUTE, NETLINK_NETFILTER,
 * NETLINK_KOBJECT_UEVENT) in a fresh network namespace: types, port ids (the
 * process id first, then negative ones), explicit binds, peers, options, and the
 * acknowledgement of a message sent to the kernel.  Prints what it sees, with the
 * pid replaced, so the output can be compared with Linux's.
 */
#define _GNU_SOURCE
#include <linux/netlink.h>
#include <sched.h>
#include <stdint.h>
#include <sys/socket.h>

#include "check.h"

static void show_port(const char *what, int fd)
{
    struct sockaddr_nl sa;
    socklen_t len = sizeof(sa);
    CHECK(getsockname(fd, (struct sockaddr *)&sa, &len) == 0);
    int32_t pid = (int32_t)sa.nl_pid;
    if (pid == getpid())
        printf("  %s: port=pid len=%u\n", what, len);
    else
        printf("  %s: port=%s len=%u\n", what, pid < 0 ? "negative" : pid ? "other" : "0", len);
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    CHECK(unshare(CLONE_NEWNET) == 0);
    int protocols[] = {NETLINK_ROUTE, NETLINK_NETFILTER, NETLINK_KOBJECT_UEVENT};
    for (int i = 0; i < 3; i++) {
        int p = protocols[i];
        printf("protocol %d\n", p);
        CHECK_ERR(socket(AF_NETLINK, SOCK_STREAM, p), ESOCKTNOSUPPORT);
        CHECK_ERR(socket(AF_NETLINK, SOCK_SEQPACKET, p), ESOCKTNOSUPPORT);
        int a = socket(AF_NETLINK, SOCK_RAW, p), b = socket(AF_NETLINK, SOCK_DGRAM, p);
        CHECK(a >= 0 && b >= 0);
        show_port("unbound", a);
        struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
        CHECK(bind(a, (struct sockaddr *)&sa, sizeof(sa)) == 0);
        show_port("first", a);
        CHECK(connect(b, (struct sockaddr *)&sa, sizeof(sa)) == 0);
        show_port("second", b);
        struct sockaddr_nl peer;
        socklen_t len = sizeof(peer);
        CHECK(getpeername(b, (struct sockaddr *)&peer, &len) == 0);
        printf("  peer: family=%d port=%u len=%u\n", peer.nl_family, peer.nl_pid, len);

        int c = socket(AF_NETLINK, SOCK_RAW, p);
        CHECK(c >= 0);
        struct sockaddr_nl taken = {.nl_family = AF_NETLINK, .nl_pid = getpid()};
        CHECK_ERR(bind(c, (struct sockaddr *)&taken, sizeof(taken)), EADDRINUSE);
        struct sockaddr_nl mine = {.nl_family = AF_NETLINK, .nl_pid = 4242};
        CHECK(bind(c, (struct sockaddr *)&mine, sizeof(mine)) == 0);
        show_port("explicit", c);
        struct sockaddr_nl other = {.nl_family = AF_NETLINK, .nl_pid = 4343};
        CHECK_ERR(bind(c, (struct sockaddr *)&other, sizeof(other)), EINVAL);
        close(c);
        c = socket(AF_NETLINK, SOCK_RAW, p);         /* 4242 is free again */
        CHECK(bind(c, (struct sockaddr *)&mine, sizeof(mine)) == 0);
        close(c);

        int on = 1, v = -1;
        len = sizeof(v);
        CHECK(setsockopt(a, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)) == 0);
        CHECK(getsockopt(a, SOL_SOCKET, SO_PASSCRED, &v, &len) == 0);
        printf("  passcred=%d type=", v);
        CHECK(getsockopt(b, SOL_SOCKET, SO_TYPE, &v, &len) == 0);
        printf("%d protocol=", v);
        CHECK(getsockopt(b, SOL_SOCKET, SO_PROTOCOL, &v, &len) == 0);
        printf("%d\n", v);

        /* NLMSG_NOOP with an ack request: every protocol acknowledges it. */
        struct {
            struct nlmsghdr h;
            char body[4];
        } req = {{.nlmsg_len = sizeof(req), .nlmsg_type = NLMSG_NOOP,
                  .nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK, .nlmsg_seq = 9}};
        CHECK(send(a, &req, sizeof(req), 0) == sizeof(req));
        char buf[256];
        ssize_t n = recv(a, buf, sizeof(buf), MSG_DONTWAIT);
        CHECK(n >= (ssize_t)(sizeof(struct nlmsghdr) + sizeof(struct nlmsgerr)));
        struct nlmsghdr *h = (void *)buf;
        struct nlmsgerr *e = NLMSG_DATA(h);
        printf("  noop ack: type=%d seq=%u error=%d\n", h->nlmsg_type, h->nlmsg_seq, e->error);
        close(a);
        close(b);
    }
    /* A uevent listener may join group 1. */
    int u = socket(AF_NETLINK, SOCK_DGRAM, NETLINK_KOBJECT_UEVENT);
    struct sockaddr_nl g = {.nl_family = AF_NETLINK, .nl_groups = 1};
    CHECK(bind(u, (struct sockaddr *)&g, sizeof(g)) == 0);
    show_port("uevent listener", u);
    ok();
    return 0;
}
