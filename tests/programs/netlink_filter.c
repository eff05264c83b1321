/* Classic BPF filters on netlink sockets (SO_ATTACH_FILTER, SO_DETACH_FILTER,
 * SO_LOCK_FILTER) in a fresh network namespace: filters that trim, that drop acks
 * but keep errors, that load past the end, that compute on the length, and the
 * errors of bad programs and of a locked filter.
 */
#define _GNU_SOURCE
#include <linux/filter.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <arpa/inet.h>
#include <sched.h>
#include <stdint.h>
#include <sys/socket.h>

#include "check.h"

static int fd;

static void attach(struct sock_filter *insns, int n)
{
    struct sock_fprog prog = {.len = n, .filter = insns};
    CHECK(setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) == 0);
}

/* Sends an NLMSG_NOOP asking for an ack (a 36-byte answer whose error is 0) and a
 * route lookup nothing answers (a 56-byte ENETUNREACH error), and prints the
 * datagrams that pass the filter. */
static void ask(const char *what)
{
    struct nlmsghdr noop = {sizeof(noop), NLMSG_NOOP, NLM_F_REQUEST | NLM_F_ACK, 7, 0};
    CHECK(send(fd, &noop, sizeof(noop), 0) == sizeof(noop));
    struct {
        struct nlmsghdr h;
        struct rtmsg r;
        struct rtattr a;
        uint32_t dst;
    } get = {{sizeof(get), RTM_GETROUTE, NLM_F_REQUEST, 8, 0},
             {.rtm_family = AF_INET, .rtm_dst_len = 32},
             {RTA_LENGTH(4), RTA_DST}, htonl(0x0a000001)};
    CHECK(send(fd, &get, sizeof(get), 0) == sizeof(get));
    printf("%s:", what);
    char buf[4096];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
        struct nlmsghdr *h = (void *)buf;
        printf(" [%zd bytes, type %d", n, n >= 6 ? h->nlmsg_type : -1);
        if (n >= 20)
            printf(", error %d", ((struct nlmsgerr *)NLMSG_DATA(h))->error);
        printf("]");
    }
    CHECK(errno == EAGAIN);
    printf("\n");
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    CHECK(unshare(CLONE_NEWNET) == 0);
    fd = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
    CHECK(fd >= 0);

    int on = 1;
    CHECK_ERR(setsockopt(fd, SOL_SOCKET, SO_DETACH_FILTER, &on, sizeof(on)), ENOENT);

    struct sock_filter trim[] = {BPF_STMT(BPF_RET | BPF_K, 12)};
    ask("unfiltered");
    attach(trim, 1);
    ask("trimmed to 12");

    /* ld [16] is nlmsgerr.error, read in network order: 0 for the ack. */
    struct sock_filter no_acks[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 16),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, 0),
        BPF_STMT(BPF_RET | BPF_K, 0xFFFFFFFF),
    };
    attach(no_acks, 4);
    ask("without acks");

    struct sock_filter far[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 100000),
        BPF_STMT(BPF_RET | BPF_K, 0xFFFFFFFF),
    };
    attach(far, 2);
    ask("load past the end");

    /* Keeps what is at most 40 bytes long, trimmed to its length minus 4. */
    struct sock_filter len[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_LEN, 0),
        BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, 40, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, 0),
        BPF_STMT(BPF_ALU | BPF_SUB | BPF_K, 4),
        BPF_STMT(BPF_RET | BPF_A, 0),
    };
    attach(len, 5);
    ask("at most 40, minus 4");

    CHECK(setsockopt(fd, SOL_SOCKET, SO_DETACH_FILTER, &on, sizeof(on)) == 0);
    ask("detached");

    printf("bad programs\n");
    struct sock_filter jump_out[] = {BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 5, 0),
                                     BPF_STMT(BPF_RET | BPF_K, 0)};
    struct sock_fprog prog = {.len = 2, .filter = jump_out};
    CHECK_ERR(setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)), EINVAL);
    struct sock_filter no_ret[] = {BPF_STMT(BPF_LD | BPF_IMM, 1)};
    prog = (struct sock_fprog){.len = 1, .filter = no_ret};
    CHECK_ERR(setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)), EINVAL);
    struct sock_filter div0[] = {BPF_STMT(BPF_ALU | BPF_DIV | BPF_K, 0),
                                 BPF_STMT(BPF_RET | BPF_K, 0)};
    prog = (struct sock_fprog){.len = 2, .filter = div0};
    CHECK_ERR(setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)), EINVAL);
    prog = (struct sock_fprog){.len = 0, .filter = trim};
    CHECK_ERR(setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)), EINVAL);
    prog = (struct sock_fprog){.len = 1, .filter = (void *)8};
    CHECK_ERR(setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)), EFAULT);

    printf("locked\n");
    attach(trim, 1);
    CHECK(setsockopt(fd, SOL_SOCKET, SO_LOCK_FILTER, &on, sizeof(on)) == 0);
    CHECK_ERR(setsockopt(fd, SOL_SOCKET, SO_DETACH_FILTER, &on, sizeof(on)), EPERM);
    prog = (struct sock_fprog){.len = 1, .filter = trim};
    CHECK_ERR(setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)), EPERM);
    int off = 0;
    CHECK_ERR(setsockopt(fd, SOL_SOCKET, SO_LOCK_FILTER, &off, sizeof(off)), EPERM);
    ask("still trimmed");
    ok();
    return 0;
}
