/* NETLINK_NETFILTER (nftables) in a fresh network namespace: batches with acks and
 * errors, atomic rollback, tables, base and regular chains, rules with immediate
 * verdicts and jumps, use counts, handles, dumps, deletes and flushes.  Prints what
 * the kernel answers so the output can be compared with Linux's.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <sched.h>
#include <stdint.h>
#include <sys/socket.h>

#include "check.h"

static int fd;
static char req[8192];
static size_t reqlen;
static uint32_t seq = 100;

static void *put(const void *p, size_t n)
{
    void *at = req + reqlen;
    memcpy(at, p, n);
    reqlen += NLMSG_ALIGN(n);
    return at;
}

static struct nlmsghdr *cur;

static void msg_begin(uint16_t type, uint16_t flags, uint8_t family)
{
    struct nlmsghdr h = {.nlmsg_type = type, .nlmsg_flags = NLM_F_REQUEST | flags,
                         .nlmsg_seq = seq++};
    cur = put(&h, sizeof(h));
    struct nfgenmsg g = {.nfgen_family = family, .version = NFNETLINK_V0,
                         .res_id = type >= 0x100 ? 0 : htons(NFNL_SUBSYS_NFTABLES)};
    put(&g, sizeof(g));
}

static void msg_end(void) { cur->nlmsg_len = req + reqlen - (char *)cur; }

static void attr(uint16_t type, const void *p, size_t n)
{
    struct nlattr a = {.nla_len = NLA_HDRLEN + n, .nla_type = type};
    memcpy(req + reqlen, &a, sizeof(a));
    memcpy(req + reqlen + NLA_HDRLEN, p, n);
    memset(req + reqlen + NLA_HDRLEN + n, 0, NLA_ALIGN(n) - n);
    reqlen += NLA_HDRLEN + NLA_ALIGN(n);
}

static void attr_str(uint16_t type, const char *s) { attr(type, s, strlen(s) + 1); }

static void attr_u32(uint16_t type, uint32_t v)
{
    v = htonl(v);
    attr(type, &v, 4);
}

static size_t nest_begin(uint16_t type)
{
    size_t at = reqlen;
    struct nlattr a = {.nla_len = 0, .nla_type = type};
    memcpy(req + reqlen, &a, sizeof(a));
    reqlen += NLA_HDRLEN;
    return at;
}

static void nest_end(size_t at) { ((struct nlattr *)(req + at))->nla_len = reqlen - at; }

#define T(x) (NFNL_SUBSYS_NFTABLES << 8 | (x))

static void immediate_verdict(int code, const char *chain)
{
    size_t e = nest_begin(NFTA_LIST_ELEM);
    attr_str(NFTA_EXPR_NAME, "immediate");
    size_t d = nest_begin(NFTA_EXPR_DATA);
    attr_u32(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT);
    size_t data = nest_begin(NFTA_IMMEDIATE_DATA);
    size_t v = nest_begin(NFTA_DATA_VERDICT);
    attr_u32(NFTA_VERDICT_CODE, code);
    if (chain)
        attr_str(NFTA_VERDICT_CHAIN, chain);
    nest_end(v);
    nest_end(data);
    nest_end(d);
    nest_end(e);
}


/* An expression `name` with big-endian u32 attributes given as (type, value) pairs,
 * type 0 ending the list. */
static void expr_u32s(const char *name, const uint32_t *attrs)
{
    size_t e = nest_begin(NFTA_LIST_ELEM);
    attr_str(NFTA_EXPR_NAME, name);
    size_t d = nest_begin(NFTA_EXPR_DATA);
    for (; attrs[0]; attrs += 2)
        attr_u32(attrs[0], attrs[1]);
    nest_end(d);
    nest_end(e);
}

/* A rule in t1/input holding the expressions that `add` appends. */
static void rule_with(void (*add)(const void *), const void *arg)
{
    msg_begin(T(NFT_MSG_NEWRULE), NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND, NFPROTO_INET);
    attr_str(NFTA_RULE_TABLE, "t1");
    attr_str(NFTA_RULE_CHAIN, "input");
    size_t exprs = nest_begin(NFTA_RULE_EXPRESSIONS);
    add(arg);
    nest_end(exprs);
    msg_end();
}

