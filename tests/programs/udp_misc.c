/* UDP corners, IPv4 and IPv6 (argv[1] "4" or "6"): connect(AF_UNSPEC) keeps only what
 * bind(2) chose (the address, the port), a read-shut socket gives 0 to a blocking read and
 * EAGAIN to a non-blocking one, SIOCGSTAMP (ENOENT before anything was read, a stamp
 * after), empty datagrams (write(fd, buf, 0) sends one), and IP_TTL/IP_TOS (IPV6_HOPLIMIT,
 * IPV6_TCLASS) given as control messages to sendmsg and read back with IP_RECVTTL/
 * IP_RECVTOS (IPV6_RECVHOPLIMIT/IPV6_RECVTCLASS), SO_REUSEADDR delivery, the original
 * destination (IP_RECVORIGDSTADDR), broadcast and multicast corners, IPv4-mapped
 * destinations of IPv6 sockets, and SIOCETHTOOL on lo.  Prints what it sees and "ok". */
#define _GNU_SOURCE
#include "check.h"
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/errqueue.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>

static int fam;
static socklen_t alen;

static struct sockaddr_storage addr(int loopback, int port)
{
    struct sockaddr_storage ss = {0};
    if (fam == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        a->sin_addr.s_addr = htonl(loopback ? INADDR_LOOPBACK : INADDR_ANY);
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        if (loopback)
            a->sin6_addr = in6addr_loopback;
    }
    return ss;
}

static void name(const char *what, int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char buf[64];
    CHECK(getsockname(fd, (struct sockaddr *)&ss, &len) == 0);
    int port;
    if (fam == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, buf, sizeof(buf));
        port = ntohs(a->sin_port);
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof(buf));
        port = ntohs(a->sin6_port);
    }
    printf("%s: %s port %s\n", what, buf, port == 0 ? "0" : port == 40200 ? "40200" : "ephemeral");
}

static void disconnect(int fd)
{
    struct sockaddr_storage u = {.ss_family = AF_UNSPEC};
    CHECK(connect(fd, (struct sockaddr *)&u, sizeof(u)) == 0);
    struct sockaddr_storage p;
    socklen_t len = sizeof(p);
    CHECK_ERR(getpeername(fd, (struct sockaddr *)&p, &len), ENOTCONN);
}

static void disconnects(void)
{
    struct sockaddr_storage peer = addr(1, 40201);
    int s = socket(fam, SOCK_DGRAM, 0);
    CHECK(connect(s, (struct sockaddr *)&peer, alen) == 0);
    name("connected unbound", s);
    disconnect(s);
    name("  disconnected", s);
    close(s);

    s = socket(fam, SOCK_DGRAM, 0);
    struct sockaddr_storage any = addr(0, 40200);
    CHECK(bind(s, (struct sockaddr *)&any, alen) == 0);
    CHECK(connect(s, (struct sockaddr *)&peer, alen) == 0);
    name("bound to any:40200, connected", s);
    disconnect(s);
    name("  disconnected", s);
    close(s);

    s = socket(fam, SOCK_DGRAM, 0);
    struct sockaddr_storage lo0 = addr(1, 0);
    CHECK(bind(s, (struct sockaddr *)&lo0, alen) == 0);
    CHECK(connect(s, (struct sockaddr *)&peer, alen) == 0);
    disconnect(s);
    name("bound to loopback:0, disconnected", s);
    close(s);
}

static int pair(int *rx, int *tx)
{
    *rx = socket(fam, SOCK_DGRAM, 0);
    *tx = socket(fam, SOCK_DGRAM, 0);
    struct sockaddr_storage lo = addr(1, 0);
    CHECK(bind(*rx, (struct sockaddr *)&lo, alen) == 0);
    socklen_t len = alen;
    CHECK(getsockname(*rx, (struct sockaddr *)&lo, &len) == 0);
    CHECK(connect(*tx, (struct sockaddr *)&lo, alen) == 0);
    return 0;
}

