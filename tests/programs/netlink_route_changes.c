/* NETLINK_ROUTE requests that change the network namespace, in a fresh one of its own:
 * addresses (RTM_NEWADDR/DELADDR, IPv4 and IPv6, and what they make local: bind,
 * send and receive on them, lo's subnet, its broadcast; 127.0.0.1 deleted), routes
 * (RTM_NEWROUTE/DELROUTE, duplicates, reject types and what connect meets on them),
 * links (veth and bridge made, renamed, their MTU, up and down, deleted, a veth
 * end moved to another namespace and carrying UDP between the two), the
 * RTNLGRP_LINK and RTNLGRP_IPV4_IFADDR notifications, and bad requests (truncated
 * attributes, absurd prefix lengths, unknown interfaces).  Prints every answer so the
 * output can be compared with Linux's.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#ifndef IFF_LOWER_UP
#define IFF_LOWER_UP 0x10000
#endif
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "check.h"

static int fd;
static unsigned seq = 100;

struct req {
    struct nlmsghdr h;
    union {
        struct ifaddrmsg a;
        struct rtmsg r;
        struct ifinfomsg i;
    };
    char attrs[512];
};

static void start(struct req *q, int type, int flags, int hdrlen)
{
    memset(q, 0, sizeof(*q));
    q->h.nlmsg_type = type;
    q->h.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    q->h.nlmsg_seq = ++seq;
    q->h.nlmsg_len = NLMSG_LENGTH(hdrlen);
}

static struct rtattr *put(struct req *q, int type, const void *data, int len)
{
    struct rtattr *a = (void *)((char *)q + NLMSG_ALIGN(q->h.nlmsg_len));
    a->rta_type = type;
    a->rta_len = RTA_LENGTH(len);
    if (len)
        memcpy(RTA_DATA(a), data, len);
    q->h.nlmsg_len = NLMSG_ALIGN(q->h.nlmsg_len) + RTA_ALIGN(a->rta_len);
    return a;
}

static void end_nest(struct req *q, struct rtattr *a)
{
    a->rta_len = (char *)q + q->h.nlmsg_len - (char *)a;
}

/* Sends the request and returns the error of its acknowledgement (0 or -errno). */
static int ask(struct req *q)
{
    char buf[8192];
    CHECK(send(fd, q, q->h.nlmsg_len, 0) == (ssize_t)q->h.nlmsg_len);
    for (;;) {
        int n = recv(fd, buf, sizeof(buf), 0);
        CHECK(n > 0);
        for (struct nlmsghdr *h = (void *)buf; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n))
            if (h->nlmsg_type == NLMSG_ERROR && h->nlmsg_seq == q->h.nlmsg_seq)
                return ((struct nlmsgerr *)NLMSG_DATA(h))->error;
    }
}

static int addr(int type, int flags, int family, int index, int prefix, const char *ip)
{
    struct req q;
    unsigned char a[16];
    start(&q, type, flags, sizeof(struct ifaddrmsg));
    q.a.ifa_family = family;
    q.a.ifa_prefixlen = prefix;
    q.a.ifa_index = index;
    if (ip) {
        CHECK(inet_pton(family, ip, a) == 1);
        put(&q, IFA_LOCAL, a, family == AF_INET ? 4 : 16);
    }
    return ask(&q);
}

static int route(int type, int flags, int family, int rtype, int oif, int prefix,
                 const char *dst, unsigned metric)
{
    struct req q;
    unsigned char a[16];
    start(&q, type, flags, sizeof(struct rtmsg));
    q.r.rtm_family = family;
    q.r.rtm_dst_len = prefix;
    q.r.rtm_type = rtype;
    q.r.rtm_table = RT_TABLE_MAIN;
    q.r.rtm_protocol = RTPROT_BOOT;
    q.r.rtm_scope = RT_SCOPE_UNIVERSE;
    if (oif)
        put(&q, RTA_OIF, &oif, 4);
    if (metric)
        put(&q, RTA_PRIORITY, &metric, 4);
    CHECK(inet_pton(family, dst, a) == 1);
    put(&q, RTA_DST, a, family == AF_INET ? 4 : 16);
    return ask(&q);
}

