/* NETLINK_ROUTE beyond the dumps of links and addresses, in a fresh network
 * namespace whose lo is brought up first (RTM_NEWLINK IFF_UP): route lookups
 * (RTM_GETROUTE without a dump), the default rules (RTM_GETRULE), group
 * memberships, SCM_CREDENTIALS with SO_PASSCRED, the datagrams of a dump, and
 * RTM_DELLINK/RTM_NEWLINK errors.  Prints what it sees so the output can be
 * compared with Linux's.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <linux/fib_rules.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sched.h>
#include <stdint.h>
#include <sys/socket.h>

#include "check.h"

static int fd;
static uint32_t seq = 1;

struct req {
    struct nlmsghdr h;
    union {
        struct ifinfomsg ifi;
        struct rtmsg rtm;
        struct fib_rule_hdr frh;
    };
    char attrs[64];
};

static void put_attr(struct req *r, int type, const void *data, int len)
{
    struct rtattr *a = (void *)((char *)r + NLMSG_ALIGN(r->h.nlmsg_len));
    a->rta_type = type;
    a->rta_len = RTA_LENGTH(len);
    memcpy(RTA_DATA(a), data, len);
    r->h.nlmsg_len = NLMSG_ALIGN(r->h.nlmsg_len) + RTA_ALIGN(a->rta_len);
}

static void start(struct req *r, int type, int flags, size_t body)
{
    memset(r, 0, sizeof(*r));
    r->h.nlmsg_len = NLMSG_LENGTH(body);
    r->h.nlmsg_type = type;
    r->h.nlmsg_flags = NLM_F_REQUEST | flags;
    r->h.nlmsg_seq = seq++;
}

/* Prints the answers until an NLMSG_ERROR or NLMSG_DONE. */
static void answer(struct req *r)
{
    CHECK(send(fd, r, r->h.nlmsg_len, 0) == (ssize_t)r->h.nlmsg_len);
    char buf[8192];
    for (int datagrams = 1;; datagrams++) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        CHECK(n > 0);
        for (struct nlmsghdr *h = (void *)buf; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type == NLMSG_ERROR) {
                printf("  error %d\n", ((struct nlmsgerr *)NLMSG_DATA(h))->error);
                return;
            }
            if (h->nlmsg_type == NLMSG_DONE) {
                printf("  done, in datagram %d\n", datagrams);
                return;
            }
            printf("  type %d flags %#x:", h->nlmsg_type, h->nlmsg_flags);
            unsigned char *p = NLMSG_DATA(h);
            size_t fixed = h->nlmsg_type == RTM_NEWROUTE ? sizeof(struct rtmsg)
                                                         : sizeof(struct fib_rule_hdr);
            for (size_t i = 0; i < fixed; i++)
                printf("%02x", p[i]);
            int len = h->nlmsg_len - NLMSG_LENGTH(fixed);
            for (struct rtattr *a = (void *)(p + NLMSG_ALIGN(fixed)); RTA_OK(a, len);
                 a = RTA_NEXT(a, len)) {
                if (h->nlmsg_type == RTM_NEWROUTE && a->rta_type == RTA_CACHEINFO)
                    continue;                    /* times and counters */
                printf(" %d=", a->rta_type);
                for (unsigned i = 0; i < RTA_PAYLOAD(a); i++)
                    printf("%02x", ((unsigned char *)RTA_DATA(a))[i]);
            }
            printf("\n");
            if (!(h->nlmsg_flags & NLM_F_MULTI))
                return;                          /* a single answer, no ack asked for */
        }
    }
}

