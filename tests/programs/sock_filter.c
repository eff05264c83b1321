/* Socket filters (SO_ATTACH_FILTER, classic BPF) on UDP, raw and packet sockets over
 * loopback: a filter on the UDP source port, one that cuts datagrams short, loads relative
 * to the network header (SKF_NET_OFF) and ancillary ones (SKF_AD_PROTOCOL), a filter on a
 * raw socket, one on a packet socket, and the errors of attach and detach.  Run as root;
 * natively in a network namespace of its own (it opens a packet socket).  Prints what
 * arrives and "ok". */
#define _GNU_SOURCE
#include "check.h"
#include <arpa/inet.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#define RX_PORT 40500

static int udp_bound(int port)
{
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(s >= 0 && bind(s, (struct sockaddr *)&a, sizeof(a)) == 0);
    return s;
}

static void send_to(int s, const char *msg)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(RX_PORT),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(sendto(s, msg, strlen(msg), 0, (struct sockaddr *)&a, sizeof(a)) ==
          (ssize_t)strlen(msg));
}

static void attach(int s, struct sock_filter *code, int n)
{
    struct sock_fprog p = {.len = n, .filter = code};
    CHECK(setsockopt(s, SOL_SOCKET, SO_ATTACH_FILTER, &p, sizeof(p)) == 0);
}

/* Prints every datagram waiting on `s` (up to a short wait for the first). */
static void drain(const char *who, int s)
{
    struct pollfd p = {.fd = s, .events = POLLIN};
    int first = 1;
    printf("%s:", who);
    while (poll(&p, 1, first ? 300 : 0) == 1) {
        char buf[128];
        struct msghdr m = {0};
        struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        ssize_t n = recvmsg(s, &m, MSG_DONTWAIT);
        if (n < 0)
            break;
        int ip = n > 28 && buf[0] == 0x45;          /* a raw or packet socket's IP header */
        ssize_t show = ip ? n - 28 : n;
        printf(" [%zd%s \"%.*s\"]", n, m.msg_flags & MSG_TRUNC ? " trunc" : "",
               (int)(show > 16 ? 16 : show), ip ? buf + 28 : buf);
        first = 0;
    }
    printf("\n");
}

