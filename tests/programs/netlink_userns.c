/* `unshare -Urn` done by hand by an unprivileged user: a process of uid 65534 makes a
 * user and a network namespace, maps itself to root there and execs itself.  After the
 * exec it is root of the namespace (full capabilities: root is uid 0 of the
 * credentials' own namespace), so NETLINK_ROUTE lets it bring lo up and add an
 * address, which it can then bind.  Without the namespaces the same requests are
 * refused with EPERM.  Prints every answer so the output can be compared with Linux's.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <net/if.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "check.h"

static int request(int type, const void *body, int len)
{
    struct {
        struct nlmsghdr h;
        char body[64];
    } q = {0};
    char buf[4096];
    int fd = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
    CHECK(fd >= 0);
    q.h.nlmsg_len = NLMSG_LENGTH(len);
    q.h.nlmsg_type = type;
    q.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
    q.h.nlmsg_seq = 1;
    memcpy(q.body, body, len);
    CHECK(send(fd, &q, q.h.nlmsg_len, 0) == (ssize_t)q.h.nlmsg_len);
    int n = recv(fd, buf, sizeof(buf), 0);
    CHECK(n > 0);
    struct nlmsghdr *h = (void *)buf;
    CHECK(h->nlmsg_type == NLMSG_ERROR);
    close(fd);
    return ((struct nlmsgerr *)NLMSG_DATA(h))->error;
}

static void try_changes(const char *who)
{
    struct ifinfomsg up = {.ifi_index = if_nametoindex("lo"), .ifi_flags = IFF_UP,
                           .ifi_change = IFF_UP};
    struct {
        struct ifaddrmsg a;
        struct rtattr ra;
        unsigned char ip[4];
    } addr = {{AF_INET, 8, 0, 0, if_nametoindex("lo")}, {RTA_LENGTH(4), IFA_LOCAL},
              {10, 0, 0, 1}};
    printf("%s: lo up %d\n", who, request(RTM_NEWLINK, &up, sizeof(up)));
    printf("%s: add 10.0.0.1/8 %d\n", who, request(RTM_NEWADDR, &addr, sizeof(addr)));
}

static void write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY);
    CHECK(fd >= 0);
    CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1) {                           /* after the exec, inside */
        char line[256];
        FILE *f = fopen("/proc/self/status", "r");
        CHECK(f != NULL);
        while (fgets(line, sizeof(line), f))
            if (!strncmp(line, "CapEff:", 7))
                printf("inside: uid %d, %s", getuid(), line);
        fclose(f);
        try_changes("inside");
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x0a000005)};
        int s = socket(AF_INET, SOCK_DGRAM, 0);
        printf("inside: bind 10.0.0.5 %d\n", bind(s, (struct sockaddr *)&a, sizeof(a)));
        return 0;
    }
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        CHECK(setgroups(0, NULL) == 0);
        CHECK(setresgid(65534, 65534, 65534) == 0 && setresuid(65534, 65534, 65534) == 0);
        CHECK(prctl(PR_SET_DUMPABLE, 1) == 0);     /* so /proc/self is ours to write */
        try_changes("unprivileged");
        CHECK(unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0);
        write_file("/proc/self/setgroups", "deny");
        write_file("/proc/self/uid_map", "0 65534 1");
        write_file("/proc/self/gid_map", "0 65534 1");
        execl("/proc/self/exe", argv[0], "inner", (char *)NULL);
        _exit(127);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid);
    printf("child: %d\n", WEXITSTATUS(st));
    printf("ok\n");
    return 0;
}