static void shutdowns(void)
{
    int rx, tx;
    char buf[16];
    pair(&rx, &tx);
    CHECK_ERR(shutdown(rx, SHUT_RD), ENOTCONN);
    CHECK_ERR(recv(rx, buf, sizeof(buf), MSG_DONTWAIT), EAGAIN);
    printf("read-shut unconnected, blocking recv: %zd\n", recv(rx, buf, sizeof(buf), 0));
    CHECK(write(tx, "abc", 3) == 3);
    struct pollfd p = {.fd = rx, .events = POLLIN};
    CHECK(poll(&p, 1, 5000) == 1);
    printf("queued datagram still read: %zd\n", recv(rx, buf, 2, 0));
    CHECK_ERR(recv(rx, buf, sizeof(buf), MSG_DONTWAIT), EAGAIN);
    int fl = fcntl(rx, F_GETFL);
    CHECK(fcntl(rx, F_SETFL, fl | O_NONBLOCK) == 0);
    CHECK_ERR(read(rx, buf, sizeof(buf)), EAGAIN);
    CHECK(fcntl(rx, F_SETFL, fl) == 0);
    printf("blocking read after: %zd\n", read(rx, buf, sizeof(buf)));
    close(rx);
    close(tx);
}

static void stamps(void)
{
    int rx, tx;
    char buf[16];
    struct timeval tv;
    pair(&rx, &tx);
    CHECK_ERR(ioctl(rx, SIOCGSTAMP, &tv), ENOENT);
    CHECK(write(tx, "abc", 0) == 0);                     /* an empty datagram */
    CHECK(write(tx, "abc", 3) == 3);
    struct pollfd p = {.fd = rx, .events = POLLIN};
    CHECK(poll(&p, 1, 5000) == 1);
    int n = -1;
    CHECK(ioctl(rx, FIONREAD, &n) == 0);
    printf("empty datagram: FIONREAD %d, read %zd\n", n, read(rx, buf, sizeof(buf)));
    struct timeval before;
    gettimeofday(&before, NULL);
    CHECK(ioctl(rx, SIOCGSTAMP, &tv) == 0);
    struct timespec ts;
    CHECK(ioctl(rx, SIOCGSTAMPNS, &ts) == 0);
    printf("SIOCGSTAMP after a read: set %d, SIOCGSTAMPNS agrees %d\n",
           tv.tv_sec >= before.tv_sec - 5, ts.tv_sec == tv.tv_sec &&
           ts.tv_nsec / 1000 == tv.tv_usec);
    CHECK(recv(rx, buf, sizeof(buf), 0) == 3);
    struct timeval tv2;
    CHECK(ioctl(rx, SIOCGSTAMP, &tv2) == 0);
    printf("SIOCGSTAMP after the next read: not before the first %d\n",
           tv2.tv_sec > tv.tv_sec || (tv2.tv_sec == tv.tv_sec && tv2.tv_usec >= tv.tv_usec));
    close(rx);
    close(tx);
}