static void udp_filters(void)
{
    int rx = udp_bound(RX_PORT), a = udp_bound(40501), b = udp_bound(40502);
    /* Drop what comes from port 40501: offset 0 is the UDP header. */
    struct sock_filter by_port[] = {
        BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 40501, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, 0),
        BPF_STMT(BPF_RET | BPF_K, 0xffff),
    };
    attach(rx, by_port, 4);
    send_to(a, "from a");
    send_to(b, "from b");
    drain("source-port filter", rx);

    /* Keep 8 + 3 bytes: the payload is cut to 3. */
    struct sock_filter cut[] = {BPF_STMT(BPF_RET | BPF_K, 11)};
    attach(rx, cut, 1);                         /* replaces the first */
    send_to(a, "abcdefgh");
    drain("cut to 11", rx);

    /* The network header: IP protocol 17 at SKF_NET_OFF + 9; SKF_AD_PROTOCOL is ETH_P_IP. */
    struct sock_filter net[] = {
        BPF_STMT(BPF_LD | BPF_B | BPF_ABS, (unsigned)(SKF_NET_OFF + 9)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 17, 0, 3),
        BPF_STMT(BPF_LD | BPF_H | BPF_ABS, (unsigned)(SKF_AD_OFF + SKF_AD_PROTOCOL)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ETH_P_IP, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, 0xffff),
        BPF_STMT(BPF_RET | BPF_K, 0),
    };
    attach(rx, net, 6);
    send_to(b, "network");
    drain("network-header filter", rx);

    /* Past the end: the program ends with 0 and the datagram is dropped. */
    struct sock_filter far[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 1000),
        BPF_STMT(BPF_RET | BPF_K, 0xffff),
    };
    attach(rx, far, 2);
    send_to(b, "short");
    drain("load past the end", rx);

    /* X = IP header length (MSH), then the UDP destination port through it. */
    struct sock_filter msh[] = {
        BPF_STMT(BPF_LDX | BPF_B | BPF_MSH, (unsigned)SKF_NET_OFF),
        BPF_STMT(BPF_LD | BPF_H | BPF_IND, (unsigned)(SKF_NET_OFF + 2)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, RX_PORT, 0, 1),
        BPF_STMT(BPF_RET | BPF_A, 0),
        BPF_STMT(BPF_RET | BPF_K, 0),
    };
    attach(rx, msh, 5);
    send_to(a, "0123456789abcdefghijklmnopqrstuvwxyz0123456789");
    drain("keep A = port bytes", rx);

    int v = 0;
    CHECK(setsockopt(rx, SOL_SOCKET, SO_DETACH_FILTER, &v, sizeof(v)) == 0);
    CHECK_ERR(setsockopt(rx, SOL_SOCKET, SO_DETACH_FILTER, &v, sizeof(v)), ENOENT);
    send_to(a, "unfiltered");
    drain("detached", rx);

    /* Bad programs. */
    struct sock_fprog p = {.len = 0, .filter = by_port};
    CHECK_ERR(setsockopt(rx, SOL_SOCKET, SO_ATTACH_FILTER, &p, sizeof(p)), EINVAL);
    p.len = 2;                                        /* ends with a jump */
    CHECK_ERR(setsockopt(rx, SOL_SOCKET, SO_ATTACH_FILTER, &p, sizeof(p)), EINVAL);
    struct sock_filter bad_op[] = {{0xff, 0, 0, 0}, BPF_STMT(BPF_RET | BPF_K, 0)};
    p.filter = bad_op;
    CHECK_ERR(setsockopt(rx, SOL_SOCKET, SO_ATTACH_FILTER, &p, sizeof(p)), EINVAL);
    struct sock_filter div0[] = {BPF_STMT(BPF_ALU | BPF_DIV | BPF_K, 0),
                                 BPF_STMT(BPF_RET | BPF_K, 0)};
    p.filter = div0;
    CHECK_ERR(setsockopt(rx, SOL_SOCKET, SO_ATTACH_FILTER, &p, sizeof(p)), EINVAL);
    struct sock_filter jump_out[] = {BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 1, 5, 0),
                                     BPF_STMT(BPF_RET | BPF_K, 0)};
    p.filter = jump_out;
    CHECK_ERR(setsockopt(rx, SOL_SOCKET, SO_ATTACH_FILTER, &p, sizeof(p)), EINVAL);
    p.filter = (struct sock_filter *)8;
    CHECK_ERR(setsockopt(rx, SOL_SOCKET, SO_ATTACH_FILTER, &p, sizeof(p)), EFAULT);
    CHECK_ERR(setsockopt(rx, SOL_SOCKET, SO_ATTACH_FILTER, &p, 4), EINVAL);
    socklen_t vl = sizeof(v);
    CHECK_ERR(getsockopt(rx, SOL_SOCKET, SO_DETACH_FILTER, &v, &vl), ENOPROTOOPT);
    printf("bad programs refused\n");
    close(rx);
    close(a);
    close(b);
}

static void raw_and_packet(void)
{
    int raw = socket(AF_INET, SOCK_RAW, IPPROTO_UDP);
    int pkt = socket(AF_PACKET, SOCK_DGRAM, htons(ETH_P_ALL));
    CHECK(raw >= 0 && pkt >= 0);
    struct sockaddr_ll ll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL),
                             .sll_ifindex = if_nametoindex("lo")};
    CHECK(bind(pkt, (struct sockaddr *)&ll, sizeof(ll)) == 0);
    /* Raw: offset 0 is the IP header; keep only datagrams to RX_PORT. */
    struct sock_filter to_rx[] = {
        BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 22),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, RX_PORT, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, 0xffff),
        BPF_STMT(BPF_RET | BPF_K, 0),
    };
    attach(raw, to_rx, 4);
    /* Packet (SOCK_DGRAM): offset 0 is the IP header too; outgoing copies dropped. */
    struct sock_filter host_only[] = {
        BPF_STMT(BPF_LD | BPF_B | BPF_ABS, (unsigned)(SKF_AD_OFF + SKF_AD_PKTTYPE)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PACKET_OUTGOING, 2, 0),
        BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 22),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, RX_PORT, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, 0),
        BPF_STMT(BPF_RET | BPF_K, 30),
    };
    attach(pkt, host_only, 6);
    int rx = udp_bound(RX_PORT), other = udp_bound(40503), a = udp_bound(40501);
    send_to(a, "to rx");
    struct sockaddr_in o = {.sin_family = AF_INET, .sin_port = htons(40503),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(sendto(a, "to other", 8, 0, (struct sockaddr *)&o, sizeof(o)) == 8);
    drain("raw, filtered to RX_PORT", raw);
    drain("packet, received copies to RX_PORT cut to 30", pkt);
    drain("rx", rx);
    drain("other", other);
    close(raw);
    close(pkt);
    close(rx);
    close(other);
    close(a);
}

int main(void)
{
    udp_filters();
    raw_and_packet();
    ok();
    return 0;
}
