/* Raw sockets over loopback: ICMP echo through SOCK_RAW (the request and the reply
 * both read back, IP header first), ICMP_FILTER, IP_HDRINCL and IPPROTO_RAW, raw UDP
 * into a UDP socket and the port unreachable it draws, ICMPv6 echo (the checksum
 * filled in by the kernel), and socket(2)'s checks (CAP_NET_RAW, protocol 0).  Run
 * as root.  Prints what it reads (no checksums or identifications) and "ok". */
#define _GNU_SOURCE
#include "check.h"
#include <arpa/inet.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>

#define ID 0x5a17
#ifndef ICMP_FILTER
#define ICMP_FILTER 1   /* <linux/icmp.h> */
#endif

static unsigned short csum(const void *data, size_t len)
{
    const unsigned char *p = data;
    unsigned long sum = 0;
    for (size_t i = 0; i + 1 < len; i += 2)
        sum += (p[i] << 8) | p[i + 1];
    if (len & 1)
        sum += p[len - 1] << 8;
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return htons(~sum & 0xffff);
}

static size_t echo(unsigned char *buf, int type, int seq, const char *text)
{
    struct icmphdr *h = (struct icmphdr *)buf;
    memset(h, 0, sizeof(*h));
    h->type = type;
    h->un.echo.id = htons(ID);
    h->un.echo.sequence = htons(seq);
    size_t n = sizeof(*h) + strlen(text);
    memcpy(buf + sizeof(*h), text, strlen(text));
    if (type == ICMP_ECHO)
        h->checksum = csum(buf, n);
    return n;
}

/* Reads what `fd` gets within `ms` ms; prints the ICMP messages with our id (and any
 * ICMP error), IPv4 headers described.  Stops after `want` such messages. */
static void show_icmp4(int fd, int want, int ms)
{
    unsigned char buf[2048];
    int seen = 0;
    while (seen < want) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, ms) != 1) {
            printf("  (nothing more)\n");
            return;
        }
        struct sockaddr_in from;
        socklen_t fl = sizeof(from);
        ssize_t n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
        CHECK(n >= 20);
        struct iphdr *ip = (struct iphdr *)buf;
        size_t ihl = ip->ihl * 4;
        struct icmphdr *h = (struct icmphdr *)(buf + ihl);
        int ours = (h->type == ICMP_ECHO || h->type == ICMP_ECHOREPLY) &&
                   ntohs(h->un.echo.id) == ID;
        if (!ours && h->type != ICMP_DEST_UNREACH)
            continue;
        char src[16], dst[16], fa[16];
        inet_ntop(AF_INET, &ip->saddr, src, sizeof(src));
        inet_ntop(AF_INET, &ip->daddr, dst, sizeof(dst));
        inet_ntop(AF_INET, &from.sin_addr, fa, sizeof(fa));
        printf("  from %s port %d: ihl %zu len %d proto %d ttl %d tos %d %s -> %s, icmp type %d "
               "code %d", fa, ntohs(from.sin_port), ihl, ntohs(ip->tot_len), ip->protocol,
               ip->ttl, ip->tos, src, dst, h->type, h->code);
        if (ours)
            printf(" seq %d \"%.*s\"", ntohs(h->un.echo.sequence),
                   (int)(n - ihl - sizeof(*h)), buf + ihl + sizeof(*h));
        else
            printf(" quoting proto %d", ((struct iphdr *)(h + 1))->protocol);
        printf(" (checksum %s)\n", csum(h, n - ihl) == 0 ? "good" : "bad");
        seen++;
    }
}

