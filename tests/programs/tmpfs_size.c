/* tmpfs size= accounting: holes (truncate, seek) cost nothing, fallocate and writes
 * charge their pages, a write stops at the first page that does not fit.  Prints
 * what it sees; the test compares it with Linux.
 *
 * Usage: tmpfs_size DIR.  Run as root; natively in a mount namespace of its own
 * (unshare -m --propagation private): it mounts things.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
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

static long freeb(const char *dir)
{
    struct statfs st;
    CHECK(statfs(dir, &st) == 0);
    return (long)st.f_bfree;
}

int main(int argc, char **argv)
{
    char f1[1100], f2[1100];
    static char buf[3 * 4096];
    long r;
    CHECK(argc == 2);
    setvbuf(stdout, NULL, _IONBF, 0);
    CHECK(mount("none", argv[1], "tmpfs", 0, "size=12288") == 0);
    snprintf(f1, sizeof f1, "%s/a", argv[1]);
    snprintf(f2, sizeof f2, "%s/b", argv[1]);
    int fd = open(f1, O_CREAT | O_RDWR, 0644);
    CHECK(fd >= 0);
    r = ftruncate(fd, 1 << 20);
    printf("truncate to 1M: %s free %ld\n", err(r), freeb(argv[1]));
    r = pwrite(fd, buf, 10, 512 << 10);
    printf("write at 512k: %s free %ld\n", err(r), freeb(argv[1]));
    r = fallocate(fd, 0, 0, 8192);
    printf("fallocate 2 pages: %s free %ld\n", err(r), freeb(argv[1]));
    r = fallocate(fd, 0, 8192, 8192);
    printf("fallocate 2 more: %s free %ld\n", err(r), freeb(argv[1]));
    int fd2 = open(f2, O_CREAT | O_RDWR, 0644);
    CHECK(fd2 >= 0);
    printf("write 2 pages: %s\n", err(pwrite(fd2, buf, 8192, 100)));
    printf("write again: %s\n", err(pwrite(fd2, buf, 10, 9000)));
    r = ftruncate(fd, 0);
    printf("truncate a to 0: %s free %ld\n", err(r), freeb(argv[1]));
    printf("write 3 pages at 4000: %s\n", err(pwrite(fd2, buf, 3 * 4096, 4000)));
    struct stat st;
    CHECK(fstat(fd2, &st) == 0);
    printf("b size %ld free %ld\n", (long)st.st_size, freeb(argv[1]));
    close(fd);
    close(fd2);
    CHECK(umount(argv[1]) == 0);

    /* fallocate on what is not a regular file; RLIMIT_FSIZE on growing. */
    int pp[2];
    CHECK(pipe(pp) == 0);
    r = fallocate(pp[1], 0, 0, 10);
    printf("fallocate pipe: %s\n", err(r));
    int efd = eventfd(0, 0);
    r = fallocate(efd, 0, 0, 10);
    printf("fallocate eventfd: %s\n", err(r));
    sigset_t xf;
    sigemptyset(&xf);
    sigaddset(&xf, SIGXFSZ);
    CHECK(sigprocmask(SIG_BLOCK, &xf, NULL) == 0);
    struct rlimit old_fs, lim = {1024, RLIM_INFINITY};
    CHECK(getrlimit(RLIMIT_FSIZE, &old_fs) == 0 && setrlimit(RLIMIT_FSIZE, &lim) == 0);
    CHECK(mount("none", argv[1], "tmpfs", 0, NULL) == 0);
    fd = open(f1, O_CREAT | O_RDWR, 0644);
    r = ftruncate(fd, 1025);
    printf("ftruncate past RLIMIT_FSIZE: %s\n", err(r));
    r = fallocate(fd, 0, 0, 2048);
    printf("fallocate past it: %s\n", err(r));
    r = ftruncate(fd, 1000);
    printf("ftruncate below it: %s\n", err(r));
    struct timespec zero = {0, 0};
    printf("SIGXFSZ pending: %d\n", sigtimedwait(&xf, NULL, &zero) == SIGXFSZ);
    CHECK(setrlimit(RLIMIT_FSIZE, &old_fs) == 0);
    close(fd);
    CHECK(umount(argv[1]) == 0);

    /* Reading a symlink touches its atime (relatime: an atime before its mtime). */
    CHECK(mount("none", argv[1], "tmpfs", 0, NULL) == 0);
    CHECK(symlink("target", f2) == 0);
    struct timespec sold[2] = {{1000, 0}, {0, UTIME_OMIT}};
    CHECK(utimensat(AT_FDCWD, f2, sold, AT_SYMLINK_NOFOLLOW) == 0);
    char lb[16];
    CHECK(readlink(f2, lb, sizeof lb) == 6);
    struct stat ls;
    CHECK(lstat(f2, &ls) == 0);
    printf("readlink touches an old atime: %d\n", ls.st_atime != 1000);
    CHECK(umount(argv[1]) == 0);

    /* Reads and the atime modes: strictatime (over noatime), noatime, relatime. */
    const struct { const char *name; unsigned long flags; } modes[] = {
        {"strictatime", MS_NOATIME | MS_STRICTATIME}, {"noatime", MS_NOATIME},
        {"relatime", 0}};
    for (int i = 0; i < 3; i++) {
        CHECK(mount("none", argv[1], "tmpfs", modes[i].flags, NULL) == 0);
        fd = open(f1, O_CREAT | O_RDWR, 0644);
        CHECK(fd >= 0 && write(fd, "data", 4) == 4);
        struct timespec old[2] = {{1000, 0}, {0, UTIME_OMIT}};
        CHECK(futimens(fd, old) == 0);          /* atime long before mtime */
        char c;
        CHECK(pread(fd, &c, 1, 0) == 1);
        struct stat a1;
        CHECK(fstat(fd, &a1) == 0);
        /* (A second read's update depends on timestamp granularity: not compared.) */
        printf("%s: a read updates an old atime %d\n", modes[i].name, a1.st_atime != 1000);
        close(fd);
        CHECK(umount(argv[1]) == 0);
    }
    ok();
    return 0;
}
