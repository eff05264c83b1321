/* The legacy iptables socket options (IPT_SO_GET_INFO, IPT_SO_GET_ENTRIES,
 * IPT_SO_GET_REVISION_*, and the IPv6 ones) in a fresh network namespace: the
 * built-in tables as a freshly booted kernel has them, extension revisions and the
 * errors.  Prints what it reads so the output can be compared with Linux's.
 */
#define _GNU_SOURCE
#include <netinet/in.h>        /* before the netfilter headers */
#include <linux/netfilter_ipv4/ip_tables.h>
#include <linux/netfilter_ipv6/ip6_tables.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "check.h"

static void info(int fd, int level, const char *table)
{
    struct ipt_getinfo gi = {0};
    socklen_t len = sizeof(gi);
    snprintf(gi.name, sizeof(gi.name), "%s", table);
    if (getsockopt(fd, level, IPT_SO_GET_INFO, &gi, &len) < 0) {
        printf("%s: errno %d\n", table, errno);
        return;
    }
    printf("%s: hooks=%#x entries=%u size=%u len=%u hook_entry=", gi.name, gi.valid_hooks,
           gi.num_entries, gi.size, len);
    for (int i = 0; i < NF_INET_NUMHOOKS; i++)
        printf("%u/%u ", gi.hook_entry[i], gi.underflow[i]);
    printf("\n");

    size_t n = sizeof(struct ipt_get_entries) + gi.size;
    struct ipt_get_entries *ge = calloc(1, n);
    CHECK(ge != NULL);
    snprintf(ge->name, sizeof(ge->name), "%s", table);
    ge->size = gi.size;
    len = n;
    CHECK(getsockopt(fd, level, IPT_SO_GET_ENTRIES, ge, &len) == 0);
    CHECK(len == n);
    size_t at = level == SOL_IP ? offsetof(struct ipt_entry, target_offset)
                                : offsetof(struct ip6t_entry, target_offset);
    for (size_t off = 0; off < ge->size;) {
        char *e = (char *)ge->entrytable + off;
        uint16_t target_offset, next_offset;
        memcpy(&target_offset, e + at, 2);
        memcpy(&next_offset, e + at + 2, 2);
        struct xt_entry_target *t = (void *)(e + target_offset);
        printf("  entry at %zu: target_offset=%u next=%u target=%s size=%u", off,
               target_offset, next_offset, t->u.user.name, t->u.user.target_size);
        if (t->u.user.name[0] == 0)
            printf(" verdict=%d", ((struct xt_standard_target *)t)->verdict);
        else
            printf(" error=%s", ((struct xt_error_target *)t)->errorname);
        printf("\n");
        CHECK(next_offset > 0);
        off += next_offset;
    }
    ge->size = gi.size - 1;           /* a size the table does not have */
    len = n - 1;
    CHECK_ERR(getsockopt(fd, level, IPT_SO_GET_ENTRIES, ge, &len), EAGAIN);
    free(ge);
}

static void revision(int fd, int level, int opt, const char *name, int rev)
{
    struct xt_get_revision r = {0};
    snprintf(r.name, sizeof(r.name), "%s", name);
    r.revision = rev;
    socklen_t len = sizeof(r);
    int ret = getsockopt(fd, level, opt, &r, &len);
    printf("  %s rev %d: %d", name, rev, ret);
    if (ret < 0)
        printf(" errno %d", errno);
    printf("\n");
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    CHECK(unshare(CLONE_NEWNET) == 0);
    int fd4 = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
    int fd6 = socket(AF_INET6, SOCK_RAW, IPPROTO_RAW);
    CHECK(fd4 >= 0 && fd6 >= 0);
    const char *tables[] = {"filter", "nat", "mangle", "raw", "nosuch"};
    for (int i = 0; i < 5; i++) {
        info(fd4, SOL_IP, tables[i]);
        info(fd6, SOL_IPV6, tables[i]);
    }
    printf("revisions\n");
    revision(fd4, SOL_IP, IPT_SO_GET_REVISION_MATCH, "tcp", 0);
    revision(fd4, SOL_IP, IPT_SO_GET_REVISION_MATCH, "tcp", 1);
    revision(fd4, SOL_IP, IPT_SO_GET_REVISION_MATCH, "mark", 0);
    revision(fd4, SOL_IP, IPT_SO_GET_REVISION_MATCH, "icmp", 0);
    revision(fd4, SOL_IP, IPT_SO_GET_REVISION_MATCH, "nosuchmatch", 0);
    revision(fd4, SOL_IP, IPT_SO_GET_REVISION_TARGET, "REDIRECT", 0);
    revision(fd4, SOL_IP, IPT_SO_GET_REVISION_TARGET, "REDIRECT", 1);
    revision(fd4, SOL_IP, IPT_SO_GET_REVISION_TARGET, "CT", 0);
    revision(fd4, SOL_IP, IPT_SO_GET_REVISION_TARGET, "SNAT", 1);
    revision(fd6, SOL_IPV6, IP6T_SO_GET_REVISION_MATCH, "icmp6", 0);
    revision(fd6, SOL_IPV6, IP6T_SO_GET_REVISION_TARGET, "REDIRECT", 0);
    revision(fd6, SOL_IPV6, IP6T_SO_GET_REVISION_TARGET, "REDIRECT", 1);

    printf("errors\n");
    struct ipt_getinfo gi = {0};
    strcpy(gi.name, "filter");
    socklen_t len = sizeof(gi) - 1;
    CHECK_ERR(getsockopt(fd4, SOL_IP, IPT_SO_GET_INFO, &gi, &len), EINVAL);
    struct xt_get_revision r = {0};
    len = sizeof(r) + 1;
    CHECK_ERR(getsockopt(fd4, SOL_IP, IPT_SO_GET_REVISION_MATCH, &r, &len), EINVAL);
    struct ipt_get_entries ge = {0};
    strcpy(ge.name, "filter");
    len = sizeof(ge) - 1;
    CHECK_ERR(getsockopt(fd4, SOL_IP, IPT_SO_GET_ENTRIES, &ge, &len), EINVAL);
    len = sizeof(gi);
    CHECK_ERR(getsockopt(fd4, SOL_IP, IPT_SO_GET_INFO, (void *)8, &len), EFAULT);
    ok();
    return 0;
}
