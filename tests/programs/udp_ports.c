/* net.ipv4.ip_local_port_range written through /proc/sys, then UDP's ephemeral ports
 * exhausted: bind(port 0) ends with EADDRINUSE, connect with EAGAIN, once every port of the
 * range is held.  Run as root; natively only in a network namespace of its own (the range
 * is the namespace's).  Prints the counts and "ok". */
#define _GNU_SOURCE
#include "check.h"
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>

#define RANGE "/proc/sys/net/ipv4/ip_local_port_range"

static int fill(int use_connect)
{
    struct sockaddr_in lo = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int rx = socket(AF_INET, SOCK_DGRAM, 0), n = 0, fds[200];
    struct sockaddr_in peer = lo;
    peer.sin_port = htons(5000);
    CHECK(rx >= 0 && bind(rx, (struct sockaddr *)&peer, sizeof(peer)) == 0);
    for (;;) {
        int s = socket(AF_INET, SOCK_DGRAM, 0);
        CHECK(s >= 0 && n < 200);
        int r = use_connect ? connect(s, (struct sockaddr *)&peer, sizeof(peer))
                            : bind(s, (struct sockaddr *)&lo, sizeof(lo));
        if (r < 0) {
            printf("%s: %d sockets, then %s\n", use_connect ? "connect" : "bind", n,
                   errno == EAGAIN ? "EAGAIN" : errno == EADDRINUSE ? "EADDRINUSE"
                                                                    : strerror(errno));
            close(s);
            break;
        }
        fds[n++] = s;
    }
    for (int i = 0; i < n; i++)
        close(fds[i]);
    close(rx);
    return n;
}

int main(void)
{
    int fd = open(RANGE, O_WRONLY | O_TRUNC);
    CHECK(fd >= 0);
    CHECK(write(fd, "40000 40050", 11) == 11);
    close(fd);
    char buf[64] = {0};
    fd = open(RANGE, O_RDONLY);
    CHECK(read(fd, buf, sizeof(buf) - 1) > 0);
    close(fd);
    printf("range now: %s", buf);
    fd = open(RANGE, O_WRONLY);
    CHECK_ERR(write(fd, "50 40", 5), EINVAL);
    close(fd);
    fill(0);
    fill(1);
    ok();
    return 0;
}
