/* inotify: watches, the events VFS operations generate, and the inotify file itself.
 *
 * Usage: inotify DIR.  Works in a fresh directory under DIR; DIR may hold a
 * file "lower" and a directory "lowerdir" made before the run (on the overlay
 * root they are in the image layer, so changing them copies them up).
 * Prints every event drained after each step, with watch descriptors and
 * masks symbolic, so the output is the same on every Linux and in pyvisor.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

#pragma GCC diagnostic ignored "-Wformat-truncation"

static int ifd;
static uint32_t last_cookie;
static int cookies;

static const char *names[] = {
    "ACCESS", "MODIFY", "ATTRIB", "CLOSE_WRITE", "CLOSE_NOWRITE", "OPEN", "MOVED_FROM",
    "MOVED_TO", "CREATE", "DELETE", "DELETE_SELF", "MOVE_SELF", "?", "UNMOUNT",
    "Q_OVERFLOW", "IGNORED",
};

static void print_mask(uint32_t m)
{
    const char *sep = "";
    for (int i = 0; i < 16; i++)
        if (m & (1u << i)) {
            printf("%s%s", sep, names[i]);
            sep = "|";
        }
    if (m & IN_ISDIR)
        printf("%sISDIR", sep);
}

/* Reads and prints every queued event; returns how many. */
static int drain(const char *step)
{
    char buf[65536] __attribute__((aligned(8)));
    int n = 0, avail = -1;
    CHECK(ioctl(ifd, FIONREAD, &avail) == 0);
    printf("%s: %d bytes\n", step, avail);
    for (;;) {
        ssize_t r = read(ifd, buf, sizeof(buf));
        if (r < 0) {
            CHECK(errno == EAGAIN);
            break;
        }
        CHECK(r == avail || avail == -2);
        avail = -2;
        for (char *p = buf; p < buf + r;) {
            struct inotify_event *e = (struct inotify_event *)p;
            printf("  wd=%d ", e->wd);
            print_mask(e->mask);
            if (e->len) {
                CHECK(e->len % 16 == 0 && strlen(e->name) < e->len);
                printf(" name=%s", e->name);
            }
            if (e->cookie) {
                /* Cookies pair MOVED_FROM with MOVED_TO and differ between renames. */
                if (e->cookie != last_cookie)
                    cookies++;
                last_cookie = e->cookie;
                printf(" cookie#%d", cookies);
            }
            printf("\n");
            p += sizeof(*e) + e->len;
            n++;
        }
    }
    return n;
}

static void touch(const char *path, const char *data)
{
    int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    CHECK(fd >= 0);
    if (data)
        CHECK(write(fd, data, strlen(data)) == (ssize_t)strlen(data));
    CHECK(close(fd) == 0);
}

static void errors(const char *d)
{
    char f[4096];
    snprintf(f, sizeof f, "%s/f", d);
    CHECK_ERR(inotify_init1(12345), EINVAL);
    CHECK_ERR(inotify_add_watch(ifd, d, 0), EINVAL);
    CHECK_ERR(inotify_add_watch(ifd, d, 0x800000), EINVAL);
    CHECK_ERR(inotify_add_watch(ifd, d, IN_MODIFY | IN_MASK_ADD | IN_MASK_CREATE), EINVAL);
    CHECK_ERR(inotify_add_watch(-1, d, IN_ALL_EVENTS), EBADF);
    CHECK_ERR(inotify_add_watch(1, d, IN_ALL_EVENTS), EINVAL);
    CHECK_ERR(inotify_add_watch(ifd, "/nonexistent/x", IN_ALL_EVENTS), ENOENT);
    CHECK_ERR(inotify_add_watch(ifd, NULL, IN_ALL_EVENTS), EFAULT);
    CHECK_ERR(inotify_add_watch(ifd, f, IN_ALL_EVENTS | IN_ONLYDIR), ENOTDIR);
    CHECK_ERR(inotify_rm_watch(ifd, 12345), EINVAL);
    CHECK_ERR(inotify_rm_watch(1, 1), EINVAL);
    int v = 0;
    CHECK_ERR(write(ifd, &v, sizeof v), EBADF);
    CHECK_ERR(pread(ifd, &v, sizeof v, 0), ESPIPE);
    CHECK_ERR(read(ifd, &v, sizeof v), EAGAIN);
    printf("errors: ok\n");
}

