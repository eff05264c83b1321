/* mount(2) and umount2(2): tmpfs, proc, bind mounts, remounts, MS_MOVE, errors, and
 * what /proc/self/mountinfo and /proc/self/mounts say of them.
 *
 * Usage: mount DIR.  Natively, run it in a mount namespace of its own
 * (unshare -m --propagation private): it mounts things.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

static char base[2048];

/* Prints the mountinfo and mounts lines of mounts under `base`, their paths relative. */
static void show(const char *step)
{
    char line[4096];
    size_t bl = strlen(base);
    printf("%s:\n", step);
    FILE *f = fopen("/proc/self/mountinfo", "r");
    CHECK(f != NULL);
    while (fgets(line, sizeof line, f)) {
        char root[1024], mp[1024], rest[2048];
        if (sscanf(line, "%*d %*d %*s %1023s %1023s %2047[^\n]", root, mp, rest) != 3)
            continue;
        if (strncmp(mp, base, bl) == 0)
            printf("  info %s %s %s\n", root, mp + bl, rest);
    }
    fclose(f);
    f = fopen("/proc/self/mounts", "r");
    CHECK(f != NULL);
    while (fgets(line, sizeof line, f)) {
        char src[1024], mp[1024], rest[2048];
        if (sscanf(line, "%1023s %1023s %2047[^\n]", src, mp, rest) != 3)
            continue;
        if (strncmp(mp, base, bl) == 0)
            printf("  mounts %s %s %s\n", src, mp + bl, rest);
    }
    fclose(f);
}

static void path(char *out, const char *name)
{
    snprintf(out, 2200, "%s/%s", base, name);
}

