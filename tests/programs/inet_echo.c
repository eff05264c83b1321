/* TCP or UDP echo over loopback, IPv4 or IPv6: a forked server echoes what the
 * client sends.  Usage: inet_echo tcp4|tcp6|udp4|udp6.  Prints the exchange. */
#define _GNU_SOURCE
#include "check.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

static socklen_t addr_of(int v6, int port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    if (v6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        a->sin6_addr = in6addr_loopback;
        return sizeof(*a);
    }
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sizeof(*a);
}

int main(int argc, char **argv)
{
    CHECK(argc == 2);
    int tcp = argv[1][0] == 't', v6 = argv[1][3] == '6';
    int fam = v6 ? AF_INET6 : AF_INET;
    int srv = socket(fam, tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
    CHECK(srv >= 0);
    struct sockaddr_storage ss;
    socklen_t len = addr_of(v6, 0, &ss);
    CHECK(bind(srv, (struct sockaddr *)&ss, len) == 0);
    CHECK(getsockname(srv, (struct sockaddr *)&ss, &len) == 0);
    int port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (tcp)
        CHECK(listen(srv, 8) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        char buf[4096];
        if (tcp) {
            int c = accept(srv, NULL, NULL);
            CHECK(c >= 0);
            ssize_t n;
            while ((n = recv(c, buf, sizeof(buf), 0)) > 0)
                CHECK(send(c, buf, n, 0) == n);
            CHECK(n == 0);
            close(c);
        } else {
            for (;;) {
                struct sockaddr_storage from;
                socklen_t fl = sizeof(from);
                ssize_t n = recvfrom(srv, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
                CHECK(n >= 0);
                CHECK(sendto(srv, buf, n, 0, (struct sockaddr *)&from, fl) == n);
                if (n == 4 && memcmp(buf, "quit", 4) == 0)
                    break;
            }
        }
        _exit(0);
    }
    close(srv);
    int c = socket(fam, tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
    len = addr_of(v6, port, &ss);
    CHECK(connect(c, (struct sockaddr *)&ss, len) == 0);
    const char *lines[] = {"hello", "over loopback", "the third line", "quit"};
    for (int i = 0; i < 4; i++) {
        size_t n = strlen(lines[i]);
        CHECK(send(c, lines[i], n, 0) == (ssize_t)n);
        char buf[64] = {0};
        CHECK(recv(c, buf, sizeof(buf), 0) == (ssize_t)n);
        printf("%s %s: %s\n", argv[1], i == 3 ? "last" : "echo", buf);
    }
    if (tcp)
        CHECK(shutdown(c, SHUT_WR) == 0);
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    close(c);
    ok();
    return 0;
}