static void cmsgs(void)
{
    int rx, tx, one = 1;
    pair(&rx, &tx);
    int lvl = fam == AF_INET ? IPPROTO_IP : IPPROTO_IPV6;
    int recvttl = fam == AF_INET ? IP_RECVTTL : IPV6_RECVHOPLIMIT;
    int recvtos = fam == AF_INET ? IP_RECVTOS : IPV6_RECVTCLASS;
    int ttl_t = fam == AF_INET ? IP_TTL : IPV6_HOPLIMIT;
    int tos_t = fam == AF_INET ? IP_TOS : IPV6_TCLASS;
    CHECK(setsockopt(rx, lvl, recvttl, &one, sizeof(one)) == 0);
    CHECK(setsockopt(rx, lvl, recvtos, &one, sizeof(one)) == 0);
    for (int round = 0; round < 3; round++) {
        char ctl[64] = {0};
        struct iovec iov = {.iov_base = "x", .iov_len = 1};
        struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl};
        struct cmsghdr *c = (struct cmsghdr *)ctl;
        size_t used = 0;
        if (round >= 1) {
            c->cmsg_level = lvl;
            c->cmsg_type = ttl_t;
            c->cmsg_len = CMSG_LEN(sizeof(int));
            *(int *)CMSG_DATA(c) = 17;
            used += CMSG_SPACE(sizeof(int));
            c = (struct cmsghdr *)(ctl + used);
        }
        if (round == 2) {
            c->cmsg_level = lvl;
            c->cmsg_type = tos_t;
            c->cmsg_len = CMSG_LEN(sizeof(int));
            *(int *)CMSG_DATA(c) = 0x28;
            used += CMSG_SPACE(sizeof(int));
        }
        m.msg_controllen = used;
        if (!used)
            m.msg_control = NULL;
        CHECK(sendmsg(tx, &m, 0) == 1);
        char got[4], rctl[128];
        struct iovec riov = {.iov_base = got, .iov_len = sizeof(got)};
        struct msghdr r = {.msg_iov = &riov, .msg_iovlen = 1, .msg_control = rctl,
                           .msg_controllen = sizeof(rctl)};
        CHECK(recvmsg(rx, &r, 0) == 1);
        printf("round %d:", round);
        for (struct cmsghdr *h = CMSG_FIRSTHDR(&r); h; h = CMSG_NXTHDR(&r, h)) {
            int v = h->cmsg_len >= CMSG_LEN(sizeof(int)) ? *(int *)CMSG_DATA(h) :
                    *(unsigned char *)CMSG_DATA(h);
            printf(" (%d,%d len %zu) %d", h->cmsg_level, h->cmsg_type,
                   (size_t)h->cmsg_len, v);
        }
        printf("\n");
    }
    /* Bad values: EINVAL. */
    char ctl[64] = {0};
    struct iovec iov = {.iov_base = "x", .iov_len = 1};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
                       .msg_controllen = CMSG_SPACE(sizeof(int))};
    struct cmsghdr *c = (struct cmsghdr *)ctl;
    c->cmsg_level = lvl;
    c->cmsg_type = ttl_t;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    *(int *)CMSG_DATA(c) = 256;
    CHECK_ERR(sendmsg(tx, &m, 0), EINVAL);
    c->cmsg_len = CMSG_LEN(2);
    CHECK_ERR(sendmsg(tx, &m, 0), EINVAL);
    printf("bad TTL control messages: EINVAL\n");
    close(rx);
    close(tx);
}

/* Several sockets on one port with SO_REUSEADDR: the one bound last gets unicast
 * datagrams.  IP_RECVORIGDSTADDR / IPV6_RECVORIGDSTADDR name where a datagram went. */
static void reuse_and_origdst(void)
{
    int one = 1, s[3];
    struct sockaddr_storage lo = addr(1, 40210);
    for (int i = 0; i < 3; i++) {
        s[i] = socket(fam, SOCK_DGRAM, 0);
        CHECK(setsockopt(s[i], SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0);
        CHECK(bind(s[i], (struct sockaddr *)&lo, alen) == 0);
    }
    int lvl = fam == AF_INET ? IPPROTO_IP : IPPROTO_IPV6;
    int opt = fam == AF_INET ? IP_RECVORIGDSTADDR : IPV6_RECVORIGDSTADDR;
    int v = -1;
    socklen_t vl = sizeof(v);
    CHECK(getsockopt(s[2], lvl, opt, &v, &vl) == 0 && v == 0);
    CHECK(setsockopt(s[2], lvl, opt, &one, sizeof(one)) == 0);
    CHECK(getsockopt(s[2], lvl, opt, &v, &vl) == 0 && v == 1);
    int tx = socket(fam, SOCK_DGRAM, 0);
    CHECK(sendto(tx, "r", 1, 0, (struct sockaddr *)&lo, alen) == 1);
    struct pollfd p = {.fd = s[2], .events = POLLIN};
    CHECK(poll(&p, 1, 5000) == 1);
    char buf[8], ctl[128];
    struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
                       .msg_controllen = sizeof(ctl)};
    CHECK(recvmsg(s[2], &m, 0) == 1);
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    CHECK(c != NULL);
    struct sockaddr_storage od = {0};
    memcpy(&od, CMSG_DATA(c), c->cmsg_len - CMSG_LEN(0));
    printf("last bound got it; origdst cmsg (%d,%d) len %zu same as target %d\n",
           c->cmsg_level, c->cmsg_type, (size_t)c->cmsg_len, !memcmp(&od, &lo, alen));
    char x;
    CHECK_ERR(recv(s[0], &x, 1, MSG_DONTWAIT), EAGAIN);
    CHECK_ERR(recv(s[1], &x, 1, MSG_DONTWAIT), EAGAIN);
    for (int i = 0; i < 3; i++)
        close(s[i]);
    close(tx);
    int pc = -1;
    vl = sizeof(pc);
    CHECK_ERR(getsockopt(tx = socket(fam, SOCK_DGRAM, 0), SOL_SOCKET, SO_PASSCRED, &pc, &vl),
              EOPNOTSUPP);
    close(tx);
}

