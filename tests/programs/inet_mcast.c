/* IP multicast over loopback: one sender and receivers sharing a port (SO_REUSEADDR)
 * joined to a group on lo; IP_ADD/DROP_MEMBERSHIP (ip_mreq and ip_mreqn), the
 * errors Linux gives, IP_MULTICAST_LOOP/TTL/IF/ALL, and the same for IPv6
 * (IPV6_JOIN_GROUP/LEAVE_GROUP, IPV6_MULTICAST_IF/HOPS/LOOP).  Every interface is
 * named (lo), so the host's other interfaces and routes play no part.  Prints what
 * each socket receives and "ok". */
#define _GNU_SOURCE
#include "check.h"
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

static const char *ename(int e)
{
    switch (e) {
    case 0: return "0";
    case EINVAL: return "EINVAL";
    case EADDRINUSE: return "EADDRINUSE";
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
    case ENODEV: return "ENODEV";
    case ENOPROTOOPT: return "ENOPROTOOPT";
    case ENOBUFS: return "ENOBUFS";
    case EPROTO: return "EPROTO";
    default: return strerror(e);
    }
}

static int sopt(int fd, int level, int name, const void *v, socklen_t len)
{
    errno = 0;
    int r = setsockopt(fd, level, name, v, len);
    return r == 0 ? 0 : errno;
}

static int geti(int fd, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof(v);
    CHECK(getsockopt(fd, level, name, &v, &len) == 0);
    return v;
}

/* What `fd` has queued, within 200 ms: "none", or the datagrams' text. */
static void show(const char *who, int fd)
{
    char line[512] = "";
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 200) != 1)
            break;
        char buf[64];
        ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
        CHECK(n >= 0);
        buf[n] = 0;
        strncat(line, " ", sizeof(line) - strlen(line) - 1);
        strncat(line, buf, sizeof(line) - strlen(line) - 1);
    }
    printf("  %s:%s\n", who, line[0] ? line : " none");
}

static int udp4(int port, int reuse)
{
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK(s >= 0);
    int one = 1;
    if (reuse)
        CHECK(setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    CHECK(bind(s, (struct sockaddr *)&a, sizeof(a)) == 0);
    return s;
}

static int port_of(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    CHECK(getsockname(fd, (struct sockaddr *)&ss, &len) == 0);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);   /* same offset for in6 */
}