static void get_route(int family, const char *addr, int flags)
{
    struct req r;
    start(&r, RTM_GETROUTE, 0, sizeof(struct rtmsg));
    r.rtm.rtm_family = family;
    r.rtm.rtm_dst_len = family == AF_INET ? 32 : 128;
    r.rtm.rtm_flags = flags;
    unsigned char dst[16];
    CHECK(inet_pton(family, addr, dst) == 1);
    put_attr(&r, RTA_DST, dst, family == AF_INET ? 4 : 16);
    printf("route to %s (flags %#x)\n", addr, flags);
    answer(&r);
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    CHECK(unshare(CLONE_NEWNET) == 0);
    fd = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
    CHECK(fd >= 0);
    struct timeval tv = {.tv_sec = 5};
    CHECK(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0);

    struct req r;
    int lo = if_nametoindex("lo");
    printf("lo up\n");
    start(&r, RTM_NEWLINK, NLM_F_ACK, sizeof(struct ifinfomsg));
    r.ifi.ifi_index = lo;
    r.ifi.ifi_flags = r.ifi.ifi_change = IFF_UP;
    answer(&r);
    printf("lo up again, by name\n");
    start(&r, RTM_NEWLINK, NLM_F_ACK, sizeof(struct ifinfomsg));
    r.ifi.ifi_flags = r.ifi.ifi_change = IFF_UP;
    put_attr(&r, IFLA_IFNAME, "lo", 3);
    answer(&r);

    get_route(AF_INET, "127.0.0.1", 0);
    get_route(AF_INET, "127.0.0.2", RTM_F_LOOKUP_TABLE);
    get_route(AF_INET, "10.1.2.3", 0);
    get_route(AF_INET6, "2001:db8::1", 0);

    printf("rules\n");
    start(&r, RTM_GETRULE, NLM_F_DUMP, sizeof(struct fib_rule_hdr));
    answer(&r);
    start(&r, RTM_GETRULE, NLM_F_DUMP, sizeof(struct fib_rule_hdr));
    r.frh.family = AF_INET6;
    answer(&r);

    printf("links that cannot go or come\n");
    start(&r, RTM_DELLINK, NLM_F_ACK, sizeof(struct ifinfomsg));
    r.ifi.ifi_index = lo;
    answer(&r);
    start(&r, RTM_DELLINK, NLM_F_ACK, sizeof(struct ifinfomsg));
    put_attr(&r, IFLA_IFNAME, "nosuch0", 8);
    answer(&r);
    start(&r, RTM_DELLINK, NLM_F_ACK, sizeof(struct ifinfomsg));
    r.ifi.ifi_index = 999;
    answer(&r);
    start(&r, RTM_NEWLINK, NLM_F_ACK, sizeof(struct ifinfomsg));
    put_attr(&r, IFLA_IFNAME, "nosuch0", 8);
    answer(&r);

    printf("memberships\n");
    socklen_t len = 0;
    CHECK(getsockopt(fd, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, NULL, &len) == 0);
    printf("  none: len %u\n", len);
    unsigned group = RTNLGRP_LINK;
    CHECK(setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof(group)) == 0);
    group = RTNLGRP_IPV4_ROUTE;
    CHECK(setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof(group)) == 0);
    uint32_t words[4] = {0};
    len = sizeof(words);
    CHECK(getsockopt(fd, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, words, &len) == 0);
    printf("  two: len %u %08x %08x\n", len, words[0], words[1]);
    CHECK(setsockopt(fd, SOL_NETLINK, NETLINK_DROP_MEMBERSHIP, &group, sizeof(group)) == 0);
    len = 4;
    CHECK(getsockopt(fd, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, words, &len) == 0);
    printf("  one, short buffer: len %u %08x\n", len, words[0]);
    group = 0;
    CHECK_ERR(setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof(group)),
              EINVAL);
    group = 1000;
    CHECK_ERR(setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof(group)),
              EINVAL);

    printf("credentials\n");
    int on = 1;
    CHECK(setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)) == 0);
    start(&r, RTM_GETLINK, NLM_F_DUMP, sizeof(struct ifinfomsg));
    CHECK(send(fd, &r, r.h.nlmsg_len, 0) > 0);
    char buf[8192], control[CMSG_SPACE(sizeof(struct ucred))];
    struct iovec iov = {buf, sizeof(buf)};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                         .msg_controllen = sizeof(control)};
    CHECK(recvmsg(fd, &msg, 0) > 0);
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    CHECK(c != NULL && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS);
    struct ucred cred;
    memcpy(&cred, CMSG_DATA(c), sizeof(cred));
    printf("  pid %d uid %u gid %u\n", cred.pid, cred.uid, cred.gid);
    ok();
    return 0;
}