struct one_expr {
    const char *name;
    uint32_t attrs[16];
};

static void add_u32s(const void *arg)
{
    const struct one_expr *x = arg;
    expr_u32s(x->name, x->attrs);
}

static void add_cmp(const void *arg)
{
    (void)arg;
    uint32_t payload[] = {NFTA_PAYLOAD_BASE, NFT_PAYLOAD_NETWORK_HEADER, NFTA_PAYLOAD_OFFSET, 9,
                          NFTA_PAYLOAD_LEN, 1, NFTA_PAYLOAD_DREG, NFT_REG_1, 0};
    expr_u32s("payload", payload);
    size_t e = nest_begin(NFTA_LIST_ELEM);
    attr_str(NFTA_EXPR_NAME, "cmp");
    size_t d = nest_begin(NFTA_EXPR_DATA);
    attr_u32(NFTA_CMP_SREG, NFT_REG_1);
    attr_u32(NFTA_CMP_OP, NFT_CMP_EQ);
    size_t v = nest_begin(NFTA_CMP_DATA);
    uint8_t tcp = 6;
    attr(NFTA_DATA_VALUE, &tcp, 1);
    nest_end(v);
    nest_end(d);
    nest_end(e);
    immediate_verdict(NF_DROP, NULL);
}

static void batch_begin(void)
{
    reqlen = 0;
    msg_begin(NFNL_MSG_BATCH_BEGIN, NLM_F_ACK, AF_UNSPEC);
    msg_end();
}

static void batch_end(void)
{
    msg_begin(NFNL_MSG_BATCH_END, NLM_F_ACK, AF_UNSPEC);
    msg_end();
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A set's elements, one per line, sorted: the order a kernel walks a set in is its
 * backend's business. */
static void print_elements(const unsigned char *p, int rem)
{
    char *lines[64];
    int n = 0;
    const struct nlattr *a = (const void *)p;
    for (; rem >= (int)sizeof(*a) && a->nla_len >= sizeof(*a) && a->nla_len <= rem && n < 64;
         rem -= NLA_ALIGN(a->nla_len), a = (const void *)((const char *)a + NLA_ALIGN(a->nla_len))) {
        char *line = malloc(3 * a->nla_len + 16);
        CHECK(line != NULL);
        int at = sprintf(line, "    elem");
        for (int i = NLA_HDRLEN; i < a->nla_len; i++)
            at += sprintf(line + at, "%02x", ((const unsigned char *)a)[i]);
        lines[n++] = line;
    }
    qsort(lines, n, sizeof(lines[0]), cmp_str);
    printf(" elements:\n");
    for (int i = 0; i < n; i++) {
        printf("%s\n", lines[i]);
        free(lines[i]);
    }
}

/* Sends req and prints every message answered until `want` NLMSG_ERRORs or a
 * NLMSG_DONE arrived (the socket has a receive timeout, so a missing answer fails). */
static void send_and_print(int want_errors)
{
    CHECK(send(fd, req, reqlen, 0) == (ssize_t)reqlen);
    int errors = 0;
    char buf[16384];
    while (errors < want_errors) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        CHECK(n > 0);
        for (struct nlmsghdr *h = (void *)buf; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type == NLMSG_ERROR) {
                struct nlmsgerr *e = NLMSG_DATA(h);
                printf("  ack seq=%u error=%d\n", h->nlmsg_seq, e->error);
                errors++;
                continue;
            }
            if (h->nlmsg_type == NLMSG_DONE) {
                printf("  done seq=%u\n", h->nlmsg_seq);
                return;
            }
            struct nfgenmsg *g = NLMSG_DATA(h);
            printf("  msg type=%d family=%d multi=%d:", h->nlmsg_type & 0xff, g->nfgen_family,
                   !!(h->nlmsg_flags & NLM_F_MULTI));
            struct nlattr *a = (void *)((char *)g + NLMSG_ALIGN(sizeof(*g)));
            int rem = h->nlmsg_len - NLMSG_LENGTH(sizeof(*g));
            for (; rem >= (int)sizeof(*a) && a->nla_len >= sizeof(*a) && a->nla_len <= rem;
                 rem -= NLA_ALIGN(a->nla_len), a = (void *)((char *)a + NLA_ALIGN(a->nla_len))) {
                int len = a->nla_len - NLA_HDRLEN;
                unsigned char *p = (unsigned char *)a + NLA_HDRLEN;
                int type = a->nla_type & NLA_TYPE_MASK;
                /* The generation id differs between runs, a set's backend name holds a
                 * kernel address; everything else is printed. */
                if ((h->nlmsg_type & 0xff) == NFT_MSG_NEWGEN && type != NFTA_GEN_PROC_NAME)
                    continue;
                if ((h->nlmsg_type & 0xff) == NFT_MSG_NEWSET && type == 19)  /* SET_TYPE */
                    continue;
                if ((h->nlmsg_type & 0xff) == NFT_MSG_NEWSETELEM &&
                    type == NFTA_SET_ELEM_LIST_ELEMENTS) {
                    print_elements(p, len);
                    continue;
                }
                printf(" %d=", type);
                if (len > 0 && p[len - 1] == 0 && len > 1 && p[0] >= 'a' && p[0] <= 'z')
                    printf("'%s'", p);
                else
                    for (int i = 0; i < len; i++)
                        printf("%02x", p[i]);
            }
            printf("\n");
        }
    }
}