static void v4(void)
{
    int lo = if_nametoindex("lo");
    CHECK(lo > 0);
    struct in_addr group, loaddr, other;
    inet_pton(AF_INET, "239.18.52.86", &group);
    inet_pton(AF_INET, "127.0.0.1", &loaddr);
    inet_pton(AF_INET, "10.9.8.7", &other);

    int r1 = udp4(0, 1);
    int port = port_of(r1);
    int r2 = udp4(port, 1);
    int r3 = udp4(port, 1);           /* never joins */
    struct ip_mreqn mn = {.imr_multiaddr = group, .imr_ifindex = lo};
    struct ip_mreq m = {.imr_multiaddr = group, .imr_interface = loaddr};
    printf("v4 join r1 (mreqn, lo's index): %s\n",
           ename(sopt(r1, SOL_IP, IP_ADD_MEMBERSHIP, &mn, sizeof(mn))));
    printf("v4 join r2 (mreq, 127.0.0.1): %s\n",
           ename(sopt(r2, SOL_IP, IP_ADD_MEMBERSHIP, &m, sizeof(m))));
    printf("v4 join r1 again: %s\n", ename(sopt(r1, SOL_IP, IP_ADD_MEMBERSHIP, &mn, sizeof(mn))));
    struct ip_mreqn bad = mn;
    bad.imr_multiaddr = loaddr;
    printf("v4 join a unicast address: %s\n",
           ename(sopt(r3, SOL_IP, IP_ADD_MEMBERSHIP, &bad, sizeof(bad))));
    bad = mn;
    bad.imr_ifindex = 99999;
    printf("v4 join on no device: %s\n",
           ename(sopt(r3, SOL_IP, IP_ADD_MEMBERSHIP, &bad, sizeof(bad))));
    struct ip_mreq badm = {.imr_multiaddr = group, .imr_interface = other};
    printf("v4 join on an address nobody has: %s\n",
           ename(sopt(r3, SOL_IP, IP_ADD_MEMBERSHIP, &badm, sizeof(badm))));
    printf("v4 join, short: %s\n", ename(sopt(r3, SOL_IP, IP_ADD_MEMBERSHIP, &mn, 4)));
    printf("v4 drop, not joined: %s\n",
           ename(sopt(r3, SOL_IP, IP_DROP_MEMBERSHIP, &mn, sizeof(mn))));

    int s = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK(s >= 0);
    printf("v4 defaults: ttl %d loop %d all %d\n", geti(s, SOL_IP, IP_MULTICAST_TTL),
           geti(s, SOL_IP, IP_MULTICAST_LOOP), geti(s, SOL_IP, IP_MULTICAST_ALL));
    printf("v4 multicast_if 127.0.0.1: %s\n",
           ename(sopt(s, SOL_IP, IP_MULTICAST_IF, &loaddr, sizeof(loaddr))));
    struct in_addr got = {0};
    socklen_t len = sizeof(got);
    CHECK(getsockopt(s, SOL_IP, IP_MULTICAST_IF, &got, &len) == 0);
    printf("v4 multicast_if reads %s\n", inet_ntoa(got));
    printf("v4 multicast_if on an address nobody has: %s\n",
           ename(sopt(s, SOL_IP, IP_MULTICAST_IF, &other, sizeof(other))));
    int ttl = 3;
    printf("v4 ttl 3: %s", ename(sopt(s, SOL_IP, IP_MULTICAST_TTL, &ttl, sizeof(ttl))));
    printf(", reads %d\n", geti(s, SOL_IP, IP_MULTICAST_TTL));
    ttl = 256;
    printf("v4 ttl 256: %s\n", ename(sopt(s, SOL_IP, IP_MULTICAST_TTL, &ttl, sizeof(ttl))));
    unsigned char one_byte = 0;
    printf("v4 loop as one byte 0: %s", ename(sopt(s, SOL_IP, IP_MULTICAST_LOOP, &one_byte, 1)));
    printf(", reads %d\n", geti(s, SOL_IP, IP_MULTICAST_LOOP));
    int on = 1;
    CHECK(sopt(s, SOL_IP, IP_MULTICAST_LOOP, &on, sizeof(on)) == 0);

    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(port),
                              .sin_addr = group};
    CHECK(sendto(s, "m1", 2, 0, (struct sockaddr *)&dst, sizeof(dst)) == 2);
    printf("v4 m1 to the group (r1, r2 joined; r3 on the port):\n");
    show("r1", r1);
    show("r2", r2);
    show("r3", r3);

    printf("v4 drop r2: %s\n", ename(sopt(r2, SOL_IP, IP_DROP_MEMBERSHIP, &mn, sizeof(mn))));
    CHECK(sendto(s, "m2", 2, 0, (struct sockaddr *)&dst, sizeof(dst)) == 2);
    printf("v4 m2 after r2 left:\n");
    show("r1", r1);
    show("r2", r2);
    show("r3", r3);
    int zero = 0;
    CHECK(sopt(r2, SOL_IP, IP_MULTICAST_ALL, &zero, sizeof(zero)) == 0);
    CHECK(sopt(r3, SOL_IP, IP_MULTICAST_ALL, &zero, sizeof(zero)) == 0);
    CHECK(sendto(s, "m3", 2, 0, (struct sockaddr *)&dst, sizeof(dst)) == 2);
    printf("v4 m3 with multicast_all 0 on r2, r3:\n");
    show("r1", r1);
    show("r2", r2);
    show("r3", r3);

    /* A socket bound to the group address itself, and one to another group. */
    struct sockaddr_in ga = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr = group};
    int r4 = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK(setsockopt(r4, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) == 0);
    printf("v4 bind to the group address: %s\n",
           ename(bind(r4, (struct sockaddr *)&ga, sizeof(ga)) == 0 ? 0 : errno));
    CHECK(sendto(s, "m4", 2, 0, (struct sockaddr *)&dst, sizeof(dst)) == 2);
    printf("v4 m4:\n");
    show("r1", r1);
    show("r4", r4);

    /* A connected sender (connect to the group). */
    int c = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK(sopt(c, SOL_IP, IP_MULTICAST_IF, &mn, sizeof(mn)) == 0);
    CHECK(connect(c, (struct sockaddr *)&dst, sizeof(dst)) == 0);
    CHECK(send(c, "m5", 2, 0) == 2);
    printf("v4 m5 from a connected socket, multicast_if by mreqn:\n");
    show("r1", r1);
    show("r4", r4);

    /* IP_MULTICAST_LOOP 0: no copy for this host's own sockets. */
    CHECK(sopt(s, SOL_IP, IP_MULTICAST_LOOP, &zero, sizeof(zero)) == 0);
    CHECK(sendto(s, "m5b", 3, 0, (struct sockaddr *)&dst, sizeof(dst)) == 3);
    printf("v4 m5b with multicast_loop 0:\n");
    show("r1", r1);
    CHECK(sopt(s, SOL_IP, IP_MULTICAST_LOOP, &on, sizeof(on)) == 0);

    /* The receivers leave: nobody takes the group any more. */
    CHECK(sopt(r1, SOL_IP, IP_DROP_MEMBERSHIP, &mn, sizeof(mn)) == 0);
    CHECK(sendto(s, "m6", 2, 0, (struct sockaddr *)&dst, sizeof(dst)) == 2);
    printf("v4 m6 after everyone left:\n");
    show("r1", r1);
    show("r4", r4);
    /* A membership dies with its socket. */
    CHECK(sopt(r3, SOL_IP, IP_ADD_MEMBERSHIP, &mn, sizeof(mn)) == 0);
    close(r3);
    CHECK(sendto(s, "m7", 2, 0, (struct sockaddr *)&dst, sizeof(dst)) == 2);
    printf("v4 m7 after the last member closed:\n");
    show("r1", r1);
    close(r1); close(r2); close(r4); close(s); close(c);
}

