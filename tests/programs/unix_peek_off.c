/* SO_PEEK_OFF on AF_UNIX sockets, printed for comparison with Linux: the
 * default (-1, off), MSG_PEEK reading from the offset and moving it forward,
 * ordinary reads moving it back, streams peeking across queued writes,
 * datagrams (and seqpacket) skipping whole datagrams and peeking inside one,
 * MSG_TRUNC lengths, and a peek past the queued data.
 * Linux: net/unix/af_unix.c (unix_set_peek_off), include/net/sock.h. */
#define _GNU_SOURCE
#include <sys/socket.h>
#include "check.h"

#ifndef SO_PEEK_OFF
#define SO_PEEK_OFF 42
#endif

static const char *tname(int type)
{
    return type == SOCK_STREAM ? "stream" : type == SOCK_DGRAM ? "dgram" : "seqpacket";
}

static int peek_off(int fd)
{
    int v = 0;
    socklen_t len = sizeof v;
    CHECK(getsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &v, &len) == 0);
    return v;
}

static void set_off(int fd, int v)
{
    CHECK(setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &v, sizeof v) == 0);
}

static void show(const char *what, int fd, int flags, size_t n)
{
    char buf[64] = {0};
    ssize_t r = recv(fd, buf, n, flags | MSG_DONTWAIT);
    if (r < 0)
        printf("  %s: -1 %s", what, strerrorname_np(errno));
    else
        printf("  %s: %zd \"%.*s\"", what, r, (int)(r < (ssize_t)n ? r : (ssize_t)n), buf);
    printf(" off %d\n", peek_off(fd));
}

static void run(int type)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, type, 0, sv) == 0);
    printf("%s default off %d\n", tname(type), peek_off(sv[0]));
    CHECK(send(sv[1], "abcdef", 6, 0) == 6);
    CHECK(send(sv[1], "ghij", 4, 0) == 4);
    CHECK(send(sv[1], "klmnopq", 7, 0) == 7);
    show("peek, off disabled", sv[0], MSG_PEEK, 3);
    set_off(sv[0], 0);
    show("peek 3", sv[0], MSG_PEEK, 3);
    show("peek 3", sv[0], MSG_PEEK, 3);
    show("peek 8", sv[0], MSG_PEEK, 8);
    show("peek trunc 2", sv[0], MSG_PEEK | MSG_TRUNC, 2);
    show("read 2", sv[0], 0, 2);
    show("peek 4", sv[0], MSG_PEEK, 4);
    set_off(sv[0], 7);
    show("peek 5 at 7", sv[0], MSG_PEEK, 5);
    set_off(sv[0], 100);
    show("peek past the end", sv[0], MSG_PEEK, 5);
    set_off(sv[0], 1);
    show("read 64", sv[0], 0, 64);
    show("peek 64", sv[0], MSG_PEEK, 64);
    show("read 64", sv[0], 0, 64);
    set_off(sv[0], -1);
    printf("  set -1: off %d\n", peek_off(sv[0]));
    int v = -5;
    int r = setsockopt(sv[0], SOL_SOCKET, SO_PEEK_OFF, &v, sizeof v);
    printf("  set -5: %d %s off %d\n", r, r ? strerrorname_np(errno) : "", peek_off(sv[0]));
    close(sv[0]);
    close(sv[1]);
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    run(SOCK_STREAM);
    run(SOCK_DGRAM);
    run(SOCK_SEQPACKET);
    ok();
    return 0;
}