int main(int argc, char **argv)
{
    char base[2048], d[2048], f[4096], g[4096], sub[4096], p[4096];
    CHECK(argc == 2);
    snprintf(base, sizeof base, "%s/inotifyXXXXXX", argv[1]);
    CHECK(mkdtemp(base) != NULL);
    snprintf(d, sizeof d, "%s/d", base);
    CHECK(mkdir(d, 0755) == 0);
    snprintf(f, sizeof f, "%s/f", d);
    snprintf(g, sizeof g, "%s/g", d);
    snprintf(sub, sizeof sub, "%s/sub", d);
    touch(f, "hello");

    ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    CHECK(ifd >= 0);
    CHECK(fcntl(ifd, F_GETFD) == FD_CLOEXEC);
    CHECK((fcntl(ifd, F_GETFL) & O_NONBLOCK) && (fcntl(ifd, F_GETFL) & O_ACCMODE) == O_RDONLY);
    errors(d);

    int wd_d = inotify_add_watch(ifd, d, IN_ALL_EVENTS);
    int wd_f = inotify_add_watch(ifd, f, IN_ALL_EVENTS);
    CHECK(wd_d == 1 && wd_f == 2);
    CHECK(inotify_add_watch(ifd, f, IN_ALL_EVENTS) == wd_f);     /* same watch */
    CHECK_ERR(inotify_add_watch(ifd, f, IN_ALL_EVENTS | IN_MASK_CREATE), EEXIST);
    drain("watch");

    /* Reading and writing an open file; identical consecutive events coalesce. */
    char c[64];
    int fd = open(f, O_RDWR);
    CHECK(fd >= 0);
    CHECK(read(fd, c, 1) == 1 && read(fd, c, 1) == 1 && read(fd, c, 1) == 1);
    CHECK(write(fd, "x", 1) == 1 && write(fd, "y", 1) == 1);
    CHECK(read(fd, c, 0) == 0 && write(fd, c, 0) == 0);
    CHECK(read(fd, c, 8) == 0);                 /* at EOF: no event */
    CHECK(pwrite(fd, "z", 1, 0) == 1 && pread(fd, c, 1, 0) == 1);
    CHECK(close(fd) == 0);
    drain("rw");

    /* A read-only open, and getdents on the directory. */
    fd = open(f, O_RDONLY);
    CHECK(fd >= 0 && close(fd) == 0);
    DIR *dir = opendir(d);
    CHECK(dir != NULL);
    int entries = 0;
    while (readdir(dir))
        entries++;
    CHECK(entries == 3 && closedir(dir) == 0);
    drain("open-readdir");

    /* Attributes, truncate, times, xattrs. */
    CHECK(chmod(f, 0600) == 0);
    CHECK(chown(f, -1, -1) == 0);
    CHECK(truncate(f, 2) == 0);
    struct timespec ts[2] = {{0, UTIME_NOW}, {0, UTIME_OMIT}};
    CHECK(utimensat(AT_FDCWD, f, ts, 0) == 0);
    ts[0].tv_nsec = UTIME_OMIT;
    ts[1].tv_nsec = UTIME_NOW;
    CHECK(utimensat(AT_FDCWD, f, ts, 0) == 0);
    CHECK(utimensat(AT_FDCWD, f, NULL, 0) == 0);
    fd = open(f, O_WRONLY | O_TRUNC);
    CHECK(fd >= 0);
    CHECK(fallocate(fd, 0, 0, 100) == 0);
    CHECK(ftruncate(fd, 10) == 0);
    CHECK(close(fd) == 0);
    drain("attributes");

    /* Directory entries: create, mkdir, symlink, mknod, link, rename, unlink, rmdir. */
    touch(g, NULL);
    CHECK(mkdir(sub, 0755) == 0);
    snprintf(p, sizeof p, "%s/sym", d);
    CHECK(symlink("f", p) == 0);
    snprintf(p, sizeof p, "%s/fifo", d);
    CHECK(mknod(p, S_IFREG | 0600, 0) == 0);      /* (the Gofer makes no FIFOs) */
    snprintf(p, sizeof p, "%s/link", d);
    CHECK(link(f, p) == 0);
    CHECK_ERR(mkdir(sub, 0755), EEXIST);        /* failures say nothing */
    drain("create");

    int wd_sub = inotify_add_watch(ifd, sub, IN_ALL_EVENTS);
    CHECK(wd_sub == 3);
    snprintf(p, sizeof p, "%s/f2", d);
    CHECK(rename(f, p) == 0);                   /* within d: f is watched itself */
    snprintf(f, sizeof f, "%s/f3", sub);
    CHECK(rename(p, f) == 0);                   /* d -> sub */
    snprintf(p, sizeof p, "%s/link", d);
    CHECK(rename(g, p) == 0);                   /* over another name of f */
    snprintf(p, sizeof p, "%s/fifo", d);
    CHECK(rename(sub, p) != 0);                 /* a directory over a file */
    drain("rename");

    snprintf(p, sizeof p, "%s/link", d);
    CHECK(unlink(p) == 0);
    snprintf(p, sizeof p, "%s/sym", d);
    CHECK(unlink(p) == 0);
    drain("unlink");

    /* The last name of a watched file goes while it is open: IN_DELETE_SELF waits
     * for the close; IN_EXCL_UNLINK silences the open file after the unlink. */
    int wd_f2 = inotify_add_watch(ifd, f, IN_ALL_EVENTS | IN_EXCL_UNLINK);
    CHECK(wd_f2 == wd_f);
    fd = open(f, O_RDWR);
    CHECK(fd >= 0);
    drain("open-before-unlink");
    CHECK(unlink(f) == 0);
    CHECK(write(fd, "a", 1) == 1);
    drain("unlinked-open");
    CHECK(fchmod(fd, 0644) == 0);               /* an inode event: still reported */
    CHECK(close(fd) == 0);
    drain("closed");
    CHECK_ERR(inotify_rm_watch(ifd, wd_f), EINVAL);

    /* rmdir of a watched directory; removing a watch. */
    CHECK(rmdir(sub) == 0);
    drain("rmdir");
    snprintf(p, sizeof p, "%s/fifo", d);
    CHECK(unlink(p) == 0);
    CHECK(inotify_rm_watch(ifd, wd_d) == 0);
    CHECK_ERR(inotify_rm_watch(ifd, wd_d), EINVAL);
    drain("rm_watch");

    /* IN_ONESHOT, a narrow mask, IN_MASK_ADD, IN_DONT_FOLLOW. */
    snprintf(f, sizeof f, "%s/one", d);
    touch(f, "1");
    int wd = inotify_add_watch(ifd, f, IN_MODIFY | IN_ONESHOT);
    fd = open(f, O_WRONLY);
    CHECK(write(fd, "1", 1) == 1 && write(fd, "2", 1) == 1 && close(fd) == 0);
    drain("oneshot");
    CHECK_ERR(inotify_rm_watch(ifd, wd), EINVAL);
    wd = inotify_add_watch(ifd, f, IN_CLOSE_WRITE);
    CHECK(inotify_add_watch(ifd, f, IN_OPEN | IN_MASK_ADD) == wd);
    fd = open(f, O_WRONLY);
    CHECK(write(fd, "1", 1) == 1 && close(fd) == 0);
    drain("mask_add");
    snprintf(p, sizeof p, "%s/lnk", d);
    CHECK(symlink("one", p) == 0);
    int wl = inotify_add_watch(ifd, p, IN_ALL_EVENTS | IN_DONT_FOLLOW);
    CHECK(wl != wd && inotify_add_watch(ifd, p, IN_ALL_EVENTS) == wd);
    CHECK(unlink(p) == 0);
    drain("dont_follow");

    /* The read buffer: too small for the first event is EINVAL, nothing is lost. */
    CHECK(chmod(f, 0644) == 0);
    CHECK_ERR(read(ifd, c, sizeof(struct inotify_event) - 1), EINVAL);
    char one[sizeof(struct inotify_event)];
    CHECK(read(ifd, one, sizeof one) == sizeof one);
    CHECK(((struct inotify_event *)one)->mask == IN_ATTRIB);
    CHECK_ERR(read(ifd, one, sizeof one), EAGAIN);
    int wdd = inotify_add_watch(ifd, d, IN_OPEN);
    fd = open(f, O_RDONLY);
    CHECK(fd >= 0 && close(fd) == 0);
    CHECK_ERR(read(ifd, one, sizeof one), EINVAL);       /* an event with a name */
    drain("read-sizes");

    /* Readiness: poll and epoll. */
    struct pollfd pfd = {ifd, POLLIN, 0};
    CHECK(poll(&pfd, 1, 0) == 0);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = 7};
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, ifd, &ev) == 0);
    CHECK(epoll_wait(ep, &ev, 1, 0) == 0);
    fd = open(f, O_RDONLY);
    CHECK(poll(&pfd, 1, 0) == 1 && pfd.revents == POLLIN);
    CHECK(epoll_wait(ep, &ev, 1, 0) == 1 && ev.data.u32 == 7 && ev.events == EPOLLIN);
    CHECK(close(fd) == 0 && close(ep) == 0);
    drain("poll");

    /* /proc: the limits, and the watches in fdinfo. */
    const char *lim[] = {"max_user_instances", "max_user_watches", "max_queued_events"};
    for (int i = 0; i < 3; i++) {
        char path[128], line[64] = "";
        snprintf(path, sizeof path, "/proc/sys/fs/inotify/%s", lim[i]);
        FILE *fp = fopen(path, "r");
        CHECK(fp != NULL && fgets(line, sizeof line, fp) != NULL);
        fclose(fp);
        if (i == 1)     /* Linux sizes it by the memory: at least 8192 */
            printf("%s: %s\n", lim[i], atoi(line) >= 8192 ? ">= 8192" : line);
        else
            printf("%s: %s", lim[i], line);
    }
    char path[128], line[512];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", ifd);
    FILE *fp = fopen(path, "r");
    CHECK(fp != NULL);
    while (fgets(line, sizeof line, fp)) {
        unsigned w, m;
        if (sscanf(line, "inotify wd:%x ino:%*x sdev:%*x mask:%x", &w, &m) == 2)
            printf("fdinfo: wd=%u mask=%x\n", w, m);
    }
    fclose(fp);
    CHECK(inotify_rm_watch(ifd, wdd) == 0);
    drain("fdinfo");

    /* A file of the layer below (overlay root: copied up by the change). */
    snprintf(p, sizeof p, "%s/lower", argv[1]);
    if (access(p, F_OK) == 0) {
        char pd[4096];
        snprintf(pd, sizeof pd, "%s/lowerdir", argv[1]);
        int w1 = inotify_add_watch(ifd, p, IN_ALL_EVENTS);
        int w2 = inotify_add_watch(ifd, pd, IN_ALL_EVENTS);
        CHECK(w1 > 0 && w2 > 0);
        fd = open(p, O_RDWR | O_APPEND);
        CHECK(fd >= 0 && read(fd, c, 1) == 1 && write(fd, "!", 1) == 1 && close(fd) == 0);
        snprintf(g, sizeof g, "%s/x", pd);
        touch(g, NULL);
        char pd2[4096];
        snprintf(pd2, sizeof pd2, "%s/lowerdir/inner", argv[1]);
        CHECK(unlink(pd2) == 0);
        CHECK(unlink(g) == 0);
        CHECK(unlink(p) == 0);
        drain("lower");
    }

    /* The queue limit: one IN_Q_OVERFLOW stands for everything lost. */
    snprintf(f, sizeof f, "%s/many", d);
    touch(f, "ab");
    fd = open(f, O_RDWR);
    int wm = inotify_add_watch(ifd, f, IN_ACCESS | IN_MODIFY);
    CHECK(wm > 0);
    for (int i = 0; i < 8200; i++) {
        CHECK(pread(fd, c, 1, 0) == 1);
        CHECK(pwrite(fd, "a", 1, 0) == 1);
    }
    CHECK(close(fd) == 0);
    int queued = 0, overflow = 0;
    CHECK(ioctl(ifd, FIONREAD, &queued) == 0);
    printf("queued bytes: %d\n", queued);
    for (;;) {
        char buf[4096] __attribute__((aligned(8)));
        ssize_t r = read(ifd, buf, sizeof buf);
        if (r < 0) {
            CHECK(errno == EAGAIN);
            break;
        }
        for (char *q = buf; q < buf + r; q += sizeof(struct inotify_event)) {
            struct inotify_event *e = (struct inotify_event *)q;
            if (e->mask & IN_Q_OVERFLOW) {
                CHECK(e->wd == -1);
                overflow++;
            }
        }
    }
    printf("overflow events: %d\n", overflow);

    CHECK(unlink(f) == 0);
    snprintf(p, sizeof p, "%s/one", d);
    CHECK(unlink(p) == 0);
    CHECK(rmdir(d) == 0 && rmdir(base) == 0);
    CHECK(close(ifd) == 0);
    ok();
    return 0;
}