int main(int argc, char **argv)
{
    char a[2200], b[2200], c[2200], p[2200], q[2200], x[2300];
    CHECK(argc == 2);
    snprintf(base, sizeof base, "%s/mountXXXXXX", argv[1]);
    CHECK(mkdtemp(base) != NULL && chmod(base, 0755) == 0);
    path(a, "a");
    path(b, "b");
    path(c, "c");
    path(p, "p");
    CHECK(mkdir(a, 0755) == 0 && mkdir(b, 0755) == 0 && mkdir(c, 0755) == 0 &&
          mkdir(p, 0755) == 0);
    path(q, "file");
    int fd = open(q, O_CREAT | O_WRONLY, 0644);
    CHECK(fd >= 0 && close(fd) == 0);

    /* Errors before anything is mounted. */
    CHECK_ERR(mount("none", a, "nosuchfs", 0, NULL), ENODEV);
    CHECK_ERR(mount("none", a, NULL, 0, NULL), EINVAL);
    CHECK_ERR(mount("none", "/nonexistent/x", "tmpfs", 0, NULL), ENOENT);
    CHECK_ERR(mount("none", q, "tmpfs", 0, NULL), ENOTDIR);
    CHECK_ERR(mount("none", a, "tmpfs", 0, "size=1m,bogus=1"), EINVAL);
    CHECK_ERR(mount(NULL, a, NULL, MS_REMOUNT, NULL), EINVAL);      /* not a mount */
    CHECK_ERR(mount(NULL, a, NULL, MS_PRIVATE, NULL), EINVAL);
    CHECK_ERR(umount2(a, 0), EINVAL);
    CHECK_ERR(umount2(a, 0x100), EINVAL);
    CHECK_ERR(umount2("/nonexistent/x", 0), ENOENT);
    pid_t pid = fork();
    if (pid == 0) {                        /* without CAP_SYS_ADMIN: EPERM */
        CHECK(setuid(65534) == 0);
        CHECK_ERR(mount("none", a, "tmpfs", 0, NULL), EPERM);
        CHECK_ERR(umount2(a, 0), EPERM);
        _exit(0);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && st == 0);

    /* A tmpfs. */
    CHECK(mount("none", a, "tmpfs", MS_NOSUID, "size=1m,mode=755") == 0);
    struct statfs sf;
    CHECK(statfs(a, &sf) == 0 && sf.f_type == 0x01021994);
    printf("tmpfs: blocks=%ld\n", (long)sf.f_blocks);
    snprintf(x, sizeof x, "%s/sub", a);
    CHECK(mkdir(x, 0755) == 0);
    snprintf(x, sizeof x, "%s/sub/f", a);
    fd = open(x, O_CREAT | O_WRONLY, 0644);
    CHECK(fd >= 0 && write(fd, "data", 4) == 4 && close(fd) == 0);
    CHECK_ERR(rmdir(a), EBUSY);
    show("tmpfs");

    /* Bind mounts: of a subdirectory, read-only by a remount of the bind only. */
    CHECK(mount(x, q, NULL, MS_BIND, NULL) == 0);              /* a file onto a file */
    snprintf(x, sizeof x, "%s/sub", a);
    CHECK_ERR(mount(x, q, NULL, MS_BIND, NULL), ENOTDIR);
    CHECK(mount(x, b, NULL, MS_BIND, NULL) == 0);
    CHECK(mount(NULL, b, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOEXEC, NULL) == 0);
    snprintf(x, sizeof x, "%s/f", b);
    CHECK_ERR(open(x, O_WRONLY), EROFS);
    CHECK_ERR(mkdir(x, 0755), EEXIST);
    snprintf(x, sizeof x, "%s/newdir", b);
    CHECK_ERR(mkdir(x, 0755), EROFS);
    snprintf(x, sizeof x, "%s/sub/f", a);
    fd = open(x, O_WRONLY | O_APPEND);
    CHECK(fd >= 0 && write(fd, "!", 1) == 1 && close(fd) == 0);  /* the tmpfs is writable */
    char buf[16] = "";
    fd = open(q, O_RDONLY);
    CHECK(fd >= 0 && read(fd, buf, sizeof buf) == 5 && close(fd) == 0);
    printf("bound file: %.5s\n", buf);
    show("bind");

    /* Remount of the filesystem: read-only everywhere, then writable again. */
    CHECK(mount(NULL, a, NULL, MS_REMOUNT | MS_RDONLY, NULL) == 0);
    CHECK_ERR(open(x, O_WRONLY), EROFS);
    show("remount ro");
    CHECK(mount(NULL, a, NULL, MS_REMOUNT, "size=2m") == 0);
    fd = open(x, O_WRONLY);
    CHECK(fd >= 0 && close(fd) == 0);
    CHECK(mount(NULL, a, NULL, MS_PRIVATE, NULL) == 0);
    CHECK_ERR(mount(NULL, a, NULL, MS_PRIVATE | MS_SHARED, NULL), EINVAL);

    /* proc, and MS_REC binds of a tree with a mount inside. */
    CHECK(mount("proc", p, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) == 0);
    snprintf(x, sizeof x, "%s/self/status", p);
    CHECK(access(x, R_OK) == 0);
    snprintf(x, sizeof x, "%s/sub/inner", a);
    CHECK(mkdir(x, 0755) == 0);
    CHECK(mount("inner", x, "tmpfs", 0, NULL) == 0);
    CHECK(mount(a, c, NULL, MS_BIND | MS_REC, NULL) == 0);
    show("proc, rbind");

    /* umount: busy with an open file or a submount, then fine; MNT_DETACH. */
    snprintf(x, sizeof x, "%s/sub/inner/g", c);
    fd = open(x, O_CREAT | O_RDWR, 0644);
    CHECK(fd >= 0);
    snprintf(x, sizeof x, "%s/sub/inner", c);
    CHECK_ERR(umount2(x, 0), EBUSY);
    CHECK_ERR(umount2(c, 0), EBUSY);                 /* it has a submount */
    CHECK(umount2(x, MNT_DETACH) == 0);
    CHECK(write(fd, "still", 5) == 5 && close(fd) == 0);   /* a detached file works */
    CHECK(umount2(c, 0) == 0);
    CHECK_ERR(umount2(c, 0), EINVAL);
    CHECK(umount2(p, 0) == 0);
    CHECK(umount2(q, 0) == 0);

    /* MS_MOVE, and umount of what is stacked. */
    CHECK(mount(b, p, NULL, MS_MOVE, NULL) == 0);
    snprintf(x, sizeof x, "%s/f", p);
    CHECK(access(x, F_OK) == 0);
    snprintf(x, sizeof x, "%s/f", b);
    CHECK_ERR(access(x, F_OK), ENOENT);
    CHECK(mount("s1", b, "tmpfs", 0, NULL) == 0 && mount("s2", b, "tmpfs", 0, NULL) == 0);
    show("move, stacked");
    CHECK(umount2(b, 0) == 0 && umount2(b, 0) == 0);
    CHECK_ERR(umount2(b, 0), EINVAL);

    /* inotify: the filesystem's last mount gone, watches hear IN_UNMOUNT. */
    CHECK(umount2(p, 0) == 0);
    snprintf(x, sizeof x, "%s/sub/inner", a);
    CHECK(umount2(x, 0) == 0);
    snprintf(x, sizeof x, "%s/sub/f", a);
    int in = inotify_init1(IN_NONBLOCK);
    int wd = inotify_add_watch(in, x, IN_ALL_EVENTS);
    CHECK(in >= 0 && wd > 0);
    CHECK(umount2(a, 0) == 0);
    char ev[256] __attribute__((aligned(8)));
    ssize_t n = read(in, ev, sizeof ev);
    for (char *e = ev; n > 0 && e < ev + n; e += sizeof(struct inotify_event) +
                                              ((struct inotify_event *)e)->len)
        printf("event wd=%d mask=%x\n", ((struct inotify_event *)e)->wd,
               ((struct inotify_event *)e)->mask);
    CHECK(close(in) == 0);
    show("after");

    CHECK(rmdir(a) == 0 && rmdir(b) == 0 && rmdir(c) == 0 && rmdir(p) == 0);
    CHECK(unlink(q) == 0 && rmdir(base) == 0);
    ok();
    return 0;
}
