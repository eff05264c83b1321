/* Raw sockets, more: the names a raw socket reports (the port is the protocol; connect
 * picks the source address; no peer name ever), a raw IPPROTO_UDP socket seeing a datagram
 * between two UDP sockets (IPv4: with its IP header), IP_RECVTTL / IPV6_RECVTCLASS /
 * IPV6_RECVHOPLIMIT on what a raw socket reads, IPV6_CHECKSUM computed on send and checked
 * on receipt, SOL_IP refused on an IPv6 raw socket, an IPv6 IPPROTO_RAW socket that cannot
 * send, shutdown(SHUT_RD) leaving reads alone, IP_HDRINCL routed by the sendto address,
 * and an IPv6 UDP datagram from source port 0.  Run as root.  Prints what it sees
 * and "ok". */
#define _GNU_SOURCE
#include "check.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <poll.h>
#include <sys/socket.h>

static const struct sockaddr_in lo4 = {.sin_family = AF_INET,
                                       .sin_addr.s_addr = 0x0100007f};

static int readable_in(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    CHECK(poll(&p, 1, ms) >= 0);
    return p.revents & POLLIN ? 1 : 0;
}

static int readable(int fd)
{
    return readable_in(fd, 5000);
}

static void names(int fam)
{
    int s = socket(fam, SOCK_RAW, IPPROTO_UDP);
    CHECK(s >= 0);
    struct sockaddr_in6 peer6 = {.sin6_family = AF_INET6, .sin6_addr = in6addr_loopback};
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (fam == AF_INET6) {
        CHECK_ERR(connect(s, (struct sockaddr *)&lo4, sizeof(peer6)), EAFNOSUPPORT);
        CHECK(connect(s, (struct sockaddr *)&peer6, sizeof(peer6)) == 0);
    } else {
        CHECK(connect(s, (struct sockaddr *)&lo4, sizeof(lo4)) == 0);
    }
    CHECK(getsockname(s, (struct sockaddr *)&ss, &len) == 0);
    char buf[64];
    int port;
    if (fam == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        inet_ntop(fam, &a->sin_addr, buf, sizeof(buf));
        port = ntohs(a->sin_port);
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        inet_ntop(fam, &a->sin6_addr, buf, sizeof(buf));
        port = ntohs(a->sin6_port);
    }
    printf("v%c connected raw UDP socket: name %s port %d\n", fam == AF_INET ? '4' : '6',
           buf, port);
    len = sizeof(ss);
    CHECK_ERR(getpeername(s, (struct sockaddr *)&ss, &len), ENOTCONN);
    CHECK(shutdown(s, SHUT_RD) == 0);
    CHECK(send(s, "noop", 4, 0) == 4);
    char got[64];
    printf("  after SHUT_RD, read %zd\n", read(s, got, sizeof(got)));
    close(s);
}

static void udp_seen(void)
{
    int raw = socket(AF_INET, SOCK_RAW, IPPROTO_UDP);
    int rx = socket(AF_INET, SOCK_DGRAM, 0), tx = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK(raw >= 0 && rx >= 0 && tx >= 0);
    struct sockaddr_in a = lo4;
    a.sin_port = htons(40311);
    CHECK(bind(rx, (struct sockaddr *)&a, sizeof(a)) == 0);
    int ttl = 21, one = 1;
    CHECK(setsockopt(tx, IPPROTO_IP, IP_TTL, &ttl, sizeof(ttl)) == 0);
    CHECK(setsockopt(raw, IPPROTO_IP, IP_RECVTTL, &one, sizeof(one)) == 0);
    CHECK(sendto(tx, "seen", 4, 0, (struct sockaddr *)&a, sizeof(a)) == 4);
    CHECK(readable(raw));
    unsigned char buf[128], ctl[64];
    struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
                       .msg_controllen = sizeof(ctl)};
    ssize_t n = recvmsg(raw, &m, 0);
    struct iphdr ip;
    memcpy(&ip, buf, sizeof(ip));
    struct udphdr u;
    memcpy(&u, buf + ip.ihl * 4, sizeof(u));
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    printf("raw UDP socket read %zd: ttl %d proto %d udp -> %d len %d \"%.4s\", cmsg ttl %d\n",
           n, ip.ttl, ip.protocol, ntohs(u.dest), ntohs(u.len), buf + ip.ihl * 4 + 8,
           c && c->cmsg_type == IP_TTL ? *(int *)CMSG_DATA(c) : -1);
    char got[8];
    CHECK(recv(rx, got, sizeof(got), 0) == 4);
    close(raw);
    close(rx);
    close(tx);
}

