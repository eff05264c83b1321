/* Mount propagation: MS_SHARED, MS_SLAVE, MS_PRIVATE, MS_UNBINDABLE, peer groups of
 * bind mounts, mount and unmount events reaching peers and slaves (not the other
 * way), MS_MOVE under a shared parent, and a mount namespace made afterwards
 * receiving events.  Prints the mountinfo lines under DIR with peer group ids
 * renamed in order of appearance (g1, g2, ...), so it compares with Linux.
 *
 * Usage: propagation DIR.  Run as root; natively in a mount namespace of its own
 * (unshare -m --propagation private): it mounts things.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

static char base[1024];
static int ids[64], nids;

static int rename_id(int id)
{
    for (int i = 0; i < nids; i++)
        if (ids[i] == id)
            return i + 1;
    CHECK(nids < 64);
    ids[nids++] = id;
    return nids;
}

static void show(const char *step)
{
    char line[4096];
    size_t bl = strlen(base);
    nids = 0;
    printf("%s:\n", step);
    FILE *f = fopen("/proc/self/mountinfo", "r");
    CHECK(f != NULL);
    while (fgets(line, sizeof line, f)) {
        char mp[1024];
        if (sscanf(line, "%*d %*d %*s %*s %1023s", mp) != 1 || strncmp(mp, base, bl) != 0)
            continue;
        printf("  %s", mp + bl);
        char *p = strstr(line, mp) + strlen(mp);
        p = strchr(p + 1, ' ');           /* after the mount options */
        char *end = strstr(p, " - ");
        for (char *tok = strtok(p, " "); tok && tok < end; tok = strtok(NULL, " ")) {
            int id;
            if (sscanf(tok, "shared:%d", &id) == 1)
                printf(" shared:g%d", rename_id(id));
            else if (sscanf(tok, "master:%d", &id) == 1)
                printf(" master:g%d", rename_id(id));
            else if (!strcmp(tok, "unbindable"))
                printf(" unbindable");
        }
        printf("\n");
    }
    fclose(f);
}

static const char *err(long r)
{
    return r == 0 ? "0" : strerrorname_np(errno);
}

static char *path(const char *name)
{
    static char bufs[8][1200];
    static int n;
    char *b = bufs[n++ % 8];
    snprintf(b, 1200, "%s/%s", base, name);
    return b;
}

int main(int argc, char **argv)
{
    CHECK(argc == 2);
    setvbuf(stdout, NULL, _IONBF, 0);
    snprintf(base, sizeof base, "%s", argv[1]);
    /* mountinfo polls EPOLLPRI|EPOLLERR once per change of the namespace. */
    int mi = open("/proc/self/mountinfo", O_RDONLY);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLPRI | EPOLLERR}, got;
    CHECK(mi >= 0 && ep >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, mi, &ev) == 0);
    const char *dirs[] = {"a", "b", "s", "p", "u", "x", "mv"};
    for (unsigned i = 0; i < sizeof dirs / sizeof *dirs; i++)
        CHECK(mkdir(path(dirs[i]), 0755) == 0);
    printf("mountinfo events before: %d\n", epoll_wait(ep, &got, 1, 0));
    CHECK(mount("none", path("a"), "tmpfs", 0, NULL) == 0);
    int n = epoll_wait(ep, &got, 1, 0);
    printf("after a mount: %d pri %d, then: %d\n", n, n == 1 && (got.events & EPOLLPRI),
           epoll_wait(ep, &got, 1, 0));
    CHECK(mkdir(path("a/c"), 0755) == 0 && mkdir(path("a/d"), 0755) == 0);
    printf("make a shared: %s\n", err(mount(NULL, path("a"), NULL, MS_SHARED, NULL)));
    printf("two kinds at once: %s\n",
           err(mount(NULL, path("a"), NULL, MS_SHARED | MS_PRIVATE, NULL)));
    printf("bind a on b: %s\n", err(mount(path("a"), path("b"), NULL, MS_BIND, NULL)));
    printf("bind a on s: %s\n", err(mount(path("a"), path("s"), NULL, MS_BIND, NULL)));
    printf("bind a on p: %s\n", err(mount(path("a"), path("p"), NULL, MS_BIND, NULL)));
    printf("s slave: %s\n", err(mount(NULL, path("s"), NULL, MS_SLAVE, NULL)));
    printf("p private: %s\n", err(mount(NULL, path("p"), NULL, MS_PRIVATE, NULL)));
    show("peers, a slave, a private one");
    printf("mount on a/c: %s\n", err(mount("none", path("a/c"), "tmpfs", 0, NULL)));
    show("propagated to b and s, not p");
    printf("mount on s/d (slave): %s\n", err(mount("none", path("s/d"), "tmpfs", 0, NULL)));
    show("not back to the master");
    printf("umount b/c: %s\n", err(umount2(path("b/c"), 0)));
    show("gone from a and s too");
    printf("move a/d's mount: %s\n", err(mount(path("s/d"), path("mv"), NULL, MS_MOVE, NULL)));
    CHECK(mount("none", path("u"), "tmpfs", 0, NULL) == 0);
    printf("u unbindable: %s\n", err(mount(NULL, path("u"), NULL, MS_UNBINDABLE, NULL)));
    printf("bind of u: %s\n", err(mount(path("u"), path("x"), NULL, MS_BIND, NULL)));
    printf("u shared again: %s\n", err(mount(NULL, path("u"), NULL, MS_SHARED, NULL)));
    printf("a private, recursively: %s\n",
           err(mount(NULL, path("a"), NULL, MS_PRIVATE | MS_REC, NULL)));
    show("after");

    /* A new mount namespace: copies of shared mounts are peers of the originals. */
    int sync[2], back[2];
    CHECK(pipe(sync) == 0 && pipe(back) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        CHECK(unshare(CLONE_NEWNS) == 0);
        CHECK(write(back[1], "r", 1) == 1);
        char c;
        CHECK(read(sync[0], &c, 1) == 1);
        struct stat st1, st2;
        CHECK(stat(path("u"), &st1) == 0 && stat(path("u/d"), &st2) == 0);
        printf("child sees the parent's later mount: %d\n", st1.st_dev != st2.st_dev);
        _exit(0);
    }
    char c;
    CHECK(read(back[0], &c, 1) == 1);
    CHECK(mkdir(path("u/d"), 0755) == 0);
    printf("mount on u/d: %s\n", err(mount("none", path("u/d"), "tmpfs", 0, NULL)));
    CHECK(write(sync[1], "g", 1) == 1);
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ok();
    return 0;
}