static void v4(void)
{
    struct sockaddr_in lo = {.sin_family = AF_INET};
    lo.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    unsigned char buf[512];

    errno = 0;
    int r = socket(AF_INET, SOCK_RAW, 0);
    printf("raw protocol 0: %d %s\n", r, errno == EPROTONOSUPPORT ? "EPROTONOSUPPORT" : "");

    int s = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
    CHECK(s >= 0);
    int v = -1;
    socklen_t vl = sizeof(v);
    CHECK(getsockopt(s, SOL_IP, IP_HDRINCL, &v, &vl) == 0);
    printf("icmp socket: hdrincl %d\n", v);
    size_t n = echo(buf, ICMP_ECHO, 1, "pyvisor raw");
    CHECK(sendto(s, buf, n, 0, (struct sockaddr *)&lo, sizeof(lo)) == (ssize_t)n);
    printf("echo 1 (the request and the reply):\n");
    show_icmp4(s, 2, 2000);

    unsigned int filt = 1u << ICMP_ECHO;
    CHECK(setsockopt(s, SOL_RAW, ICMP_FILTER, &filt, sizeof(filt)) == 0);
    n = echo(buf, ICMP_ECHO, 2, "filtered");
    CHECK(sendto(s, buf, n, 0, (struct sockaddr *)&lo, sizeof(lo)) == (ssize_t)n);
    printf("echo 2 with ICMP_FILTER dropping echo requests:\n");
    show_icmp4(s, 1, 2000);

    /* IP_HDRINCL: the whole datagram, source, id and checksums left to the kernel. */
    int on = 1;
    CHECK(setsockopt(s, SOL_IP, IP_HDRINCL, &on, sizeof(on)) == 0);
    struct iphdr *ip = (struct iphdr *)buf;
    memset(ip, 0, sizeof(*ip));
    ip->version = 4;
    ip->ihl = 5;
    ip->ttl = 33;
    ip->tos = 0x10;
    ip->protocol = IPPROTO_ICMP;
    ip->daddr = htonl(INADDR_LOOPBACK);
    n = sizeof(*ip) + echo(buf + sizeof(*ip), ICMP_ECHO, 3, "hdrincl");
    CHECK(sendto(s, buf, n, 0, (struct sockaddr *)&lo, sizeof(lo)) == (ssize_t)n);
    printf("echo 3 with IP_HDRINCL (ttl 33, tos 0x10):\n");
    show_icmp4(s, 1, 2000);
    on = 0;
    CHECK(setsockopt(s, SOL_IP, IP_HDRINCL, &on, sizeof(on)) == 0);

    int rs = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
    CHECK(rs >= 0);
    vl = sizeof(v);
    CHECK(getsockopt(rs, SOL_IP, IP_HDRINCL, &v, &vl) == 0);
    printf("IPPROTO_RAW socket: hdrincl %d\n", v);
    ip->ttl = 17;
    ip->tos = 0;
    n = sizeof(*ip) + echo(buf + sizeof(*ip), ICMP_ECHO, 4, "proto raw");
    CHECK(sendto(rs, buf, n, 0, (struct sockaddr *)&lo, sizeof(lo)) == (ssize_t)n);
    printf("echo 4 from an IPPROTO_RAW socket:\n");
    show_icmp4(s, 1, 2000);
    struct pollfd p = {.fd = rs, .events = POLLIN};
    printf("IPPROTO_RAW socket reads: %s\n", poll(&p, 1, 100) == 0 ? "nothing" : "something");
    close(rs);

    /* Raw UDP: a datagram into a UDP socket, and one to a closed port. */
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK(u >= 0);
    struct sockaddr_in ua = lo;
    CHECK(bind(u, (struct sockaddr *)&ua, sizeof(ua)) == 0);
    socklen_t ul = sizeof(ua);
    CHECK(getsockname(u, (struct sockaddr *)&ua, &ul) == 0);
    int ru = socket(AF_INET, SOCK_RAW, IPPROTO_UDP);
    CHECK(ru >= 0);
    const char *text = "raw udp";
    unsigned short udp[4] = {htons(4242), ua.sin_port, htons(8 + strlen(text)), 0};
    memcpy(buf, udp, 8);
    memcpy(buf + 8, text, strlen(text));
    CHECK(sendto(ru, buf, 8 + strlen(text), 0, (struct sockaddr *)&lo, sizeof(lo)) ==
          (ssize_t)(8 + strlen(text)));
    struct sockaddr_in from;
    socklen_t fl = sizeof(from);
    char got[64];
    CHECK(poll(&(struct pollfd){.fd = u, .events = POLLIN}, 1, 2000) == 1);
    ssize_t k = recvfrom(u, got, sizeof(got), 0, (struct sockaddr *)&from, &fl);
    CHECK(k >= 0);
    printf("udp socket got \"%.*s\" from port %d\n", (int)k, got, ntohs(from.sin_port));
    close(u);
    /* The same port, now closed: the port unreachable comes back to the ICMP socket. */
    CHECK(sendto(ru, buf, 8 + strlen(text), 0, (struct sockaddr *)&lo, sizeof(lo)) ==
          (ssize_t)(8 + strlen(text)));
    printf("raw udp to a closed port:\n");
    show_icmp4(s, 1, 2000);
    close(ru);
    close(s);

    /* Without CAP_NET_RAW. */
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        CHECK(setgid(65534) == 0 && setuid(65534) == 0);
        errno = 0;
        int x = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
        printf("as nobody: %d %s\n", x, errno == EPERM ? "EPERM" : strerror(errno));
        fflush(stdout);
        _exit(0);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && st == 0);
}

