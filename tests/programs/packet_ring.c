/* PACKET_RX_RING (TPACKET_V1 and V2) on lo: the ring mapped from the socket, frames
 * filled with their headers, sockaddr_ll and data at tp_net, handed back with
 * TP_STATUS_KERNEL; a full ring drops (PACKET_STATISTICS); the ring cannot change once
 * mapped; bad requests.  Run as root; natively only in a network namespace of its own.
 * Prints what it sees and "ok". */
#define _GNU_SOURCE
#include "check.h"
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>

static void send_udp(const char *msg)
{
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(40600),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(sendto(s, msg, strlen(msg), 0, (struct sockaddr *)&to, sizeof(to)) > 0);
    close(s);
}

static void ring(int version, int stype)
{
    int s = socket(AF_PACKET, stype, 0);
    CHECK(s >= 0);
    CHECK(setsockopt(s, SOL_PACKET, PACKET_VERSION, &version, sizeof(version)) == 0);
    struct tpacket_req req = {.tp_block_size = 4096, .tp_block_nr = 2, .tp_frame_size = 2048,
                              .tp_frame_nr = 4};
    CHECK(setsockopt(s, SOL_PACKET, PACKET_RX_RING, &req, sizeof(req)) == 0);
    struct sockaddr_ll b = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IP),
                            .sll_ifindex = if_nametoindex("lo")};
    CHECK(bind(s, (struct sockaddr *)&b, sizeof(b)) == 0);
    unsigned char *r = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, s, 0);
    CHECK(r != MAP_FAILED);
    printf("V%d %s:\n", version + 1, stype == SOCK_RAW ? "raw" : "dgram");
    CHECK_ERR(setsockopt(s, SOL_PACKET, PACKET_RX_RING, &req, sizeof(req)), EBUSY);
    CHECK_ERR(setsockopt(s, SOL_PACKET, PACKET_VERSION, &version, sizeof(version)), EBUSY);
    struct pollfd p = {.fd = s, .events = POLLIN};
    printf("  readable before: %d\n", poll(&p, 1, 0));
    for (int i = 0; i < 6; i++) {
        char msg[32];
        snprintf(msg, sizeof(msg), "frame %d", i);
        send_udp(msg);
    }
    CHECK(poll(&p, 1, 5000) == 1);
    for (int i = 0; i < 4; i++) {
        unsigned char *f = r + (i / 2) * 4096 + (i % 2) * 2048;
        unsigned long status;
        unsigned len, snap, mac, net;
        if (version == TPACKET_V1) {
            struct tpacket_hdr *h = (void *)f;
            status = h->tp_status, len = h->tp_len, snap = h->tp_snaplen, mac = h->tp_mac,
            net = h->tp_net;
        } else {
            struct tpacket2_hdr *h = (void *)f;
            status = h->tp_status, len = h->tp_len, snap = h->tp_snaplen, mac = h->tp_mac,
            net = h->tp_net;
        }
        struct sockaddr_ll *sll =
            (void *)(f + TPACKET_ALIGN(version == TPACKET_V1 ? sizeof(struct tpacket_hdr)
                                                            : sizeof(struct tpacket2_hdr)));
        printf("  frame %d: status user %lu len %u snap %u mac %u net %u proto 0x%04x"
               " pkttype %d \"%.7s\"\n", i, status & TP_STATUS_USER, len, snap, mac, net,
               ntohs(sll->sll_protocol), sll->sll_pkttype, (char *)f + net + 28);
        if (version == TPACKET_V1)
            ((struct tpacket_hdr *)f)->tp_status = TP_STATUS_KERNEL;
        else
            ((struct tpacket2_hdr *)f)->tp_status = TP_STATUS_KERNEL;
    }
    struct tpacket_stats st;
    socklen_t sl = sizeof(st);
    CHECK(getsockopt(s, SOL_PACKET, PACKET_STATISTICS, &st, &sl) == 0);
    printf("  stats: packets %u drops %u\n", st.tp_packets, st.tp_drops);
    CHECK(getsockopt(s, SOL_PACKET, PACKET_STATISTICS, &st, &sl) == 0);
    printf("  stats again: packets %u drops %u\n", st.tp_packets, st.tp_drops);
    send_udp("again!!");
    CHECK(poll(&p, 1, 5000) == 1);
    unsigned char *f = r;
    unsigned net = version == TPACKET_V1 ? ((struct tpacket_hdr *)f)->tp_net
                                         : ((struct tpacket2_hdr *)f)->tp_net;
    printf("  after handing back: \"%.7s\"\n", (char *)f + net + 28);
    CHECK(munmap(r, 8192) == 0);
    close(s);
}

int main(void)
{
    int s = socket(AF_PACKET, SOCK_DGRAM, 0);
    struct tpacket_req bad[] = {
        {100, 1, 64, 1}, {4096, 1, 10, 1}, {4096, 1, 100, 1}, {4096, 1, 2048, 3},
        {4096, 0, 2048, 1}};
    for (int i = 0; i < 5; i++)
        CHECK_ERR(setsockopt(s, SOL_PACKET, PACKET_RX_RING, &bad[i], sizeof(bad[i])), EINVAL);
    struct tpacket_req none = {0};
    CHECK(setsockopt(s, SOL_PACKET, PACKET_RX_RING, &none, sizeof(none)) == 0);
    CHECK(mmap(NULL, 4096, PROT_READ, MAP_SHARED, s, 0) == MAP_FAILED);
    printf("no ring: mmap fails\n");
    close(s);
    ring(TPACKET_V1, SOCK_DGRAM);
    ring(TPACKET_V2, SOCK_RAW);
    ok();
    return 0;
}
