/* SO_PEERGROUPS on AF_UNIX sockets, printed for comparison with Linux: the
 * supplementary groups of the process that connected (or made the pair, or
 * listened), ENODATA without a peer, ERANGE with the length needed when the
 * buffer is too small.  Run as root (setgroups).  Linux: net/core/sock.c. */
#define _GNU_SOURCE
#include <grp.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include "check.h"

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59
#endif

static void show(const char *what, int fd, socklen_t room)
{
    gid_t g[16];
    socklen_t len = room;
    int r = getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &len);
    printf("%s: ", what);
    if (r < 0) {
        printf("-1 %s len %u\n", strerrorname_np(errno), (unsigned)len);
        return;
    }
    printf("len %u:", (unsigned)len);
    for (unsigned i = 0; i < len / sizeof(gid_t); i++)
        printf(" %u", (unsigned)g[i]);
    printf("\n");
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    gid_t mine[] = {7, 300, 4000};
    CHECK(setgroups(3, mine) == 0);
    int lone = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(lone >= 0);
    show("unconnected", lone, sizeof(gid_t) * 16);

    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    show("socketpair", sv[0], sizeof(gid_t) * 16);
    show("socketpair, room for 2", sv[0], sizeof(gid_t) * 2);
    show("socketpair, no room", sv[0], 0);

    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int n = snprintf(sa.sun_path + 1, sizeof sa.sun_path - 1, "groups-%d", (int)getpid());
    socklen_t alen = offsetof(struct sockaddr_un, sun_path) + 1 + n;
    int lst = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(lst >= 0 && bind(lst, (struct sockaddr *)&sa, alen) == 0 && listen(lst, 2) == 0);
    show("listener", lst, sizeof(gid_t) * 16);
    int done[2];
    CHECK(pipe(done) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        gid_t theirs[] = {55};
        close(done[0]);
        CHECK(setgroups(1, theirs) == 0);
        int c = socket(AF_UNIX, SOCK_STREAM, 0);
        CHECK(c >= 0 && connect(c, (struct sockaddr *)&sa, alen) == 0);
        show("client sees the listener's", c, sizeof(gid_t) * 16);
        _exit(0);       /* the peer's groups outlive it */
    }
    close(done[1]);
    char b;
    CHECK(read(done[0], &b, 1) == 0);   /* the child printed and exited */
    CHECK(waitpid(pid, NULL, 0) == pid);
    int acc = accept(lst, NULL, NULL);
    CHECK(acc >= 0);
    show("accepted sees the client's", acc, sizeof(gid_t) * 16);
    ok();
    return 0;
}