static int udp6(int port)
{
    int s = socket(AF_INET6, SOCK_DGRAM, 0);
    CHECK(s >= 0);
    int one = 1;
    CHECK(setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
    CHECK(bind(s, (struct sockaddr *)&a, sizeof(a)) == 0);
    return s;
}

static void v6(void)
{
    int lo = if_nametoindex("lo");
    struct in6_addr group, uni;
    inet_pton(AF_INET6, "ff15::4242", &group);
    inet_pton(AF_INET6, "::1", &uni);
    int r1 = udp6(0);
    int port = port_of(r1);
    int r2 = udp6(port);
    struct ipv6_mreq m = {.ipv6mr_multiaddr = group, .ipv6mr_interface = lo};
    printf("v6 join r1: %s\n", ename(sopt(r1, SOL_IPV6, IPV6_JOIN_GROUP, &m, sizeof(m))));
    printf("v6 join r2: %s\n", ename(sopt(r2, SOL_IPV6, IPV6_JOIN_GROUP, &m, sizeof(m))));
    printf("v6 join r1 again: %s\n", ename(sopt(r1, SOL_IPV6, IPV6_JOIN_GROUP, &m, sizeof(m))));
    struct ipv6_mreq bad = {.ipv6mr_multiaddr = uni, .ipv6mr_interface = lo};
    printf("v6 join a unicast address: %s\n",
           ename(sopt(r2, SOL_IPV6, IPV6_JOIN_GROUP, &bad, sizeof(bad))));
    bad.ipv6mr_multiaddr = group;
    bad.ipv6mr_interface = 99999;
    printf("v6 join on no device: %s\n",
           ename(sopt(r2, SOL_IPV6, IPV6_JOIN_GROUP, &bad, sizeof(bad))));
    printf("v6 join, short: %s\n", ename(sopt(r2, SOL_IPV6, IPV6_JOIN_GROUP, &m, 8)));
    int s = socket(AF_INET6, SOCK_DGRAM, 0);
    printf("v6 defaults: hops %d loop %d if %d\n", geti(s, SOL_IPV6, IPV6_MULTICAST_HOPS),
           geti(s, SOL_IPV6, IPV6_MULTICAST_LOOP), geti(s, SOL_IPV6, IPV6_MULTICAST_IF));
    printf("v6 multicast_if lo: %s", ename(sopt(s, SOL_IPV6, IPV6_MULTICAST_IF, &lo, sizeof(lo))));
    printf(", reads lo: %s\n", geti(s, SOL_IPV6, IPV6_MULTICAST_IF) == lo ? "yes" : "no");
    int nodev = 99999;
    printf("v6 multicast_if no device: %s\n",
           ename(sopt(s, SOL_IPV6, IPV6_MULTICAST_IF, &nodev, sizeof(nodev))));
    int two = 2;
    printf("v6 loop 2: %s\n", ename(sopt(s, SOL_IPV6, IPV6_MULTICAST_LOOP, &two, sizeof(two))));
    struct sockaddr_in6 dst = {.sin6_family = AF_INET6, .sin6_port = htons(port),
                               .sin6_addr = group};
    /* lo has no IPv6 multicast route (it is not IFF_MULTICAST): nothing is sent. */
    errno = 0;
    int r = sendto(s, "n1", 2, 0, (struct sockaddr *)&dst, sizeof(dst));
    printf("v6 n1 to the group on lo: %d %s\n", r, ename(r < 0 ? errno : 0));
    show("r1", r1);
    show("r2", r2);
    printf("v6 leave r2: %s\n", ename(sopt(r2, SOL_IPV6, IPV6_LEAVE_GROUP, &m, sizeof(m))));
    printf("v6 leave r2 again: %s\n", ename(sopt(r2, SOL_IPV6, IPV6_LEAVE_GROUP, &m, sizeof(m))));
    close(r1); close(r2); close(s);
}

int main(void)
{
    v4();
    v6();
    printf("ok\n");
    return 0;
}
