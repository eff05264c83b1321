/* /proc/net/snmp and /proc/net/netstat in a fresh network namespace (lo brought up
 * with RTM_NEWLINK): the rows and field names of snmp, every netstat name line
 * matched by a value line of the same length, and the UDP counters moving when a
 * datagram goes to a port nobody listens on and to one somebody does.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sched.h>
#include <stdint.h>
#include <sys/socket.h>

#include "check.h"

static char *slurp(const char *path)
{
    static char buf[65536];
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

/* The value of field `name` in row `row` ("Udp") of an snmp-style file. */
static long field(const char *text, const char *row, const char *name)
{
    char prefix[32];
    snprintf(prefix, sizeof(prefix), "%s: ", row);
    const char *names = strstr(text, prefix);
    CHECK(names != NULL);
    const char *values = strstr(names + 1, prefix);
    CHECK(values != NULL);
    names += strlen(prefix);
    values += strlen(prefix);
    size_t want = strlen(name);
    for (;;) {
        const char *end = strpbrk(names, " \n");
        CHECK(end != NULL);
        if ((size_t)(end - names) == want && strncmp(names, name, want) == 0)
            return strtol(values, NULL, 10);
        CHECK(*end == ' ');
        names = end + 1;
        values = strchr(values, ' ');
        CHECK(values != NULL);
        values++;
    }
}

static void lo_up(void)
{
    int fd = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
    CHECK(fd >= 0);
    struct {
        struct nlmsghdr h;
        struct ifinfomsg i;
    } r = {{sizeof(r), RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, 1, 0}, {0}};
    r.i.ifi_index = if_nametoindex("lo");
    r.i.ifi_flags = r.i.ifi_change = IFF_UP;
    CHECK(send(fd, &r, sizeof(r), 0) == sizeof(r));
    char buf[256];
    CHECK(recv(fd, buf, sizeof(buf), 0) > 0);
    close(fd);
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    CHECK(unshare(CLONE_NEWNET) == 0);
    lo_up();

    char *snmp = slurp("/proc/net/snmp");
    printf("snmp rows:\n");
    for (char *line = snmp; *line;) {
        char *nl = strchr(line, '\n');
        CHECK(nl != NULL);
        if (line[0] != 'I' || strncmp(line, "IcmpMsg", 7) != 0) {
            /* Name lines only (every other line); IcmpMsg appears once used. */
            if (!strchr(" 0123456789-", line[strcspn(line, " ") + 1]))
                printf("  %.*s\n", (int)(nl - line), line);
        }
        line = nl + 1;
    }

    char *netstat = slurp("/proc/net/netstat");
    int pairs = 0;
    for (char *line = netstat; *line;) {
        char *nl = strchr(line, '\n');
        CHECK(nl != NULL);
        char *next = strchr(nl + 1, '\n');
        CHECK(next != NULL);
        int names = 0, values = 0;
        for (char *p = line; p < nl; p++)
            names += *p == ' ';
        for (char *p = nl + 1; p < next; p++)
            values += *p == ' ';
        CHECK(names == values);
        CHECK(strncmp(line, nl + 1, strcspn(line, ":")) == 0);
        pairs++;
        line = next + 1;
    }
    long orig = field(netstat, "TcpExt", "TCPOrigDataSent");
    printf("netstat: pairs consistent, TCPOrigDataSent %ld, TCPSynRetrans %ld\n", orig,
           field(netstat, "TcpExt", "TCPSynRetrans"));

    snmp = slurp("/proc/net/snmp");
    long noports = field(snmp, "Udp", "NoPorts"), out = field(snmp, "Udp", "OutDatagrams");
    long in = field(snmp, "Udp", "InDatagrams");
    int s = socket(AF_INET, SOCK_DGRAM, 0), r = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK(s >= 0 && r >= 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(9),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(sendto(s, "x", 1, 0, (struct sockaddr *)&to, sizeof(to)) == 1);
    CHECK(bind(r, (struct sockaddr *)&to, sizeof(to)) == 0);
    CHECK(sendto(s, "y", 1, 0, (struct sockaddr *)&to, sizeof(to)) == 1);
    char c;
    CHECK(recv(r, &c, 1, 0) == 1 && c == 'y');
    snmp = slurp("/proc/net/snmp");
    printf("udp: NoPorts +%ld OutDatagrams +%ld InDatagrams +%ld\n",
           field(snmp, "Udp", "NoPorts") - noports, field(snmp, "Udp", "OutDatagrams") - out,
           field(snmp, "Udp", "InDatagrams") - in);
    printf("tcp: RtoAlgorithm %ld RtoMin %ld RtoMax %ld MaxConn %ld\n",
           field(snmp, "Tcp", "RtoAlgorithm"), field(snmp, "Tcp", "RtoMin"),
           field(snmp, "Tcp", "RtoMax"), field(snmp, "Tcp", "MaxConn"));
    ok();
    return 0;
}