static int link_add(const char *name, const char *kind, const char *peer)
{
    struct req q;
    start(&q, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, sizeof(struct ifinfomsg));
    put(&q, IFLA_IFNAME, name, strlen(name) + 1);
    struct rtattr *li = put(&q, IFLA_LINKINFO, NULL, 0);
    put(&q, IFLA_INFO_KIND, kind, strlen(kind));
    if (peer) {
        struct rtattr *data = put(&q, IFLA_INFO_DATA, NULL, 0);
        struct ifinfomsg pi = {0};
        struct rtattr *p = put(&q, VETH_INFO_PEER, &pi, sizeof(pi));
        put(&q, IFLA_IFNAME, peer, strlen(peer) + 1);
        end_nest(&q, p);
        end_nest(&q, data);
    }
    end_nest(&q, li);
    return ask(&q);
}

/* RTM_SETLINK of `index`: flags (with change mask), and optionally name, MTU, netns fd. */
static int link_set(int index, unsigned flags, unsigned change, const char *name, int mtu,
                    int nsfd)
{
    struct req q;
    start(&q, RTM_SETLINK, 0, sizeof(struct ifinfomsg));
    q.i.ifi_index = index;
    q.i.ifi_flags = flags;
    q.i.ifi_change = change;
    if (nsfd >= 0)
        put(&q, IFLA_NET_NS_FD, &nsfd, 4);
    if (name)
        put(&q, IFLA_IFNAME, name, strlen(name) + 1);
    if (mtu)
        put(&q, IFLA_MTU, &mtu, 4);
    return ask(&q);
}

static int link_del(int index)
{
    struct req q;
    start(&q, RTM_DELLINK, 0, sizeof(struct ifinfomsg));
    q.i.ifi_index = index;
    return ask(&q);
}

static const char *attr_name(struct ifinfomsg *i, int len, char *kind)
{
    const char *name = "?";
    kind[0] = 0;
    for (struct rtattr *a = IFLA_RTA(i); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
        if (a->rta_type == IFLA_IFNAME)
            name = RTA_DATA(a);
        if (a->rta_type == IFLA_LINKINFO) {
            int l2 = RTA_PAYLOAD(a);
            for (struct rtattr *b = RTA_DATA(a); RTA_OK(b, l2); b = RTA_NEXT(b, l2))
                if (b->rta_type == IFLA_INFO_KIND)
                    snprintf(kind, 16, "%.*s", (int)RTA_PAYLOAD(b), (char *)RTA_DATA(b));
        }
    }
    return name;
}

/* Prints the links (name, kind, the UP and LOWER_UP flags: RUNNING follows the carrier
 * later, from Linux's linkwatch work) and the IPv4 addresses. */
static void dump(void)
{
    char buf[16384];
    struct req q;
    for (int what = 0; what < 2; what++) {
        start(&q, what ? RTM_GETADDR : RTM_GETLINK, NLM_F_DUMP, sizeof(struct ifinfomsg));
        q.h.nlmsg_flags &= ~NLM_F_ACK;
        q.i.ifi_family = what ? AF_INET : AF_UNSPEC;
        CHECK(send(fd, &q, q.h.nlmsg_len, 0) > 0);
        for (int done = 0; !done;) {
            int n = recv(fd, buf, sizeof(buf), 0);
            CHECK(n > 0);
            for (struct nlmsghdr *h = (void *)buf; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
                if (h->nlmsg_type == NLMSG_DONE) {
                    done = 1;
                    break;
                }
                if (h->nlmsg_type == RTM_NEWLINK) {
                    char kind[16];
                    struct ifinfomsg *i = NLMSG_DATA(h);
                    const char *name = attr_name(i, IFLA_PAYLOAD(h), kind);
                    printf("  link %s kind=%s flags=%#x\n", name, kind,
                           i->ifi_flags & (IFF_UP | IFF_LOWER_UP));
                } else if (h->nlmsg_type == RTM_NEWADDR) {
                    struct ifaddrmsg *a = NLMSG_DATA(h);
                    int len = IFA_PAYLOAD(h);
                    char ip[64] = "?", label[IFNAMSIZ] = "";
                    for (struct rtattr *x = IFA_RTA(a); RTA_OK(x, len); x = RTA_NEXT(x, len)) {
                        if (x->rta_type == IFA_LOCAL)
                            inet_ntop(AF_INET, RTA_DATA(x), ip, sizeof(ip));
                        if (x->rta_type == IFA_LABEL)
                            snprintf(label, sizeof(label), "%s", (char *)RTA_DATA(x));
                    }
                    printf("  addr %s/%d scope=%d secondary=%d label=%s\n", ip,
                           a->ifa_prefixlen, a->ifa_scope,
                           !!(a->ifa_flags & IFA_F_SECONDARY), label);
                }
            }
        }
    }
}

