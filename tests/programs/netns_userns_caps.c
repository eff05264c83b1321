/* The creator of a user namespace administers the network namespace it makes with it
 * (Linux: ns_capable(net->user_ns, ...)): after unshare(CLONE_NEWUSER|CLONE_NEWNET)
 * an unprivileged-in-the-parent process may open raw and packet sockets
 * (CAP_NET_RAW) and change netfilter state (CAP_NET_ADMIN: an nftables batch is
 * acknowledged, not EPERM).  Self-checking: prints "ok". */
#define _GNU_SOURCE
#include "check.h"
#include <arpa/inet.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdint.h>
#include <sys/socket.h>

struct msg {
    struct nlmsghdr h;
    struct nfgenmsg g;
};

static size_t put(char *buf, size_t off, uint16_t type, uint16_t flags, uint32_t seq,
                  uint16_t res, const void *attrs, size_t alen)
{
    struct msg *m = (struct msg *)(buf + off);
    memset(m, 0, sizeof *m);
    m->h.nlmsg_len = NLMSG_LENGTH(sizeof(struct nfgenmsg)) + alen;
    m->h.nlmsg_type = type;
    m->h.nlmsg_flags = NLM_F_REQUEST | flags;
    m->h.nlmsg_seq = seq;
    m->g.nfgen_family = NFPROTO_INET;
    m->g.version = NFNETLINK_V0;
    m->g.res_id = htons(res);
    if (alen)
        memcpy(buf + off + NLMSG_LENGTH(sizeof(struct nfgenmsg)), attrs, alen);
    return off + NLMSG_ALIGN(m->h.nlmsg_len);
}

int main(void)
{
    CHECK(unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0);

    int raw = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
    CHECK(raw >= 0);
    int pkt = socket(AF_PACKET, SOCK_DGRAM, 0);
    CHECK(pkt >= 0);

    int nl = socket(AF_NETLINK, SOCK_RAW, NETLINK_NETFILTER);
    CHECK(nl >= 0);
    /* A batch adding table "t": NFTA_TABLE_NAME = "t". */
    char attr[8] = {0};
    struct nlattr *a = (struct nlattr *)attr;
    a->nla_len = NLA_HDRLEN + 2;
    a->nla_type = NFTA_TABLE_NAME;
    memcpy(attr + NLA_HDRLEN, "t", 2);
    char buf[512];
    size_t n = put(buf, 0, NFNL_MSG_BATCH_BEGIN, 0, 1, NFNL_SUBSYS_NFTABLES, NULL, 0);
    n = put(buf, n, (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE,
            NLM_F_CREATE | NLM_F_ACK, 2, 0, attr, NLA_ALIGN(a->nla_len));
    n = put(buf, n, NFNL_MSG_BATCH_END, 0, 3, NFNL_SUBSYS_NFTABLES, NULL, 0);
    struct sockaddr_nl k = {.nl_family = AF_NETLINK};
    CHECK(sendto(nl, buf, n, 0, (struct sockaddr *)&k, sizeof k) == (ssize_t)n);
    char reply[512];
    ssize_t r = recv(nl, reply, sizeof reply, 0);
    CHECK(r >= (ssize_t)NLMSG_LENGTH(sizeof(struct nlmsgerr)));
    struct nlmsghdr *h = (struct nlmsghdr *)reply;
    CHECK(h->nlmsg_type == NLMSG_ERROR);
    struct nlmsgerr *e = NLMSG_DATA(h);
    CHECK(e->error == 0);               /* acknowledged: not -EPERM */
    puts("ok");
    return 0;
}
