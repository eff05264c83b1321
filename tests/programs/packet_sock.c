/* Packet sockets (AF_PACKET) on loopback: what SOCK_RAW and SOCK_DGRAM sockets see of a
 * UDP datagram crossing lo (ETH_P_ALL: the outgoing copy then the received one; ETH_P_IP:
 * the received one; protocol 0: nothing), the Ethernet, IP and UDP headers (checksums
 * verified here), struct sockaddr_ll from recvfrom and getsockname, a UDP datagram
 * written as a whole frame reaching a UDP socket, and the errors of socket, bind,
 * sendto and the options.  Run as root, natively only in a network namespace of its own
 * with lo up and net.ipv4.conf.lo.accept_local and route_localnet set (so that Linux takes
 * the frames written to lo), so that it sees nothing but its own traffic.  Prints what it
 * reads (no identifications) and "ok". */
#define _GNU_SOURCE
#include "check.h"
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#define PORT 40123

static unsigned long sum16(const void *data, size_t len, unsigned long sum)
{
    const unsigned char *p = data;
    for (size_t i = 0; i + 1 < len; i += 2)
        sum += (p[i] << 8) | p[i + 1];
    if (len & 1)
        sum += p[len - 1] << 8;
    return sum;
}

static unsigned short fold(unsigned long sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return ~sum & 0xffff;
}

/* The UDP checksum over the pseudo-header: 0 when the datagram's checksum is right. */
static unsigned short udp_check(const struct iphdr *ip, const unsigned char *udp, size_t len)
{
    unsigned long s = sum16(&ip->saddr, 8, 0);
    s += IPPROTO_UDP + len;
    return fold(sum16(udp, len, s));
}

static const char *pkttype(int t)
{
    switch (t) {
    case PACKET_HOST: return "HOST";
    case PACKET_OUTGOING: return "OUTGOING";
    case PACKET_BROADCAST: return "BROADCAST";
    default: return "other";
    }
}

static int readable(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int n = poll(&p, 1, ms);
    CHECK(n >= 0);
    return n;
}

/* Reads one frame and prints what it says.  `raw`: the socket is SOCK_RAW. */
static void show(const char *who, int fd, int raw, const char *payload)
{
    unsigned char buf[256];
    struct sockaddr_ll sll;
    socklen_t slen = sizeof(sll);
    memset(&sll, 0xee, sizeof(sll));
    CHECK(readable(fd, 5000) == 1);
    int avail = -1;
    CHECK(ioctl(fd, FIONREAD, &avail) == 0);
    ssize_t n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&sll, &slen);
    CHECK(n > 0);
    printf("%s: %zd bytes (FIONREAD %d), from family %d proto 0x%04x ifindex-is-lo %d hatype %d"
           " pkttype %s halen %d addr-zero %d namelen %u\n", who, n, avail, sll.sll_family,
           ntohs(sll.sll_protocol), sll.sll_ifindex == (int)if_nametoindex("lo"), sll.sll_hatype,
           pkttype(sll.sll_pkttype), sll.sll_halen,
           !memcmp(sll.sll_addr, "\0\0\0\0\0\0", 6), slen);
    unsigned char *p = buf;
    if (raw) {
        struct ethhdr eth;
        memcpy(&eth, p, sizeof(eth));
        printf("  eth dst-zero %d src-zero %d proto 0x%04x\n",
               !memcmp(eth.h_dest, "\0\0\0\0\0\0", 6), !memcmp(eth.h_source, "\0\0\0\0\0\0", 6),
               ntohs(eth.h_proto));
        p += sizeof(eth);
    }
    struct iphdr ip;
    memcpy(&ip, p, sizeof(ip));
    printf("  ip v%d ihl %d tos %d len %d frag 0x%04x ttl %d proto %d %s -> ", ip.version,
           ip.ihl, ip.tos, ntohs(ip.tot_len), ntohs(ip.frag_off), ip.ttl, ip.protocol,
           inet_ntoa(*(struct in_addr *)&ip.saddr));
    printf("%s header-checksum-ok %d\n", inet_ntoa(*(struct in_addr *)&ip.daddr),
           fold(sum16(p, ip.ihl * 4, 0)) == 0);
    unsigned char *u = p + ip.ihl * 4;
    struct udphdr udp;
    memcpy(&udp, u, sizeof(udp));
    size_t ulen = ntohs(udp.len);
    /* What crosses lo keeps a partial checksum (CHECKSUM_PARTIAL: only the pseudo-header's
     * sum, which the device would complete); a frame written whole keeps its own. */
    unsigned long ph = sum16(&ip.saddr, 8, 0) + IPPROTO_UDP + ulen;
    const char *c = udp_check(&ip, u, ulen) == 0 ? "complete"
                    : ntohs(udp.check) == (unsigned short)~fold(ph) ? "partial" : "bad";
    printf("  udp %d -> %d len %zu checksum %s payload \"%.*s\"\n", ntohs(udp.source),
           ntohs(udp.dest), ulen, c, (int)(ulen - 8), (char *)u + 8);
    CHECK(strncmp((char *)u + 8, payload, ulen - 8) == 0);
}