static void new_table(const char *name, int family, uint16_t flags)
{
    msg_begin(T(NFT_MSG_NEWTABLE), NLM_F_ACK | flags, family);
    attr_str(NFTA_TABLE_NAME, name);
    msg_end();
}

static void get(int type, int family, uint16_t flags, const char *table, const char *chain)
{
    reqlen = 0;
    msg_begin(T(type), flags, family);
    if (table)
        attr_str(1, table);               /* NFTA_{CHAIN,RULE}_TABLE, NFTA_TABLE_NAME */
    if (chain)
        attr_str(type == NFT_MSG_GETCHAIN ? NFTA_CHAIN_NAME : NFTA_RULE_CHAIN, chain);
    msg_end();
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    CHECK(unshare(CLONE_NEWNET) == 0);
    fd = socket(AF_NETLINK, SOCK_RAW, NETLINK_NETFILTER);
    CHECK(fd >= 0);
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
    CHECK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    struct timeval tv = {.tv_sec = 5};
    CHECK(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0);
    int one = 1;
    CHECK(setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one)) == 0);

    printf("build a ruleset\n");
    batch_begin();
    new_table("t1", NFPROTO_INET, NLM_F_CREATE);
    msg_begin(T(NFT_MSG_NEWCHAIN), NLM_F_ACK | NLM_F_CREATE, NFPROTO_INET);
    attr_str(NFTA_CHAIN_TABLE, "t1");
    attr_str(NFTA_CHAIN_NAME, "input");
    attr_str(NFTA_CHAIN_TYPE, "filter");
    attr_u32(NFTA_CHAIN_POLICY, NF_DROP);
    size_t hook = nest_begin(NFTA_CHAIN_HOOK);
    attr_u32(NFTA_HOOK_HOOKNUM, NF_INET_LOCAL_IN);
    attr_u32(NFTA_HOOK_PRIORITY, 0);
    nest_end(hook);
    msg_end();
    msg_begin(T(NFT_MSG_NEWCHAIN), NLM_F_ACK | NLM_F_CREATE, NFPROTO_INET);
    attr_str(NFTA_CHAIN_TABLE, "t1");
    attr_str(NFTA_CHAIN_NAME, "c2");
    msg_end();
    msg_begin(T(NFT_MSG_NEWRULE), NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND, NFPROTO_INET);
    attr_str(NFTA_RULE_TABLE, "t1");
    attr_str(NFTA_RULE_CHAIN, "c2");
    size_t exprs = nest_begin(NFTA_RULE_EXPRESSIONS);
    immediate_verdict(NF_ACCEPT, NULL);
    nest_end(exprs);
    msg_end();
    msg_begin(T(NFT_MSG_NEWRULE), NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND, NFPROTO_INET);
    attr_str(NFTA_RULE_TABLE, "t1");
    attr_str(NFTA_RULE_CHAIN, "input");
    exprs = nest_begin(NFTA_RULE_EXPRESSIONS);
    immediate_verdict(NFT_JUMP, "c2");
    nest_end(exprs);
    msg_end();
    msg_begin(T(NFT_MSG_NEWRULE), NLM_F_ACK | NLM_F_CREATE, NFPROTO_INET);  /* inserted first */
    attr_str(NFTA_RULE_TABLE, "t1");
    attr_str(NFTA_RULE_CHAIN, "input");
    exprs = nest_begin(NFTA_RULE_EXPRESSIONS);
    immediate_verdict(NF_DROP, NULL);
    nest_end(exprs);
    msg_end();
    batch_end();
    send_and_print(8);

    printf("read it back\n");
    get(NFT_MSG_GETTABLE, NFPROTO_INET, NLM_F_ACK, "t1", NULL);
    send_and_print(1);
    get(NFT_MSG_GETCHAIN, NFPROTO_UNSPEC, NLM_F_DUMP, NULL, NULL);
    send_and_print(1);
    get(NFT_MSG_GETRULE, NFPROTO_INET, NLM_F_DUMP, "t1", NULL);
    send_and_print(1);
    get(NFT_MSG_GETGEN, NFPROTO_UNSPEC, NLM_F_ACK, NULL, NULL);
    send_and_print(1);

    printf("errors\n");
    get(NFT_MSG_GETTABLE, NFPROTO_IPV4, 0, "t1", NULL);     /* other family */
    send_and_print(1);
    get(NFT_MSG_GETCHAIN, NFPROTO_INET, 0, "t1", NULL);     /* no chain name */
    send_and_print(1);
    get(NFT_MSG_GETCHAIN, NFPROTO_INET, 0, "t1", "nope");
    send_and_print(1);
    batch_begin();
    new_table("t1", NFPROTO_INET, NLM_F_EXCL);               /* EEXIST */
    new_table("t9", 99, 0);                                  /* bad family */
    msg_begin(T(NFT_MSG_DELCHAIN), NLM_F_ACK, NFPROTO_INET); /* in use by a jump: EBUSY */
    attr_str(NFTA_CHAIN_TABLE, "t1");
    attr_str(NFTA_CHAIN_NAME, "c2");
    msg_end();
    msg_begin(T(NFT_MSG_NEWRULE), NLM_F_ACK, NFPROTO_INET);  /* no NLM_F_CREATE */
    attr_str(NFTA_RULE_TABLE, "t1");
    attr_str(NFTA_RULE_CHAIN, "c2");
    msg_end();
    msg_begin(T(NFT_MSG_NEWRULE), NLM_F_ACK | NLM_F_CREATE, NFPROTO_INET);
    attr_str(NFTA_RULE_TABLE, "t1");
    attr_str(NFTA_RULE_CHAIN, "c2");
    exprs = nest_begin(NFTA_RULE_EXPRESSIONS);
    immediate_verdict(NFT_JUMP, "input");                    /* to a base chain */
    nest_end(exprs);
    msg_end();
    new_table("t2", NFPROTO_IPV4, 0);                        /* rolled back with the rest */
    batch_end();
    send_and_print(7);
    get(NFT_MSG_GETTABLE, NFPROTO_UNSPEC, NLM_F_DUMP, NULL, NULL);
    send_and_print(1);

    printf("expressions\n");
    static const struct one_expr bad[] = {
        {"payload", {NFTA_PAYLOAD_BASE, 1, NFTA_PAYLOAD_OFFSET, 1, NFTA_PAYLOAD_LEN, 4,
                     NFTA_PAYLOAD_SREG, NFT_REG_VERDICT}},
        {"payload", {NFTA_PAYLOAD_BASE, 1, NFTA_PAYLOAD_OFFSET, 300, NFTA_PAYLOAD_LEN, 4,
                     NFTA_PAYLOAD_DREG, NFT_REG_1}},
        {"payload", {NFTA_PAYLOAD_BASE, 9, NFTA_PAYLOAD_OFFSET, 1, NFTA_PAYLOAD_LEN, 4,
                     NFTA_PAYLOAD_DREG, NFT_REG_1}},
        {"payload", {NFTA_PAYLOAD_BASE, 1, NFTA_PAYLOAD_OFFSET, 1, NFTA_PAYLOAD_LEN, 20,
                     NFTA_PAYLOAD_DREG, NFT_REG_4}},
        {"meta", {NFTA_META_KEY, 256, NFTA_META_DREG, NFT_REG_1}},
        {"meta", {NFTA_META_KEY, NFT_META_MARK, NFTA_META_DREG, NFT_REG_1,
                  NFTA_META_SREG, NFT_REG_2}},
        {"meta", {NFTA_META_KEY, NFT_META_MARK, NFTA_META_DREG, 5}},
        {"cmp", {NFTA_CMP_SREG, NFT_REG_1, NFTA_CMP_OP, 9}},
        {"ct", {NFTA_CT_KEY, NFT_CT_SRC, NFTA_CT_DREG, NFT_REG_1}},
        {"ct", {NFTA_CT_KEY, NFT_CT_STATE}},
        {"fib", {NFTA_FIB_DREG, NFT_REG_1, NFTA_FIB_RESULT, NFT_FIB_RESULT_OIF,
                 NFTA_FIB_FLAGS, NFTA_FIB_F_SADDR | NFTA_FIB_F_DADDR}},
        {"masq", {0}},                                         /* not a nat chain */
        {"nat", {NFTA_NAT_TYPE, NFT_NAT_SNAT, NFTA_NAT_FAMILY, NFPROTO_IPV4,
                 NFTA_NAT_REG_ADDR_MIN, NFT_REG_1}},
        {"lookup", {NFTA_LOOKUP_SREG, NFT_REG_1}},
        {"bitwise", {NFTA_BITWISE_SREG, NFT_REG_1, NFTA_BITWISE_DREG, NFT_REG_2,
                     NFTA_BITWISE_LEN, 4}},
        {"nosuchexpr", {0}},
    };
    batch_begin();
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        rule_with(add_u32s, &bad[i]);
    batch_end();
    send_and_print(1 + sizeof(bad) / sizeof(bad[0]));
    static const struct one_expr good[] = {
        {"meta", {NFTA_META_KEY, NFT_META_L4PROTO, NFTA_META_DREG, NFT_REG32_00}},
        {"ct", {NFTA_CT_KEY, NFT_CT_STATE, NFTA_CT_DREG, NFT_REG_2}},
        {"counter", {0}},
    };
    batch_begin();
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        rule_with(add_u32s, &good[i]);
    rule_with(add_cmp, NULL);
    batch_end();
    send_and_print(3 + sizeof(good) / sizeof(good[0]));
    get(NFT_MSG_GETRULE, NFPROTO_INET, NLM_F_DUMP, "t1", "input");
    send_and_print(1);

    printf("sets\n");
    batch_begin();
    msg_begin(T(NFT_MSG_NEWSET), NLM_F_ACK | NLM_F_CREATE, NFPROTO_INET);
    attr_str(NFTA_SET_TABLE, "t1");
    attr_str(NFTA_SET_NAME, "ports");
    attr_u32(NFTA_SET_KEY_LEN, 2);
    attr_u32(NFTA_SET_ID, 7);
    attr_u32(NFTA_SET_FLAGS, NFT_SET_MAP);
    attr_u32(NFTA_SET_DATA_TYPE, 0);
    attr_u32(NFTA_SET_DATA_LEN, 4);
    msg_end();
    msg_begin(T(NFT_MSG_NEWSETELEM), NLM_F_ACK | NLM_F_CREATE, NFPROTO_INET);
    attr_str(NFTA_SET_ELEM_LIST_TABLE, "t1");
    attr_str(NFTA_SET_ELEM_LIST_SET, "ports");
    size_t elems = nest_begin(NFTA_SET_ELEM_LIST_ELEMENTS);
    for (int i = 0; i < 3; i++) {
        size_t el = nest_begin(NFTA_LIST_ELEM);
        if (i < 2) {
            uint16_t port = htons(22 + i);
            size_t k = nest_begin(NFTA_SET_ELEM_KEY);
            attr(NFTA_DATA_VALUE, &port, 2);
            nest_end(k);
        } else {
            attr_u32(NFTA_SET_ELEM_FLAGS, 2);                 /* NFT_SET_ELEM_CATCHALL */
        }
        uint32_t mark = htonl(100 + i);
        size_t dv = nest_begin(NFTA_SET_ELEM_DATA);
        attr(NFTA_DATA_VALUE, &mark, 4);
        nest_end(dv);
        nest_end(el);
    }
    nest_end(elems);
    msg_end();
    msg_begin(T(NFT_MSG_NEWSETELEM), NLM_F_ACK | NLM_F_CREATE, NFPROTO_INET);  /* bad key */
    attr_str(NFTA_SET_ELEM_LIST_TABLE, "t1");
    attr_str(NFTA_SET_ELEM_LIST_SET, "ports");
    elems = nest_begin(NFTA_SET_ELEM_LIST_ELEMENTS);
    size_t el = nest_begin(NFTA_LIST_ELEM);
    uint32_t wide = 1;
    size_t k = nest_begin(NFTA_SET_ELEM_KEY);
    attr(NFTA_DATA_VALUE, &wide, 4);
    nest_end(k);
    nest_end(el);
    nest_end(elems);
    msg_end();
    batch_end();
    send_and_print(4);
    batch_begin();
    msg_begin(T(NFT_MSG_NEWSET), NLM_F_ACK | NLM_F_CREATE, NFPROTO_INET);
    attr_str(NFTA_SET_TABLE, "t1");
    attr_str(NFTA_SET_NAME, "ports");
    attr_u32(NFTA_SET_KEY_LEN, 2);
    attr_u32(NFTA_SET_ID, 7);
    attr_u32(NFTA_SET_FLAGS, NFT_SET_MAP);
    attr_u32(NFTA_SET_DATA_TYPE, 0);
    attr_u32(NFTA_SET_DATA_LEN, 4);
    msg_end();
    msg_begin(T(NFT_MSG_NEWSETELEM), NLM_F_ACK | NLM_F_CREATE, NFPROTO_INET);
    attr_str(NFTA_SET_ELEM_LIST_TABLE, "t1");
    attr_str(NFTA_SET_ELEM_LIST_SET, "ports");
    elems = nest_begin(NFTA_SET_ELEM_LIST_ELEMENTS);
    for (int i = 0; i < 2; i++) {
        el = nest_begin(NFTA_LIST_ELEM);
        uint16_t port = htons(22 + i);
        k = nest_begin(NFTA_SET_ELEM_KEY);
        attr(NFTA_DATA_VALUE, &port, 2);
        nest_end(k);
        uint32_t mark = htonl(100 + i);
        size_t dv = nest_begin(NFTA_SET_ELEM_DATA);
        attr(NFTA_DATA_VALUE, &mark, 4);
        nest_end(dv);
        nest_end(el);
    }
    nest_end(elems);
    msg_end();
    static const struct one_expr lookups[] = {
        {"lookup", {NFTA_LOOKUP_SREG, NFT_REG_1, NFTA_LOOKUP_DREG, NFT_REG_2}},  /* no set */
    };
    rule_with(add_u32s, &lookups[0]);
    batch_end();
    send_and_print(4);
    batch_begin();                                   /* the same without the bad rule */
    msg_begin(T(NFT_MSG_NEWSET), NLM_F_ACK | NLM_F_CREATE, NFPROTO_INET);
    attr_str(NFTA_SET_TABLE, "t1");
    attr_str(NFTA_SET_NAME, "ports");
    attr_u32(NFTA_SET_KEY_LEN, 2);
    attr_u32(NFTA_SET_ID, 7);
    attr_u32(NFTA_SET_FLAGS, NFT_SET_MAP);
    attr_u32(NFTA_SET_DATA_TYPE, 0);
    attr_u32(NFTA_SET_DATA_LEN, 4);
    msg_end();
    msg_begin(T(NFT_MSG_NEWSETELEM), NLM_F_ACK | NLM_F_CREATE, NFPROTO_INET);
    attr_str(NFTA_SET_ELEM_LIST_TABLE, "t1");
    attr_str(NFTA_SET_ELEM_LIST_SET, "ports");
    elems = nest_begin(NFTA_SET_ELEM_LIST_ELEMENTS);
    for (int i = 0; i < 2; i++) {
        el = nest_begin(NFTA_LIST_ELEM);
        uint16_t port = htons(22 + i);
        k = nest_begin(NFTA_SET_ELEM_KEY);
        attr(NFTA_DATA_VALUE, &port, 2);
        nest_end(k);
        uint32_t mark = htonl(100 + i);
        size_t dv = nest_begin(NFTA_SET_ELEM_DATA);
        attr(NFTA_DATA_VALUE, &mark, 4);
        nest_end(dv);
        nest_end(el);
    }
    el = nest_begin(NFTA_LIST_ELEM);
    attr_u32(NFTA_SET_ELEM_FLAGS, 2);                   /* NFT_SET_ELEM_CATCHALL */
    uint32_t other = htonl(7);
    size_t dv2 = nest_begin(NFTA_SET_ELEM_DATA);
    attr(NFTA_DATA_VALUE, &other, 4);
    nest_end(dv2);
    nest_end(el);
    nest_end(elems);
    msg_end();
    batch_end();
    send_and_print(4);
    reqlen = 0;
    msg_begin(T(NFT_MSG_GETSET), NLM_F_DUMP, NFPROTO_INET);
    msg_end();
    send_and_print(1);
    reqlen = 0;
    msg_begin(T(NFT_MSG_GETSETELEM), NLM_F_DUMP, NFPROTO_INET);
    attr_str(NFTA_SET_ELEM_LIST_TABLE, "t1");
    attr_str(NFTA_SET_ELEM_LIST_SET, "ports");
    msg_end();
    send_and_print(1);
    batch_begin();
    msg_begin(T(NFT_MSG_DELSETELEM), NLM_F_ACK, NFPROTO_INET);
    attr_str(NFTA_SET_ELEM_LIST_TABLE, "t1");
    attr_str(NFTA_SET_ELEM_LIST_SET, "ports");
    elems = nest_begin(NFTA_SET_ELEM_LIST_ELEMENTS);
    el = nest_begin(NFTA_LIST_ELEM);
    uint16_t gone = htons(99);
    k = nest_begin(NFTA_SET_ELEM_KEY);
    attr(NFTA_DATA_VALUE, &gone, 2);
    nest_end(k);
    nest_end(el);
    nest_end(elems);
    msg_end();
    batch_end();
    send_and_print(2);

    printf("delete\n");
    batch_begin();
    msg_begin(T(NFT_MSG_DELRULE), NLM_F_ACK, NFPROTO_INET);  /* every rule of input */
    attr_str(NFTA_RULE_TABLE, "t1");
    attr_str(NFTA_RULE_CHAIN, "input");
    msg_end();
    msg_begin(T(NFT_MSG_DELCHAIN), NLM_F_ACK, NFPROTO_INET); /* now unused */
    attr_str(NFTA_CHAIN_TABLE, "t1");
    attr_str(NFTA_CHAIN_NAME, "c2");
    msg_end();
    msg_begin(T(27), NLM_F_ACK, NFPROTO_INET);  /* NFT_MSG_DESTROYCHAIN */
    attr_str(NFTA_CHAIN_TABLE, "t1");
    attr_str(NFTA_CHAIN_NAME, "gone");
    msg_end();
    new_table("t3", NFPROTO_IPV6, 0);
    batch_end();
    send_and_print(6);
    get(NFT_MSG_GETCHAIN, NFPROTO_INET, NLM_F_DUMP, NULL, NULL);
    send_and_print(1);
    batch_begin();
    msg_begin(T(NFT_MSG_DELTABLE), NLM_F_ACK, NFPROTO_UNSPEC);  /* flush everything */
    msg_end();
    batch_end();
    send_and_print(3);
    get(NFT_MSG_GETTABLE, NFPROTO_UNSPEC, NLM_F_DUMP, NULL, NULL);
    send_and_print(1);

    printf("outside a batch\n");
    reqlen = 0;
    new_table("t4", NFPROTO_INET, 0);
    send_and_print(1);
    ok();
    return 0;
}