/* One notification waiting on `s`: its type, pid, and interface name or address. */
static void event(int s, const char *what)
{
    char buf[8192];
    struct pollfd p = {s, POLLIN, 0};
    if (poll(&p, 1, 2000) != 1) {
        printf("%s: no event\n", what);
        return;
    }
    int n = recv(s, buf, sizeof(buf), 0);
    CHECK(n > 0);
    struct nlmsghdr *h = (void *)buf;
    if (h->nlmsg_type == RTM_NEWLINK || h->nlmsg_type == RTM_DELLINK) {
        char kind[16];
        struct ifinfomsg *i = NLMSG_DATA(h);
        printf("%s: type=%d pid=%u name=%s\n", what, h->nlmsg_type, h->nlmsg_pid,
               attr_name(i, IFLA_PAYLOAD(h), kind));
    } else if (h->nlmsg_type == RTM_NEWADDR || h->nlmsg_type == RTM_DELADDR) {
        struct ifaddrmsg *a = NLMSG_DATA(h);
        printf("%s: type=%d prefix=%d\n", what, h->nlmsg_type, a->ifa_prefixlen);
    } else {
        printf("%s: type=%d\n", what, h->nlmsg_type);
    }
}

static int group_socket(unsigned groups)
{
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK, .nl_groups = groups};
    int s = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
    CHECK(s >= 0);
    CHECK(bind(s, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    return s;
}

static int udp_bind(const char *ip, int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK(s >= 0);
    CHECK(inet_pton(AF_INET, ip, &a.sin_addr) == 1);
    if (bind(s, (struct sockaddr *)&a, sizeof(a)) != 0) {
        int e = errno;
        close(s);
        errno = e;
        return -1;
    }
    return s;
}

static int udp_connect(const char *ip)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(9)};
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK(s >= 0 && inet_pton(AF_INET, ip, &a.sin_addr) == 1);
    int r = connect(s, (struct sockaddr *)&a, sizeof(a));
    int e = errno;
    close(s);
    return r ? -e : 0;
}

