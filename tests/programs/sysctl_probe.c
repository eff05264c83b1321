/* What the net.* sysctls a sandbox models change, seen by a program: bind(2) below
 * net.ipv4.ip_unprivileged_port_start as non-root, ping sockets against
 * net.ipv4.ping_group_range, the ephemeral port against ip_local_port_range, and
 * /proc/sys's values.  Prints one line per probe. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void show(const char *name) {
    char path[256], buf[128] = "";
    snprintf(path, sizeof path, "/proc/sys/%s", name);
    FILE *f = fopen(path, "r");
    if (!f) {
        printf("%s: %s\n", name, strerror(errno));
        return;
    }
    if (!fgets(buf, sizeof buf, f)) buf[0] = 0;
    fclose(f);
    buf[strcspn(buf, "\n")] = 0;
    printf("%s: %s\n", name, buf);
}

static const char *try_bind(int port) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int r = bind(s, (struct sockaddr *)&a, sizeof a);
    const char *out = r == 0 ? "ok" : strerror(errno);
    close(s);
    return out;
}

int main(void) {
    printf("uid %d\n", (int)getuid());
    show("net/ipv4/ip_unprivileged_port_start");
    show("net/ipv4/ping_group_range");
    show("net/ipv4/ip_local_port_range");
    show("net/core/somaxconn");
    show("kernel/domainname");
    printf("bind 80: %s\n", try_bind(80));
    printf("bind 79: %s\n", try_bind(79));
    int p = socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
    printf("ping socket: %s\n", p >= 0 ? "ok" : strerror(errno));
    if (p >= 0) close(p);
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    bind(u, (struct sockaddr *)&a, sizeof a);
    getsockname(u, (struct sockaddr *)&a, &len);
    int port = ntohs(a.sin_port);
    printf("ephemeral in 40000-40009: %s\n", port >= 40000 && port <= 40009 ? "yes" : "no");
    return 0;
}
