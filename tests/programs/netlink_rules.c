/* Policy routing rules over NETLINK_ROUTE in a fresh network namespace: RTM_NEWRULE
 * with and without NLM_F_EXCL, a priority or a table left for the kernel to choose,
 * other actions, IPv6, a bad prefix length; the dump; RTM_DELRULE of a rule, of its
 * duplicate, and of the first rule a request with nothing specified matches.  Prints
 * every answer so the output can be compared with Linux's.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <linux/fib_rules.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sched.h>
#include <sys/socket.h>

#include "check.h"

static int fd;

struct req {
    struct nlmsghdr h;
    struct fib_rule_hdr r;
    char attrs[128];
};

static void put(struct req *q, int type, const void *data, int len)
{
    struct rtattr *a = (void *)((char *)q + NLMSG_ALIGN(q->h.nlmsg_len));
    a->rta_type = type;
    a->rta_len = RTA_LENGTH(len);
    memcpy(RTA_DATA(a), data, len);
    q->h.nlmsg_len = NLMSG_ALIGN(q->h.nlmsg_len) + RTA_ALIGN(a->rta_len);
}

/* Prints the answers until an NLMSG_ERROR or NLMSG_DONE. */
static void show(void)
{
    char buf[8192];
    for (;;) {
        int n = recv(fd, buf, sizeof(buf), 0);
        CHECK(n > 0);
        for (struct nlmsghdr *h = (void *)buf; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type == NLMSG_DONE) {
                printf(" done\n");
                return;
            }
            if (h->nlmsg_type == NLMSG_ERROR) {
                printf(" err %d\n", ((struct nlmsgerr *)NLMSG_DATA(h))->error);
                return;
            }
            unsigned char *p = NLMSG_DATA(h);
            printf(" %d:", h->nlmsg_type);
            for (unsigned i = 0; i < h->nlmsg_len - NLMSG_HDRLEN; i++)
                printf("%02x", p[i]);
            printf("\n");
        }
    }
}

static void rule(int type, int flags, int family, int table, int prio, const char *dst,
                 int prefix, int action)
{
    struct req q;
    memset(&q, 0, sizeof(q));
    q.h.nlmsg_len = NLMSG_LENGTH(sizeof(struct fib_rule_hdr));
    q.h.nlmsg_type = type;
    q.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    q.r.family = family;
    q.r.table = table;
    q.r.action = action;
    q.r.dst_len = prefix;
    if (prio >= 0)
        put(&q, FRA_PRIORITY, &prio, 4);
    if (dst) {
        unsigned char addr[16];
        CHECK(inet_pton(family, dst, addr) == 1);
        put(&q, FRA_DST, addr, family == AF_INET ? 4 : 16);
    }
    CHECK(send(fd, &q, q.h.nlmsg_len, 0) == (ssize_t)q.h.nlmsg_len);
    show();
}

static void dump(void)
{
    struct req q;
    memset(&q, 0, sizeof(q));
    q.h.nlmsg_len = NLMSG_LENGTH(sizeof(struct fib_rule_hdr));
    q.h.nlmsg_type = RTM_GETRULE;
    q.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    CHECK(send(fd, &q, q.h.nlmsg_len, 0) == (ssize_t)q.h.nlmsg_len);
    show();
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    CHECK(unshare(CLONE_NEWNET) == 0);
    fd = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
    CHECK(fd >= 0);
    int excl = NLM_F_CREATE | NLM_F_EXCL;
    rule(RTM_NEWRULE, excl, AF_INET, 99, 12345, "192.0.2.0", 24, FR_ACT_TO_TBL);
    rule(RTM_NEWRULE, excl, AF_INET, 99, 12345, "192.0.2.0", 24, FR_ACT_TO_TBL);  /* EEXIST */
    rule(RTM_NEWRULE, NLM_F_CREATE, AF_INET, 99, 12345, "192.0.2.0", 24, FR_ACT_TO_TBL);
    rule(RTM_NEWRULE, NLM_F_CREATE, AF_INET, 0, 100, NULL, 0, FR_ACT_TO_TBL);   /* new table */
    rule(RTM_NEWRULE, NLM_F_CREATE, AF_INET, 50, -1, NULL, 0, FR_ACT_TO_TBL);   /* priority? */
    rule(RTM_NEWRULE, NLM_F_CREATE, AF_INET, 0, 200, NULL, 0, FR_ACT_BLACKHOLE);
    rule(RTM_NEWRULE, NLM_F_CREATE, AF_INET6, 7, 300, "2001:db8::", 64, FR_ACT_TO_TBL);
    rule(RTM_NEWRULE, NLM_F_CREATE, AF_INET, 99, 400, "192.0.2.0", 40, FR_ACT_TO_TBL);
    dump();
    rule(RTM_DELRULE, 0, AF_INET, 99, 12345, "192.0.2.0", 24, FR_ACT_TO_TBL);
    rule(RTM_DELRULE, 0, AF_INET, 99, 12345, "192.0.2.0", 24, FR_ACT_TO_TBL);   /* the copy */
    rule(RTM_DELRULE, 0, AF_INET, 0, -1, NULL, 0, 0);          /* the first: the local rule */
    rule(RTM_DELRULE, 0, AF_INET6, 99, -1, NULL, 0, 0);                          /* ENOENT */
    dump();
    ok();
    return 0;
}