/* IPv4: a socket bound to 255.255.255.255 takes broadcasts; a multicast from a socket
 * bound to 127.0.0.1 leaves by lo and reaches a member there. */
static void bcast_mcast(void)
{
    int one = 1;
    int rx = socket(AF_INET, SOCK_DGRAM, 0), tx = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in b = {.sin_family = AF_INET, .sin_port = htons(40220),
                            .sin_addr.s_addr = htonl(INADDR_BROADCAST)};
    CHECK(bind(rx, (struct sockaddr *)&b, sizeof(b)) == 0);
    CHECK(setsockopt(tx, SOL_SOCKET, SO_BROADCAST, &one, sizeof(one)) == 0);
    CHECK(sendto(tx, "bc", 2, 0, (struct sockaddr *)&b, sizeof(b)) == 2);
    char buf[8];
    struct pollfd p = {.fd = rx, .events = POLLIN};
    CHECK(poll(&p, 1, 5000) == 1);
    printf("bound to broadcast, got %zd\n", recv(rx, buf, sizeof(buf), 0));
    close(rx);
    close(tx);

    rx = socket(AF_INET, SOCK_DGRAM, 0);
    tx = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in any = {.sin_family = AF_INET, .sin_port = htons(40221)};
    CHECK(bind(rx, (struct sockaddr *)&any, sizeof(any)) == 0);
    struct ip_mreqn mr = {.imr_multiaddr.s_addr = inet_addr("224.0.2.1"),
                          .imr_ifindex = 1};
    CHECK(setsockopt(rx, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mr, sizeof(mr)) == 0);
    CHECK(setsockopt(rx, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one)) == 0);
    struct sockaddr_in lo = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(bind(tx, (struct sockaddr *)&lo, sizeof(lo)) == 0);
    struct sockaddr_in g = {.sin_family = AF_INET, .sin_port = htons(40221),
                            .sin_addr.s_addr = inet_addr("224.0.2.1")};
    CHECK(sendto(tx, "mc", 2, 0, (struct sockaddr *)&g, sizeof(g)) == 2);
    p.fd = rx;
    CHECK(poll(&p, 1, 5000) == 1);
    char ctl[64];
    struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
                       .msg_controllen = sizeof(ctl)};
    ssize_t n = recvmsg(rx, &m, 0);
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    struct in_pktinfo pi;
    CHECK(c && c->cmsg_type == IP_PKTINFO);
    memcpy(&pi, CMSG_DATA(c), sizeof(pi));
    char a1[32], a2[32];
    inet_ntop(AF_INET, &pi.ipi_spec_dst, a1, sizeof(a1));
    inet_ntop(AF_INET, &pi.ipi_addr, a2, sizeof(a2));
    printf("multicast from a bound source: %zd, pktinfo ifindex %d spec_dst %s addr %s\n",
           n, pi.ipi_ifindex, a1, a2);
    close(rx);
    close(tx);
}