static void v6(void)
{
    int s = socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6);
    CHECK(s >= 0);
    struct sockaddr_in6 lo = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    unsigned char buf[256];
    struct icmp6_hdr *h = (struct icmp6_hdr *)buf;
    memset(h, 0, sizeof(*h));
    h->icmp6_type = ICMP6_ECHO_REQUEST;
    h->icmp6_id = htons(ID);
    h->icmp6_seq = htons(6);
    memcpy(buf + sizeof(*h), "six", 3);
    size_t n = sizeof(*h) + 3;
    CHECK(sendto(s, buf, n, 0, (struct sockaddr *)&lo, sizeof(lo)) == (ssize_t)n);
    printf("icmpv6 echo 6:\n");
    for (int seen = 0; seen < 2;) {
        struct pollfd p = {.fd = s, .events = POLLIN};
        if (poll(&p, 1, 2000) != 1) {
            printf("  (nothing more)\n");
            break;
        }
        struct sockaddr_in6 from;
        socklen_t fl = sizeof(from);
        ssize_t k = recvfrom(s, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
        CHECK(k >= (ssize_t)sizeof(*h));
        if (ntohs(h->icmp6_id) != ID)
            continue;
        char fa[64];
        inet_ntop(AF_INET6, &from.sin6_addr, fa, sizeof(fa));
        printf("  from %s port %d: %zd bytes, type %d code %d seq %d \"%.*s\" checksum %s\n",
               fa, ntohs(from.sin6_port), k, h->icmp6_type, h->icmp6_code, ntohs(h->icmp6_seq),
               (int)(k - sizeof(*h)), buf + sizeof(*h), h->icmp6_cksum ? "set" : "zero");
        seen++;
    }
    struct icmp6_filter f;
    ICMP6_FILTER_SETPASSALL(&f);
    ICMP6_FILTER_SETBLOCK(ICMP6_ECHO_REQUEST, &f);
    CHECK(setsockopt(s, IPPROTO_ICMPV6, ICMP6_FILTER, &f, sizeof(f)) == 0);
    h->icmp6_type = ICMP6_ECHO_REQUEST;
    h->icmp6_cksum = 0;
    h->icmp6_seq = htons(7);
    CHECK(sendto(s, buf, n, 0, (struct sockaddr *)&lo, sizeof(lo)) == (ssize_t)n);
    for (;;) {
        struct pollfd p = {.fd = s, .events = POLLIN};
        CHECK(poll(&p, 1, 2000) == 1);
        ssize_t k = recv(s, buf, sizeof(buf), 0);
        CHECK(k >= (ssize_t)sizeof(*h));
        if (ntohs(h->icmp6_id) != ID)
            continue;
        printf("icmpv6 echo 7 with ICMP6_FILTER blocking requests: type %d seq %d\n",
               h->icmp6_type, ntohs(h->icmp6_seq));
        break;
    }
    int off = -1;
    socklen_t ol = sizeof(off);
    CHECK(getsockopt(s, IPPROTO_IPV6, IPV6_CHECKSUM, &off, &ol) == 0);
    int two = 2;
    errno = 0;
    int r = setsockopt(s, IPPROTO_IPV6, IPV6_CHECKSUM, &two, sizeof(two));
    printf("icmpv6 IPV6_CHECKSUM reads %d, setting it: %d %s\n", off, r,
           errno == EINVAL ? "EINVAL" : "");
    close(s);
}

int main(void)
{
    v4();
    v6();
    printf("ok\n");
    return 0;
}