static void addresses(int lo)
{
    printf("add 10.1.2.3/24: %d\n", addr(RTM_NEWADDR, 0, AF_INET, lo, 24, "10.1.2.3"));
    printf("again: %d\n", addr(RTM_NEWADDR, 0, AF_INET, lo, 24, "10.1.2.3"));
    printf("replace: %d\n", addr(RTM_NEWADDR, NLM_F_REPLACE, AF_INET, lo, 24, "10.1.2.3"));
    printf("exclusive: %d\n", addr(RTM_NEWADDR, NLM_F_EXCL, AF_INET, lo, 24, "10.1.2.3"));
    printf("secondary 10.1.2.4/24: %d\n", addr(RTM_NEWADDR, 0, AF_INET, lo, 24, "10.1.2.4"));
    dump();

    /* lo's subnet is local: bind to an address nobody holds, send, receive. */
    int r = udp_bind("10.1.2.200", 7000), s = udp_bind("10.1.2.3", 0);
    CHECK(r >= 0 && s >= 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(7000)};
    inet_pton(AF_INET, "10.1.2.200", &to.sin_addr);
    CHECK(sendto(s, "hi", 2, 0, (struct sockaddr *)&to, sizeof(to)) == 2);
    char b[8];
    struct sockaddr_in from;
    socklen_t fl = sizeof(from);
    CHECK(recvfrom(r, b, sizeof(b), 0, (struct sockaddr *)&from, &fl) == 2);
    char ip[32];
    printf("datagram on lo's subnet from %s\n", inet_ntop(AF_INET, &from.sin_addr, ip, 32));
    /* Its broadcast needs SO_BROADCAST and reaches a wildcard socket on the port. */
    int w = udp_bind("0.0.0.0", 7001), one = 1;
    CHECK(w >= 0);
    inet_pton(AF_INET, "10.1.2.255", &to.sin_addr);
    to.sin_port = htons(7001);
    ssize_t n = sendto(s, "b", 1, 0, (struct sockaddr *)&to, sizeof(to));
    printf("broadcast without SO_BROADCAST: %zd errno %d\n", n, n < 0 ? errno : 0);
    CHECK(setsockopt(s, SOL_SOCKET, SO_BROADCAST, &one, sizeof(one)) == 0);
    CHECK(sendto(s, "b", 1, 0, (struct sockaddr *)&to, sizeof(to)) == 1);
    printf("broadcast received: %zd\n", recv(w, b, sizeof(b), 0));
    close(r), close(s), close(w);

    printf("del 10.1.2.4: %d\n", addr(RTM_DELADDR, 0, AF_INET, lo, 24, "10.1.2.4"));
    printf("del again: %d\n", addr(RTM_DELADDR, 0, AF_INET, lo, 24, "10.1.2.4"));
    printf("del 10.1.2.3: %d\n", addr(RTM_DELADDR, 0, AF_INET, lo, 24, "10.1.2.3"));
    int br = udp_bind("10.1.2.200", 0);
    printf("bind to the deleted address: %d errno %d\n", br, br < 0 ? errno : 0);

    printf("del 127.0.0.1/8: %d\n", addr(RTM_DELADDR, 0, AF_INET, lo, 8, "127.0.0.1"));
    printf("connect 127.0.0.1 without it: %d\n", udp_connect("127.0.0.1"));
    printf("add it back: %d\n", addr(RTM_NEWADDR, 0, AF_INET, lo, 8, "127.0.0.1"));
    printf("connect 127.0.0.1: %d\n", udp_connect("127.0.0.1"));

    printf("add 2001:db8::1/64: %d\n", addr(RTM_NEWADDR, 0, AF_INET6, lo, 64, "2001:db8::1"));
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6};
    int s6 = socket(AF_INET6, SOCK_DGRAM, 0);
    inet_pton(AF_INET6, "2001:db8::2", &a6.sin6_addr);
    int b6 = bind(s6, (struct sockaddr *)&a6, sizeof(a6));
    printf("bind 2001:db8::2: %d errno %d\n", b6, b6 < 0 ? errno : 0);
    inet_pton(AF_INET6, "2001:db8::1", &a6.sin6_addr);
    /* Linux's address is tentative until its DAD work has run, even on lo: retry. */
    for (int i = 0; (b6 = bind(s6, (struct sockaddr *)&a6, sizeof(a6))) != 0 && i < 100; i++)
        usleep(20000);
    printf("bind 2001:db8::1: %d\n", b6);
    close(s6);
    printf("IPv6 again: %d\n", addr(RTM_NEWADDR, 0, AF_INET6, lo, 64, "2001:db8::1"));
    printf("IPv6 del: %d\n", addr(RTM_DELADDR, 0, AF_INET6, lo, 64, "2001:db8::1"));
    printf("IPv6 del again: %d\n", addr(RTM_DELADDR, 0, AF_INET6, lo, 64, "2001:db8::1"));
}