/* IPv6 sockets and IPv4-mapped addresses (udpv6_sendmsg). */
static void mapped(void)
{
    struct sockaddr_in6 v6 = {.sin6_family = AF_INET6, .sin6_port = htons(40230),
                              .sin6_addr = in6addr_loopback};
    struct sockaddr_in6 m = {.sin6_family = AF_INET6, .sin6_port = htons(40231)};
    inet_pton(AF_INET6, "::ffff:127.0.0.1", &m.sin6_addr);
    int a = socket(AF_INET6, SOCK_DGRAM, 0), b = socket(AF_INET6, SOCK_DGRAM, 0);
    struct sockaddr_in6 a_addr = v6, b_addr = m;
    a_addr.sin6_port = 0;
    b_addr.sin6_port = 0;
    CHECK(bind(a, (struct sockaddr *)&a_addr, sizeof(a_addr)) == 0);
    CHECK(bind(b, (struct sockaddr *)&b_addr, sizeof(b_addr)) == 0);
    ssize_t r1 = sendto(a, "x", 1, 0, (struct sockaddr *)&m, sizeof(m));
    int e1 = errno;
    ssize_t r2 = sendto(b, "x", 1, 0, (struct sockaddr *)&v6, sizeof(v6));
    int e2 = errno;
    printf("bound ::1 to a mapped address: %zd %s; bound mapped to ::1: %zd %s\n", r1,
           r1 < 0 ? strerror(e1) : "", r2,
           r2 < 0 ? (e2 == EINVAL || e2 == EAFNOSUPPORT ? "EINVAL/EAFNOSUPPORT" : strerror(e2))
                  : "");
    close(a);
    close(b);
}

/* SIOCETHTOOL on lo: the timestamping capabilities; other commands unsupported. */
static void ethtool(void)
{
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct ethtool_ts_info ti;
    memset(&ti, 0xee, sizeof(ti));
    ti.cmd = ETHTOOL_GET_TS_INFO;
    struct ifreq r = {0};
    strcpy(r.ifr_name, "lo");
    r.ifr_data = (void *)&ti;
    CHECK(ioctl(s, SIOCETHTOOL, &r) == 0);
    printf("lo ts info: cmd 0x%x so_timestamping 0x%x phc %d tx %u rx %u\n", ti.cmd,
           ti.so_timestamping, ti.phc_index, ti.tx_types, ti.rx_filters);
    struct ethtool_cmd c = {.cmd = ETHTOOL_GSET};
    r.ifr_data = (void *)&c;
    CHECK_ERR(ioctl(s, SIOCETHTOOL, &r), EOPNOTSUPP);
    strcpy(r.ifr_name, "nosuchdev0");
    CHECK_ERR(ioctl(s, SIOCETHTOOL, &r), ENODEV);
    close(s);
}

/* IP_RECVERR / IPV6_RECVERR: a port unreachable and (IPv6) a datagram too big are
 * reported on the error queue, read with MSG_ERRQUEUE. */
