/* pivot_root(2): errors in Linux's order, then a pivot after chroot into a tmpfs,
 * with the old root moved under put_old and the working directories that were at
 * the old root following.  Prints what it sees; the test compares it with Linux.
 *
 * Usage: pivot_root DIR.  Run as root; natively in a mount namespace of its own
 * (unshare -m --propagation private): it mounts things.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

static const char *err(long r)
{
    static char b[64];
    if (r >= 0) {
        snprintf(b, sizeof b, "%ld", r);
        return b;
    }
    return strerrorname_np(errno);
}

static long pivot(const char *a, const char *b)
{
    return syscall(SYS_pivot_root, a, b);
}

int main(int argc, char **argv)
{
    char root[1024], nr[1100], old[1200], file[1200], other[1100];
    CHECK(argc == 2);
    setvbuf(stdout, NULL, _IONBF, 0);
    snprintf(root, sizeof root, "%s/root", argv[1]);
    snprintf(nr, sizeof nr, "%s/new", root);
    snprintf(other, sizeof other, "%s/plain", root);
    CHECK(mkdir(root, 0755) == 0);
    CHECK(mount("none", root, "tmpfs", 0, "mode=0755") == 0);
    CHECK(mkdir(nr, 0755) == 0 && mkdir(other, 0755) == 0);
    CHECK(mount("none", nr, "tmpfs", 0, "mode=0755") == 0);
    snprintf(old, sizeof old, "%s/old", nr);
    CHECK(mkdir(old, 0755) == 0);
    snprintf(file, sizeof file, "%s/marker", nr);
    int fd = open(file, O_CREAT | O_WRONLY, 0644);
    CHECK(fd >= 0);
    close(fd);
    snprintf(file, sizeof file, "%s/marker", root);
    fd = open(file, O_CREAT | O_WRONLY, 0644);
    CHECK(fd >= 0);
    close(fd);

    printf("missing: %s\n", err(pivot("/no/such", "/no/such")));
    printf("not a dir: %s\n", err(pivot(file, nr)));
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        CHECK(chroot(root) == 0);
        CHECK(chdir("/") == 0);
        printf("new root not a mount: %s\n", err(pivot("/plain", "/plain")));
        printf("put_old outside new root: %s\n", err(pivot("/new", "/plain")));
        printf("new root is the root: %s\n", err(pivot("/", "/new/old")));
        printf("pivot: %s\n", err(pivot("/new", "/new/old")));
        char cwd[256];
        CHECK(getcwd(cwd, sizeof cwd) != NULL);
        struct stat st;
        printf("cwd %s, /marker %s, /old/marker %s, /old/new/marker %s\n", cwd,
               err(stat("/marker", &st)), err(stat("/old/marker", &st)),
               err(stat("/old/new/marker", &st)));
        printf("umount old root: %s\n", err(umount2("/old", MNT_DETACH)));
        printf("/old/marker after: %s\n", err(stat("/old/marker", &st)));
        _exit(0);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ok();
    return 0;
}