static void bad_addresses(int lo)
{
    struct req q;
    printf("prefix 33: %d\n", addr(RTM_NEWADDR, 0, AF_INET, lo, 33, "10.0.0.1"));
    printf("IPv6 prefix 129: %d\n", addr(RTM_NEWADDR, 0, AF_INET6, lo, 129, "2001:db8::5"));
    printf("no IFA_LOCAL: %d\n", addr(RTM_NEWADDR, 0, AF_INET, lo, 24, NULL));
    printf("IPv6 without an address: %d\n", addr(RTM_NEWADDR, 0, AF_INET6, lo, 64, NULL));
    printf("unknown ifindex: %d\n", addr(RTM_NEWADDR, 0, AF_INET, 999, 24, "10.0.0.1"));
    printf("IPv6 unknown ifindex: %d\n", addr(RTM_NEWADDR, 0, AF_INET6, 999, 64, "2001:db8::5"));
    printf("del on unknown ifindex: %d\n", addr(RTM_DELADDR, 0, AF_INET, 999, 24, "10.0.0.1"));
    start(&q, RTM_NEWADDR, 0, sizeof(struct ifaddrmsg));
    q.a.ifa_family = AF_UNSPEC, q.a.ifa_prefixlen = 24, q.a.ifa_index = lo;
    put(&q, IFA_LOCAL, "\x0a\x00\x00\x01", 4);
    printf("family AF_UNSPEC: %d\n", ask(&q));
    printf("IPv6 multicast: %d\n", addr(RTM_NEWADDR, 0, AF_INET6, lo, 64, "ff02::1"));
    /* IFA_LOCAL of 2 bytes; a header cut short; a truncated trailing attribute. */
    start(&q, RTM_NEWADDR, 0, sizeof(struct ifaddrmsg));
    q.a.ifa_family = AF_INET, q.a.ifa_prefixlen = 24, q.a.ifa_index = lo;
    put(&q, IFA_LOCAL, "\x0a\x00", 2);
    printf("short IFA_LOCAL: %d\n", ask(&q));
    start(&q, RTM_NEWADDR, 0, 4);
    q.a.ifa_family = AF_INET;
    printf("short ifaddrmsg: %d\n", ask(&q));
    start(&q, RTM_NEWADDR, 0, sizeof(struct ifaddrmsg));
    q.a.ifa_family = AF_INET, q.a.ifa_prefixlen = 24, q.a.ifa_index = lo;
    put(&q, IFA_LOCAL, "\x0a\x00\x00\x09", 4);
    struct rtattr *cut = put(&q, IFA_LABEL, "lo", 3);
    cut->rta_len = 40;                          /* runs past the message */
    printf("truncated trailing attribute: %d\n", ask(&q));
    printf("  (and the address: del %d)\n", addr(RTM_DELADDR, 0, AF_INET, lo, 24, "10.0.0.9"));
    struct ifa_cacheinfo ci = {.ifa_prefered = 10, .ifa_valid = 0};
    start(&q, RTM_NEWADDR, 0, sizeof(struct ifaddrmsg));
    q.a.ifa_family = AF_INET, q.a.ifa_prefixlen = 24, q.a.ifa_index = lo;
    put(&q, IFA_LOCAL, "\x0a\x00\x00\x0a", 4);
    put(&q, IFA_CACHEINFO, &ci, sizeof(ci));
    printf("valid lifetime 0: %d\n", ask(&q));
}