static void send_udp(int fd, const char *msg)
{
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(PORT),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(sendto(fd, msg, strlen(msg), 0, (struct sockaddr *)&to, sizeof(to)) ==
          (ssize_t)strlen(msg));
}

static void names(int lo)
{
    int s = socket(AF_PACKET, SOCK_DGRAM, 0);
    CHECK(s >= 0);
    struct sockaddr_ll a;
    socklen_t len = sizeof(a);
    memset(&a, 0xee, sizeof(a));
    CHECK(getsockname(s, (struct sockaddr *)&a, &len) == 0);
    printf("unbound name: len %u family %d proto %d ifindex %d hatype %d halen %d\n", len,
           a.sll_family, a.sll_protocol, a.sll_ifindex, a.sll_hatype, a.sll_halen);
    struct sockaddr_ll b = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IP),
                            .sll_ifindex = lo};
    CHECK(bind(s, (struct sockaddr *)&b, sizeof(b)) == 0);
    CHECK(bind(s, (struct sockaddr *)&b, sizeof(b)) == 0);          /* again: fine */
    len = sizeof(a);
    memset(&a, 0xee, sizeof(a));
    CHECK(getsockname(s, (struct sockaddr *)&a, &len) == 0);
    printf("bound name: len %u proto 0x%04x ifindex-is-lo %d hatype %d halen %d addr-zero %d\n",
           len, ntohs(a.sll_protocol), a.sll_ifindex == lo, a.sll_hatype, a.sll_halen,
           !memcmp(a.sll_addr, "\0\0\0\0\0\0", 6));
    b.sll_protocol = 0;                                              /* keeps ETH_P_IP */
    CHECK(bind(s, (struct sockaddr *)&b, sizeof(b)) == 0);
    len = sizeof(a);
    CHECK(getsockname(s, (struct sockaddr *)&a, &len) == 0);
    printf("rebound with protocol 0: proto 0x%04x\n", ntohs(a.sll_protocol));
    b.sll_ifindex = 0xffff;
    CHECK_ERR(bind(s, (struct sockaddr *)&b, sizeof(b)), ENODEV);
    b.sll_ifindex = lo;
    CHECK_ERR(bind(s, (struct sockaddr *)&b, 1), EINVAL);
    b.sll_family = AF_INET;
    CHECK_ERR(bind(s, (struct sockaddr *)&b, sizeof(b)), EINVAL);
    CHECK_ERR(getpeername(s, (struct sockaddr *)&a, &len), EOPNOTSUPP);
    CHECK_ERR(listen(s, 1), EOPNOTSUPP);

    int v = -1;
    socklen_t vl = sizeof(v);
    CHECK(getsockopt(s, SOL_SOCKET, SO_TYPE, &v, &vl) == 0 && v == SOCK_DGRAM);
    CHECK(getsockopt(s, SOL_SOCKET, SO_DOMAIN, &v, &vl) == 0 && v == AF_PACKET);
    CHECK(getsockopt(s, SOL_SOCKET, SO_ACCEPTCONN, &v, &vl) == 0 && v == 0);
    CHECK(getsockopt(s, SOL_SOCKET, SO_ERROR, &v, &vl) == 0 && v == 0);
    CHECK_ERR(setsockopt(s, SOL_SOCKET, SO_DETACH_FILTER, &v, sizeof(v)), ENOENT);
    CHECK_ERR(getsockopt(s, SOL_SOCKET, SO_DETACH_FILTER, &v, &vl), ENOPROTOOPT);
    struct linger lg = {1, 5}, lg2;
    socklen_t ll = sizeof(lg2);
    CHECK(setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) == 0);
    CHECK(getsockopt(s, SOL_SOCKET, SO_LINGER, &lg2, &ll) == 0 && lg2.l_linger == 5);
    close(s);
    printf("names and options checked\n");
}

static void creation(void)
{
    int t[] = {SOCK_DGRAM, SOCK_RAW};
    int p[] = {0, 1, 255, ETH_P_IP, ETH_P_IPV6, 0xffff};
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 6; j++) {
            int s = socket(AF_PACKET, t[i], htons(p[j]));
            CHECK(s >= 0);
            int v = -1;
            socklen_t vl = sizeof(v);
            CHECK(getsockopt(s, SOL_SOCKET, SO_PROTOCOL, &v, &vl) == 0);
            CHECK(v == 0);                        /* packet_create leaves sk_protocol 0 */
            close(s);
        }
    CHECK_ERR(socket(AF_PACKET, SOCK_STREAM, 0), ESOCKTNOSUPPORT);
    CHECK_ERR(socket(AF_PACKET, SOCK_SEQPACKET, 0), ESOCKTNOSUPPORT);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        CHECK(setgid(65534) == 0 && setuid(65534) == 0);
        int x = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
        printf("as nobody: %d %s\n", x, x < 0 && errno == EPERM ? "EPERM" : strerror(errno));
        fflush(stdout);
        _exit(0);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