static void errqueue(void)
{
    int one = 1, s = socket(fam, SOCK_DGRAM, 0);
    int lvl = fam == AF_INET ? IPPROTO_IP : IPPROTO_IPV6;
    int opt = fam == AF_INET ? IP_RECVERR : IPV6_RECVERR;
    CHECK(setsockopt(s, lvl, opt, &one, sizeof(one)) == 0);
    struct sockaddr_storage nobody = addr(1, 40240);      /* nobody listens there */
    CHECK(sendto(s, "lost", 4, 0, (struct sockaddr *)&nobody, alen) == 4);
    struct pollfd p = {.fd = s, .events = POLLIN};
    CHECK(poll(&p, 1, 5000) == 1);
    printf("errqueue: revents POLLERR %d POLLIN %d\n", !!(p.revents & POLLERR),
           !!(p.revents & POLLIN));
    for (int round = 0; round < 2; round++) {
        char buf[16], ctl[128];
        struct sockaddr_storage name;
        struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
        struct msghdr m = {.msg_name = &name, .msg_namelen = sizeof(name), .msg_iov = &iov,
                           .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof(ctl)};
        ssize_t n = recvmsg(s, &m, MSG_ERRQUEUE);
        if (n < 0) {
            printf("  again: %s\n", errno == EAGAIN ? "EAGAIN" : strerror(errno));
            break;
        }
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        CHECK(c != NULL);
        struct sock_extended_err ee;
        memcpy(&ee, CMSG_DATA(c), sizeof(ee));
        struct sockaddr *off = (struct sockaddr *)(CMSG_DATA(c) + sizeof(ee));
        printf("  %zd bytes \"%.*s\" flags ERRQUEUE %d, cmsg (%d,%d) len %zu: errno %d origin %d"
               " type %d code %d info %u offender family %d, name same %d\n", n, (int)n, buf,
               !!(m.msg_flags & MSG_ERRQUEUE), c->cmsg_level, c->cmsg_type,
               (size_t)c->cmsg_len, ee.ee_errno, ee.ee_origin, ee.ee_type, ee.ee_code,
               ee.ee_info, off->sa_family, !memcmp(&name, &nobody, alen));
    }
    int err = -1;
    socklen_t el = sizeof(err);
    CHECK(getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &el) == 0);
    printf("  SO_ERROR after: %d\n", err);
    if (fam == AF_INET6) {
        static char big[0x10000];
        struct sockaddr_storage peer = addr(1, 40241);
        CHECK_ERR(sendto(s, big, sizeof(big), 0, (struct sockaddr *)&peer, alen), EMSGSIZE);
        char ctl[128];
        struct sockaddr_storage name;
        struct msghdr m = {.msg_name = &name, .msg_namelen = sizeof(name), .msg_control = ctl,
                           .msg_controllen = sizeof(ctl)};
        ssize_t n = recvmsg(s, &m, MSG_ERRQUEUE);
        struct sock_extended_err ee;
        memcpy(&ee, CMSG_DATA(CMSG_FIRSTHDR(&m)), sizeof(ee));
        printf("  too big: %zd, errno %d origin %d info %u name same %d\n", n, ee.ee_errno,
               ee.ee_origin, ee.ee_info, !memcmp(&name, &peer, alen));
    }
    close(s);
}

/* A dual-stack socket receiving an IPv4 datagram with IP_PKTINFO and IPV6_RECVPKTINFO on
 * gets both control messages. */
static void dualstack_pktinfo(void)
{
    int on = 1, s = socket(AF_INET6, SOCK_DGRAM, 0), c = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6};
    CHECK(bind(s, (struct sockaddr *)&a, sizeof(a)) == 0);
    socklen_t l = sizeof(a);
    CHECK(getsockname(s, (struct sockaddr *)&a, &l) == 0);
    CHECK(setsockopt(s, SOL_IP, IP_PKTINFO, &on, sizeof(on)) == 0);
    CHECK(setsockopt(s, SOL_IPV6, IPV6_RECVPKTINFO, &on, sizeof(on)) == 0);
    struct sockaddr_in t = {.sin_family = AF_INET, .sin_port = a.sin6_port,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(sendto(c, "x", 1, 0, (struct sockaddr *)&t, sizeof(t)) == 1);
    char b[8], ctl[256];
    struct iovec v = {.iov_base = b, .iov_len = sizeof(b)};
    struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1, .msg_control = ctl,
                       .msg_controllen = sizeof(ctl)};
    CHECK(recvmsg(s, &m, 0) == 1);
    printf("dual-stack pktinfo: controllen %zu:", (size_t)m.msg_controllen);
    for (struct cmsghdr *h = CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h)) {
        printf(" (%d,%d) ", h->cmsg_level, h->cmsg_type);
        for (size_t i = 0; i < h->cmsg_len - CMSG_LEN(0); i++)
            printf("%02x", CMSG_DATA(h)[i]);
    }
    printf("\n");
    close(s);
    close(c);
}

int main(int argc, char **argv)
{
    fam = argc > 1 && argv[1][0] == '6' ? AF_INET6 : AF_INET;
    alen = fam == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    disconnects();
    shutdowns();
    stamps();
    cmsgs();
    reuse_and_origdst();
    errqueue();
    if (fam == AF_INET) {
        bcast_mcast();
        ethtool();
    }
    if (fam == AF_INET6) {
        mapped();
        dualstack_pktinfo();
    }
    ok();
    return 0;
}