static void routes(int lo)
{
    printf("route 192.0.2.0/24: %d\n",
           route(RTM_NEWROUTE, NLM_F_CREATE, AF_INET, RTN_UNICAST, lo, 24, "192.0.2.0", 0));
    printf("again: %d\n",
           route(RTM_NEWROUTE, NLM_F_CREATE, AF_INET, RTN_UNICAST, lo, 24, "192.0.2.0", 0));
    printf("exclusive: %d\n", route(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, AF_INET,
                                    RTN_UNICAST, lo, 24, "192.0.2.0", 0));
    printf("without NLM_F_CREATE: %d\n",
           route(RTM_NEWROUTE, 0, AF_INET, RTN_UNICAST, lo, 24, "192.0.3.0", 0));
    printf("host bits: %d\n",
           route(RTM_NEWROUTE, NLM_F_CREATE, AF_INET, RTN_UNICAST, lo, 24, "192.0.2.1", 0));
    printf("prefix 33: %d\n",
           route(RTM_NEWROUTE, NLM_F_CREATE, AF_INET, RTN_UNICAST, lo, 33, "192.0.2.0", 0));
    printf("unknown oif: %d\n",
           route(RTM_NEWROUTE, NLM_F_CREATE, AF_INET, RTN_UNICAST, 999, 24, "192.0.4.0", 0));
    printf("no oif: %d\n",
           route(RTM_NEWROUTE, NLM_F_CREATE, AF_INET, RTN_UNICAST, 0, 24, "192.0.4.0", 0));
    printf("type 200: %d\n",
           route(RTM_NEWROUTE, NLM_F_CREATE, AF_INET, 200, lo, 24, "192.0.4.0", 0));
    printf("connect through it: %d\n", udp_connect("192.0.2.7"));
    printf("del: %d\n", route(RTM_DELROUTE, 0, AF_INET, RTN_UNICAST, lo, 24, "192.0.2.0", 0));
    printf("del again: %d\n",
           route(RTM_DELROUTE, 0, AF_INET, RTN_UNICAST, lo, 24, "192.0.2.0", 0));
    printf("connect without it: %d\n", udp_connect("192.0.2.7"));
    int types[] = {RTN_UNREACHABLE, RTN_BLACKHOLE, RTN_PROHIBIT};
    const char *nets[] = {"198.51.100.0", "198.51.101.0", "198.51.102.0"};
    const char *hosts[] = {"198.51.100.1", "198.51.101.1", "198.51.102.1"};
    for (int i = 0; i < 3; i++) {
        int r = route(RTM_NEWROUTE, NLM_F_CREATE, AF_INET, types[i], 0, 24, nets[i], 0);
        int c = udp_connect(hosts[i]);
        int d = route(RTM_DELROUTE, 0, AF_INET, types[i], 0, 24, nets[i], 0);
        printf("type %d route: %d, connect: %d, del: %d\n", types[i], r, c, d);
    }
    printf("IPv6 route: %d\n", route(RTM_NEWROUTE, NLM_F_CREATE, AF_INET6, RTN_UNICAST, lo,
                                     64, "2001:db8:1::", 999));
    printf("again: %d\n", route(RTM_NEWROUTE, NLM_F_CREATE, AF_INET6, RTN_UNICAST, lo, 64,
                                "2001:db8:1::", 999));
    printf("del: %d\n", route(RTM_DELROUTE, 0, AF_INET6, RTN_UNICAST, lo, 64,
                              "2001:db8:1::", 999));
    printf("del again: %d\n", route(RTM_DELROUTE, 0, AF_INET6, RTN_UNICAST, lo, 64,
                                    "2001:db8:1::", 999));
}

static void links(void)
{
    int lgrp = group_socket(RTMGRP_LINK), agrp = group_socket(RTMGRP_IPV4_IFADDR);
    printf("veth va/vb: %d\n", link_add("va", "veth", "vb"));
    event(lgrp, "event");
    event(lgrp, "event");
    printf("again: %d\n", link_add("va", "veth", "vx"));
    printf("bridge d0: %d\n", link_add("d0", "bridge", NULL));
    event(lgrp, "event");
    printf("bridge br0: %d\n", link_add("br0", "bridge", NULL));
    event(lgrp, "event");
    printf("kind bogus: %d\n", link_add("x0", "bogus", NULL));
    int va = if_nametoindex("va"), vb = if_nametoindex("vb"), d0 = if_nametoindex("d0");
    printf("indexes: vb<va %d, d0>va %d\n", vb < va, d0 > va);
    dump();
    printf("rename d0 to d1: %d\n", link_set(d0, 0, 0, "d1", 0, -1));
    event(lgrp, "event");
    printf("rename to the same: %d\n", link_set(d0, 0, 0, "d1", 0, -1));
    printf("rename to va: %d\n", link_set(d0, 0, 0, "va", 0, -1));
    printf("rename to a/b: %d\n", link_set(d0, 0, 0, "a/b", 0, -1));
    printf("rename to 16 chars: %d\n", link_set(d0, 0, 0, "abcdefghijklmnop", 0, -1));
    printf("mtu 1400: %d\n", link_set(va, 0, 0, NULL, 1400, -1));
    event(lgrp, "event");
    printf("mtu 10: %d\n", link_set(va, 0, 0, NULL, 10, -1));
    printf("mtu 70000: %d\n", link_set(va, 0, 0, NULL, 70000, -1));
    printf("set unknown index: %d\n", link_set(999, IFF_UP, IFF_UP, NULL, 0, -1));
    printf("va up: %d\n", link_set(va, IFF_UP, IFF_UP, NULL, 0, -1));
    event(lgrp, "event");
    dump();
    printf("vb up: %d\n", link_set(vb, IFF_UP, IFF_UP, NULL, 0, -1));
    dump();
    printf("addr on d1: %d\n", addr(RTM_NEWADDR, 0, AF_INET, d0, 24, "10.7.0.1"));
    event(agrp, "address event");
    printf("del lo: %d\n", link_del(1));
    printf("del unknown: %d\n", link_del(999));
    printf("del d1: %d\n", link_del(d0));
    char buf[8192];
    while (recv(lgrp, buf, sizeof(buf), MSG_DONTWAIT) > 0)
        ;
    printf("del br0: %d\n", link_del(if_nametoindex("br0")));
    event(lgrp, "event");
    close(lgrp), close(agrp);
}