int main(void)
{
    int lo = if_nametoindex("lo");
    CHECK(lo > 0);
    creation();
    names(lo);

    int all_raw = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
    int ip_dgram = socket(AF_PACKET, SOCK_DGRAM, htons(ETH_P_IP));
    int none = socket(AF_PACKET, SOCK_RAW, 0);
    int other = socket(AF_PACKET, SOCK_DGRAM, htons(ETH_P_IPV6));
    CHECK(all_raw >= 0 && ip_dgram >= 0 && none >= 0 && other >= 0);
    struct sockaddr_ll b = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL),
                            .sll_ifindex = lo};
    CHECK(bind(all_raw, (struct sockaddr *)&b, sizeof(b)) == 0);

    int rx = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in me = {.sin_family = AF_INET, .sin_port = htons(PORT),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(rx >= 0 && bind(rx, (struct sockaddr *)&me, sizeof(me)) == 0);
    int tx = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in from = {.sin_family = AF_INET, .sin_port = htons(PORT + 1),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(tx >= 0 && bind(tx, (struct sockaddr *)&from, sizeof(from)) == 0);
    int ttl = 33, tos = 0x10;
    CHECK(setsockopt(tx, IPPROTO_IP, IP_TTL, &ttl, sizeof(ttl)) == 0);
    CHECK(setsockopt(tx, IPPROTO_IP, IP_TOS, &tos, sizeof(tos)) == 0);

    send_udp(tx, "hello packet");
    show("all/raw 1", all_raw, 1, "hello packet");
    show("all/raw 2", all_raw, 1, "hello packet");
    show("ip/dgram", ip_dgram, 0, "hello packet");
    printf("protocol 0 readable %d, ETH_P_IPV6 readable %d\n", readable(none, 0),
           readable(other, 0));
    char got[64];
    CHECK(recv(rx, got, sizeof(got), 0) == 12);

    /* A UDP datagram written as a whole frame to lo reaches the UDP socket; the ETH_P_ALL
     * socket sees it received (the sender's own outgoing copy is not given back). */
    const char *msg = "from a frame";
    unsigned char frame[128] = {0};
    struct ethhdr *eth = (struct ethhdr *)frame;
    eth->h_proto = htons(ETH_P_IP);
    struct iphdr *ip = (struct iphdr *)(frame + 14);
    ip->version = 4;
    ip->ihl = 5;
    ip->tot_len = htons(20 + 8 + strlen(msg));
    ip->id = htons(0x1234);
    ip->frag_off = htons(IP_DF);
    ip->ttl = 64;
    ip->protocol = IPPROTO_UDP;
    ip->saddr = ip->daddr = htonl(INADDR_LOOPBACK);
    ip->check = htons(fold(sum16(ip, 20, 0)));
    unsigned char *u = frame + 34;
    struct udphdr udp = {.source = htons(PORT + 2), .dest = htons(PORT),
                         .len = htons(8 + strlen(msg))};
    memcpy(u, &udp, 8);
    memcpy(u + 8, msg, strlen(msg));
    ((struct udphdr *)u)->check = htons(udp_check(ip, u, 8 + strlen(msg)));
    size_t flen = 34 + 8 + strlen(msg);
    struct sockaddr_ll to = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IP),
                             .sll_ifindex = lo, .sll_halen = ETH_ALEN};
    CHECK(sendto(all_raw, frame, flen, 0, (struct sockaddr *)&to, sizeof(to)) == (ssize_t)flen);
    CHECK(readable(rx, 5000) == 1);
    struct sockaddr_in src;
    socklen_t sl = sizeof(src);
    ssize_t n = recvfrom(rx, got, sizeof(got), 0, (struct sockaddr *)&src, &sl);
    printf("udp socket got %zd \"%.*s\" from port %d\n", n, (int)n, got, ntohs(src.sin_port));
    show("all/raw sent", all_raw, 1, msg);
    printf("all/raw readable after its own frame %d\n", readable(all_raw, 0));
    show("ip/dgram sent", ip_dgram, 0, msg);

    /* SOCK_DGRAM builds the Ethernet header from the address. */
    CHECK(sendto(ip_dgram, frame + 14, flen - 14, 0, (struct sockaddr *)&to, sizeof(to)) ==
          (ssize_t)(flen - 14));
    CHECK(readable(rx, 5000) == 1);
    CHECK(recv(rx, got, sizeof(got), 0) == (ssize_t)strlen(msg));
    show("all/raw dgram-sent 1", all_raw, 1, msg);
    show("all/raw dgram-sent 2", all_raw, 1, msg);
    show("ip/dgram own", ip_dgram, 0, msg);

    /* Errors of sendto. */
    to.sll_ifindex = 0;
    CHECK_ERR(sendto(all_raw, frame, flen, 0, (struct sockaddr *)&to, sizeof(to)), ENXIO);
    CHECK_ERR(send(none, frame, flen, 0), ENXIO);         /* unbound, no address */
    to.sll_ifindex = lo;
    CHECK_ERR(sendto(all_raw, frame, 10, 0, (struct sockaddr *)&to, sizeof(to)), EINVAL);
    printf("sendto errors checked\n");
    ok();
    return 0;
}