static void v6(void)
{
    struct sockaddr_in6 lo6 = {.sin6_family = AF_INET6, .sin6_addr = in6addr_loopback};
    int set = socket(AF_INET6, SOCK_RAW, IPPROTO_UDP);
    int unset = socket(AF_INET6, SOCK_RAW, IPPROTO_UDP);
    CHECK(set >= 0 && unset >= 0);
    CHECK(bind(set, (struct sockaddr *)&lo6, sizeof(lo6)) == 0);
    CHECK(bind(unset, (struct sockaddr *)&lo6, sizeof(lo6)) == 0);
    int off = 6, got = 0, one = 1, tclass = 0x2c, v;
    socklen_t gl = sizeof(got);
    CHECK(getsockopt(set, IPPROTO_IPV6, IPV6_CHECKSUM, &got, &gl) == 0 && got == -1);
    CHECK(setsockopt(set, IPPROTO_IPV6, IPV6_CHECKSUM, &off, sizeof(off)) == 0);
    CHECK_ERR(setsockopt(set, SOL_IP, IP_TTL, &one, sizeof(one)), ENOPROTOOPT);
    CHECK_ERR(getsockopt(set, SOL_IP, IP_TTL, &v, &gl), ENOPROTOOPT);
    CHECK(setsockopt(unset, IPPROTO_IPV6, IPV6_RECVTCLASS, &one, sizeof(one)) == 0);
    CHECK(setsockopt(unset, IPPROTO_IPV6, IPV6_RECVHOPLIMIT, &one, sizeof(one)) == 0);
    CHECK(setsockopt(unset, IPPROTO_IPV6, IPV6_TCLASS, &tclass, sizeof(tclass)) == 0);
    unsigned char pkt[12] = {0x9c, 0x40, 0x9c, 0x40, 0, 12, 0, 0, 'o', 'n', 'e', '!'};
    CHECK(sendto(unset, pkt, sizeof(pkt), 0, (struct sockaddr *)&lo6, sizeof(lo6)) == 12);
    memcpy(pkt + 8, "two!", 4);
    CHECK(sendto(set, pkt, sizeof(pkt), 0, (struct sockaddr *)&lo6, sizeof(lo6)) == 12);
    for (int i = 0; i < 3; i++) {
        int fd = i == 0 ? set : unset;
        unsigned char buf[64], ctl[128];
        struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
        struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
                           .msg_controllen = sizeof(ctl)};
        CHECK(readable(fd));
        ssize_t n = recvmsg(fd, &m, 0);
        printf("v6 %s read %zd \"%.4s\" checksum %s", i == 0 ? "checksum-set" : "unset", n,
               buf + 8, buf[6] | buf[7] ? "set" : "zero");
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
            printf(" (%d,%d) %d", c->cmsg_level, c->cmsg_type, *(int *)CMSG_DATA(c));
        printf("\n");
    }
    printf("checksum-set readable after: %d\n", readable_in(set, 100));
    close(set);
    close(unset);
    int r = socket(AF_INET6, SOCK_RAW, IPPROTO_RAW);
    CHECK(r >= 0);
    CHECK_ERR(sendto(r, pkt, sizeof(pkt), 0, (struct sockaddr *)&lo6, sizeof(lo6)), EINVAL);
    close(r);
    printf("v6 IPPROTO_RAW send: EINVAL\n");
}

/* IP_HDRINCL: the datagram goes where sendto(2) says, whatever its header names; an IPv6
 * UDP datagram from source port 0 is taken. */
static void routing_and_port0(void)
{
    int raw = socket(AF_INET, SOCK_RAW, IPPROTO_RAW), rd = socket(AF_INET, SOCK_RAW, IPPROTO_UDP);
    CHECK(raw >= 0 && rd >= 0);
    unsigned char pkt[20 + 8 + 4] = {0x45, 0, 0, 32, 0, 0, 0x40, 0, 64, IPPROTO_UDP, 0, 0,
                                     127, 0, 0, 1, 0, 0, 0, 42,
                                     0x9c, 0x41, 0x9c, 0x42, 0, 12, 0, 0, 't', 'o', 't', 'o'};
    CHECK(sendto(raw, pkt, sizeof(pkt), 0, (struct sockaddr *)&lo4, sizeof(lo4)) == 32);
    CHECK(readable(rd));
    unsigned char buf[64];
    ssize_t n = recv(rd, buf, sizeof(buf), 0);
    printf("hdrincl to 0.0.0.42 via lo: read %zd, header daddr %d.%d.%d.%d\n", n, buf[16],
           buf[17], buf[18], buf[19]);
    close(raw);
    close(rd);

    struct sockaddr_in6 lo6 = {.sin6_family = AF_INET6, .sin6_addr = in6addr_loopback};
    int u = socket(AF_INET6, SOCK_DGRAM, 0), r6 = socket(AF_INET6, SOCK_RAW, IPPROTO_UDP);
    CHECK(u >= 0 && r6 >= 0 && bind(u, (struct sockaddr *)&lo6, sizeof(lo6)) == 0);
    socklen_t len = sizeof(lo6);
    struct sockaddr_in6 ua;
    CHECK(getsockname(u, (struct sockaddr *)&ua, &len) == 0);
    unsigned char d[10] = {0, 0, 0, 0, 0, 10, 0, 0, 'h', 'i'};
    memcpy(d + 2, &ua.sin6_port, 2);
    int off = 6;
    CHECK(setsockopt(r6, IPPROTO_IPV6, IPV6_CHECKSUM, &off, sizeof(off)) == 0);
    CHECK(sendto(r6, d, sizeof(d), 0, (struct sockaddr *)&lo6, sizeof(lo6)) == 10);
    CHECK(readable(u));
    struct sockaddr_in6 from;
    len = sizeof(from);
    char got[8];
    n = recvfrom(u, got, sizeof(got), 0, (struct sockaddr *)&from, &len);
    printf("IPv6 UDP from port 0: %zd bytes from port %d\n", n, ntohs(from.sin6_port));
    close(u);
    close(r6);
}

int main(void)
{
    names(AF_INET);
    names(AF_INET6);
    udp_seen();
    v6();
    routing_and_port0();
    ok();
    return 0;
}
