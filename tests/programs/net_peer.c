/* One end of the network tests over a veth pair (tests/network/test_nic.py).
 *
 *   net_peer echo PORT COUNT          UDP echo server on the dual-stack wildcard: echoes
 *                                     COUNT datagrams, prints "echoed N BYTES" for each
 *   net_peer ask IP PORT SIZE         sends a SIZE-byte datagram (a pattern) to IP:PORT,
 *                                     retrying each second for 30 s until the same bytes
 *                                     come back; prints "reply SIZE ok"
 *   net_peer refused IP PORT          connected socket to a closed port: the ICMP error
 *                                     makes the next recv fail; prints "refused"
 *   net_peer ping IP                  three ICMP echoes through a ping socket
 *                                     (SOCK_DGRAM, IPPROTO_ICMP/ICMPV6); prints "pong N"
 *   net_peer tcp IP PORT              connect(2) to a closed TCP port: prints the errno name
 *   net_peer tcpecho PORT COUNT       TCP server on the dual-stack wildcard: for each of COUNT
 *                                     connections, echoes everything until EOF, then closes;
 *                                     prints "served N BYTES"
 *   net_peer tcpask IP PORT SIZE      connects (retrying while refused, for 30 s), sends SIZE
 *                                     bytes of a pattern, shuts down writing, reads to EOF and
 *                                     compares; prints "tcp SIZE ok"
 *
 * IP is IPv4 or IPv6 text.  Exits 0 on success, 1 with a message otherwise.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/ip_icmp.h>
#include <netinet/icmp6.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static void die(const char *what) {
    printf("FAIL %s: %s\n", what, strerror(errno));
    exit(1);
}

static socklen_t parse(const char *ip, int port, struct sockaddr_storage *ss) {
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        return sizeof(*s4);
    }
    if (inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        return sizeof(*s6);
    }
    printf("FAIL bad address %s\n", ip);
    exit(1);
}

static void timeout(int fd, int sec) {
    struct timeval tv = {sec, 0};
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0) die("SO_RCVTIMEO");
}

static int echo(int port, int count) {
    int fd = socket(AF_INET6, SOCK_DGRAM, 0);
    if (fd < 0) die("socket");
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0) die("bind");
    printf("listening %d\n", port);
    fflush(stdout);
    static char buf[65536];
    for (int i = 0; i < count; i++) {
        struct sockaddr_storage from;
        socklen_t fl = sizeof(from);
        ssize_t n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
        if (n < 0) die("recvfrom");
        if (sendto(fd, buf, n, 0, (struct sockaddr *)&from, fl) != n) die("sendto");
        printf("echoed %d %zd\n", i + 1, n);
        fflush(stdout);
    }
    return 0;
}

static int ask(const char *ip, int port, int size) {
    struct sockaddr_storage to;
    socklen_t tl = parse(ip, port, &to);
    int fd = socket(to.ss_family, SOCK_DGRAM, 0);
    if (fd < 0) die("socket");
    timeout(fd, 1);
    char *out = malloc(size), *in = malloc(size + 1);
    for (int i = 0; i < size; i++) out[i] = (char)(i * 7 + 3);
    for (int tries = 0; tries < 30; tries++) {
        if (sendto(fd, out, size, 0, (struct sockaddr *)&to, tl) != size) die("sendto");
        ssize_t n = recv(fd, in, size + 1, 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) continue;
        if (n < 0) die("recv");
        if (n != size || memcmp(in, out, size) != 0) {
            printf("FAIL reply of %zd bytes differs\n", n);
            return 1;
        }
        printf("reply %d ok\n", size);
        return 0;
    }
    printf("FAIL no reply\n");
    return 1;
}

static int refused(const char *ip, int port) {
    struct sockaddr_storage to;
    socklen_t tl = parse(ip, port, &to);
    int fd = socket(to.ss_family, SOCK_DGRAM, 0);
    if (fd < 0) die("socket");
    if (connect(fd, (struct sockaddr *)&to, tl) < 0) die("connect");
    timeout(fd, 1);
    char c = 'x';
    for (int tries = 0; tries < 20; tries++) {
        if (send(fd, &c, 1, 0) < 0) {
            if (errno == ECONNREFUSED) break;
            die("send");
        }
        if (recv(fd, &c, 1, 0) < 0 && errno == ECONNREFUSED) break;
        if (tries == 19) {
            printf("FAIL no ECONNREFUSED\n");
            return 1;
        }
    }
    printf("refused\n");
    return 0;
}

static int ping(const char *ip) {
    struct sockaddr_storage to;
    socklen_t tl = parse(ip, 0, &to);
    int v6 = to.ss_family == AF_INET6;
    int fd = socket(to.ss_family, SOCK_DGRAM, v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP);
    if (fd < 0) die("socket");
    timeout(fd, 1);
    int got = 0;
    for (int seq = 1; seq <= 30 && got < 3; seq++) {
        unsigned char msg[64] = {0};
        msg[0] = v6 ? ICMP6_ECHO_REQUEST : ICMP_ECHO;
        msg[6] = 0;
        msg[7] = (unsigned char)seq;
        memcpy(msg + 8, "pyvisor-ping", 12);
        if (sendto(fd, msg, sizeof(msg), 0, (struct sockaddr *)&to, tl) < 0) die("sendto");
        unsigned char rep[128];
        ssize_t n = recv(fd, rep, sizeof(rep), 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) continue;
        if (n < 0) die("recv");
        if (n != sizeof(msg) || rep[0] != (v6 ? ICMP6_ECHO_REPLY : ICMP_ECHOREPLY) ||
            memcmp(rep + 8, "pyvisor-ping", 12) != 0) {
            printf("FAIL bad reply (%zd bytes, type %d)\n", n, rep[0]);
            return 1;
        }
        got++;
        printf("pong %d\n", got);
    }
    return got == 3 ? 0 : 1;
}

static int tcp(const char *ip, int port) {
    struct sockaddr_storage to;
    socklen_t tl = parse(ip, port, &to);
    int fd = socket(to.ss_family, SOCK_STREAM, 0);
    if (fd < 0) die("socket");
    if (connect(fd, (struct sockaddr *)&to, tl) == 0) {
        printf("connected\n");
        return 0;
    }
    printf("%s\n", errno == ECONNREFUSED ? "ECONNREFUSED" : strerror(errno));
    return 0;
}

static int tcpecho(int port, int count) {
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0) die("bind");
    if (listen(fd, 8) < 0) die("listen");
    printf("listening %d\n", port);
    static char buf[65536];
    for (int i = 0; i < count; i++) {
        int c = accept(fd, NULL, NULL);
        if (c < 0) die("accept");
        long total = 0;
        for (;;) {
            ssize_t n = read(c, buf, sizeof(buf));
            if (n < 0) die("read");
            if (n == 0) break;
            for (ssize_t off = 0; off < n;) {
                ssize_t m = write(c, buf + off, n - off);
                if (m < 0) die("write");
                off += m;
            }
            total += n;
        }
        close(c);
        printf("served %d %ld\n", i + 1, total);
    }
    return 0;
}

static int tcpask(const char *ip, int port, long size) {
    struct sockaddr_storage to;
    socklen_t tl = parse(ip, port, &to);
    int fd = -1;
    for (int tries = 0; tries < 300; tries++) {
        fd = socket(to.ss_family, SOCK_STREAM, 0);
        if (fd < 0) die("socket");
        if (connect(fd, (struct sockaddr *)&to, tl) == 0) break;
        if (errno != ECONNREFUSED && errno != EHOSTUNREACH) die("connect");
        close(fd);
        fd = -1;
        usleep(100000);
    }
    if (fd < 0) {
        printf("FAIL never connected\n");
        return 1;
    }
    char *out = malloc(size), *in = malloc(size);
    for (long i = 0; i < size; i++) out[i] = (char)(i * 13 + 5);
    /* Write and read interleaved (non-blocking writes), so neither side's buffers fill up. */
    long sent = 0, got = 0;
    while (got < size) {
        fd_set r, w;
        FD_ZERO(&r);
        FD_ZERO(&w);
        FD_SET(fd, &r);
        if (sent < size) FD_SET(fd, &w);
        struct timeval tv = {30, 0};
        int k = select(fd + 1, &r, &w, NULL, &tv);
        if (k < 0) die("select");
        if (k == 0) {
            printf("FAIL stalled at sent %ld got %ld\n", sent, got);
            return 1;
        }
        if (FD_ISSET(fd, &w)) {
            ssize_t m = send(fd, out + sent, size - sent > 65536 ? 65536 : size - sent,
                             MSG_DONTWAIT);
            if (m < 0 && errno != EAGAIN) die("send");
            if (m > 0) sent += m;
            if (sent == size) shutdown(fd, SHUT_WR);
        }
        if (FD_ISSET(fd, &r)) {
            ssize_t n = recv(fd, in + got, size - got, MSG_DONTWAIT);
            if (n < 0 && errno != EAGAIN) die("recv");
            if (n == 0) break;
            if (n > 0) got += n;
        }
    }
    if (got != size || memcmp(in, out, size) != 0) {
        printf("FAIL got %ld of %ld bytes, or different ones\n", got, size);
        return 1;
    }
    char c;
    if (recv(fd, &c, 1, 0) != 0) {
        printf("FAIL no EOF after the echo\n");
        return 1;
    }
    printf("tcp %ld ok\n", size);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 4 && !strcmp(argv[1], "echo")) return echo(atoi(argv[2]), atoi(argv[3]));
    if (argc == 5 && !strcmp(argv[1], "ask")) return ask(argv[2], atoi(argv[3]), atoi(argv[4]));
    if (argc == 4 && !strcmp(argv[1], "refused")) return refused(argv[2], atoi(argv[3]));
    if (argc == 3 && !strcmp(argv[1], "ping")) return ping(argv[2]);
    if (argc == 4 && !strcmp(argv[1], "tcp")) return tcp(argv[2], atoi(argv[3]));
    if (argc == 4 && !strcmp(argv[1], "tcpecho")) return tcpecho(atoi(argv[2]), atoi(argv[3]));
    if (argc == 5 && !strcmp(argv[1], "tcpask")) return tcpask(argv[2], atoi(argv[3]), atol(argv[4]));
    fprintf(stderr, "usage: net_peer echo|ask|refused|ping|tcp|tcpecho|tcpask ...\n");
    return 2;
}