/* vb moves to a child's namespace; UDP crosses the veth both ways. */
static void veth_between_namespaces(void)
{
    int go[2], done[2];
    CHECK(pipe(go) == 0 && pipe(done) == 0);
    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        char c;
        CHECK(unshare(CLONE_NEWNET) == 0);
        CHECK(write(done[1], "u", 1) == 1);
        CHECK(read(go[0], &c, 1) == 1);                  /* vb is here now */
        fd = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
        int vb = if_nametoindex("vb");
        printf("child: vb is here: %d\n", vb > 0);
        int up = link_set(vb, IFF_UP, IFF_UP, NULL, 0, -1);
        printf("child: up: %d, addr: %d\n", up,
               addr(RTM_NEWADDR, 0, AF_INET, vb, 24, "10.9.0.2"));
        fflush(stdout);
        int s = udp_bind("10.9.0.2", 6000);
        CHECK(s >= 0);
        CHECK(write(done[1], "r", 1) == 1);
        char b[16];
        struct sockaddr_in from;
        socklen_t fl = sizeof(from);
        struct pollfd p = {s, POLLIN, 0};
        if (poll(&p, 1, 5000) != 1)
            _exit(3);
        int n = recvfrom(s, b, sizeof(b), 0, (struct sockaddr *)&from, &fl);
        CHECK(n > 0);
        CHECK(sendto(s, b, n, 0, (struct sockaddr *)&from, fl) == n);
        _exit(0);
    }
    char c, path[64];
    CHECK(read(done[0], &c, 1) == 1);
    snprintf(path, sizeof(path), "/proc/%d/ns/net", child);
    int ns = open(path, O_RDONLY);
    CHECK(ns >= 0);
    int va = if_nametoindex("va"), vb = if_nametoindex("vb");
    printf("move vb: %d\n", link_set(vb, 0, 0, NULL, 0, ns));
    printf("vb gone here: %d\n", if_nametoindex("vb") == 0);
    printf("move lo: %d\n", link_set(1, 0, 0, NULL, 0, ns));
    printf("addr on va: %d\n", addr(RTM_NEWADDR, 0, AF_INET, va, 24, "10.9.0.1"));
    fflush(stdout);
    CHECK(write(go[1], "g", 1) == 1);
    CHECK(read(done[0], &c, 1) == 1);
    int s = udp_bind("10.9.0.1", 0);
    CHECK(s >= 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(6000)};
    inet_pton(AF_INET, "10.9.0.2", &to.sin_addr);
    CHECK(sendto(s, "across", 6, 0, (struct sockaddr *)&to, sizeof(to)) == 6);
    char b[16] = {0};
    struct pollfd p = {s, POLLIN, 0};
    int got = poll(&p, 1, 5000) == 1 ? recv(s, b, sizeof(b), 0) : -1;
    printf("echo over the veth: %d %s\n", got, got > 0 ? b : "");
    int st;
    CHECK(waitpid(child, &st, 0) == child);
    printf("child: %d\n", WEXITSTATUS(st));
    close(s), close(ns);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    CHECK(unshare(CLONE_NEWNET) == 0);
    fd = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
    CHECK(fd >= 0);
    int lo = if_nametoindex("lo");
    CHECK(lo > 0);
    CHECK(link_set(lo, IFF_UP, IFF_UP, NULL, 0, -1) == 0);   /* a fresh lo is down */
    addresses(lo);
    bad_addresses(lo);
    routes(lo);
    links();
    veth_between_namespaces();
    printf("ok\n");
    return 0;
}
