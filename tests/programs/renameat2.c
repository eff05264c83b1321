/* renameat2: RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT and their errors.
 *
 * Usage: renameat2 DIR.  Works in a fresh directory under DIR; a file DIR/lower
 * made before the run (on the overlay root: in the image layer) is exchanged
 * with a new file, which copies it up.  Prints what it finds.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "check.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE 1
#define RENAME_EXCHANGE 2
#define RENAME_WHITEOUT 4
#endif
#define TMPFS_MAGIC 0x01021994

static int r2(const char *a, const char *b, unsigned flags)
{
    return syscall(SYS_renameat2, AT_FDCWD, a, AT_FDCWD, b, flags);
}

static void put(const char *path, const char *data)
{
    int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    CHECK(fd >= 0);
    CHECK(write(fd, data, strlen(data)) == (ssize_t)strlen(data));
    CHECK(close(fd) == 0);
}

static const char *get(const char *path)
{
    static char buf[256];
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    ssize_t n = read(fd, buf, sizeof buf - 1);
    CHECK(n >= 0 && close(fd) == 0);
    buf[n] = 0;
    return buf;
}

static long nlink(const char *path)
{
    struct stat st;
    CHECK(lstat(path, &st) == 0);
    return (long)st.st_nlink;
}

int main(int argc, char **argv)
{
    char base[2048], a[2200], b[2200], d1[2200], d2[2200], p[2400], q[2400];
    CHECK(argc == 2);
    snprintf(base, sizeof base, "%s/r2XXXXXX", argv[1]);
    CHECK(mkdtemp(base) != NULL);
    snprintf(a, sizeof a, "%s/a", base);
    snprintf(b, sizeof b, "%s/b", base);
    snprintf(d1, sizeof d1, "%s/d1", base);
    snprintf(d2, sizeof d2, "%s/d2", base);
    put(a, "A");
    put(b, "B");
    CHECK(mkdir(d1, 0755) == 0 && mkdir(d2, 0755) == 0);

    /* Flags. */
    CHECK_ERR(r2(a, b, 8), EINVAL);
    CHECK_ERR(r2(a, b, RENAME_NOREPLACE | RENAME_EXCHANGE), EINVAL);
    CHECK_ERR(r2(a, b, RENAME_EXCHANGE | RENAME_WHITEOUT), EINVAL);
    CHECK_ERR(r2(a, b, 0x80000000u), EINVAL);

    /* RENAME_NOREPLACE. */
    CHECK_ERR(r2(a, b, RENAME_NOREPLACE), EEXIST);
    CHECK_ERR(r2(a, d1, RENAME_NOREPLACE), EEXIST);
    snprintf(p, sizeof p, "%s/c", base);
    CHECK(r2(a, p, RENAME_NOREPLACE) == 0);
    CHECK(access(a, F_OK) != 0 && strcmp(get(p), "A") == 0);
    CHECK(r2(p, a, RENAME_NOREPLACE) == 0);
    printf("noreplace: ok\n");

    /* RENAME_EXCHANGE: files. */
    CHECK(r2(a, b, RENAME_EXCHANGE) == 0);
    printf("exchange files: a=%s ", get(a));
    printf("b=%s\n", get(b));
    snprintf(p, sizeof p, "%s/missing", base);
    CHECK_ERR(r2(a, p, RENAME_EXCHANGE), ENOENT);
    CHECK_ERR(r2(p, a, RENAME_EXCHANGE), ENOENT);
    CHECK(access(a, F_OK) == 0);
    /* Two names of one file: nothing happens. */
    snprintf(p, sizeof p, "%s/alink", base);
    CHECK(link(a, p) == 0);
    CHECK(r2(a, p, RENAME_EXCHANGE) == 0 && r2(a, p, 0) == 0);
    CHECK(access(a, F_OK) == 0 && access(p, F_OK) == 0 && unlink(p) == 0);

    /* A file with a directory, across directories: the parents' link counts follow. */
    snprintf(p, sizeof p, "%s/f", d1);
    put(p, "F");
    snprintf(q, sizeof q, "%s/sub", d2);
    CHECK(mkdir(q, 0755) == 0);
    long n1 = nlink(d1), n2 = nlink(d2);
    CHECK(r2(p, q, RENAME_EXCHANGE) == 0);
    struct stat st;
    CHECK(stat(p, &st) == 0 && S_ISDIR(st.st_mode));
    CHECK(stat(q, &st) == 0 && S_ISREG(st.st_mode) && strcmp(get(q), "F") == 0);
    printf("exchange file/dir: d1 nlink %+ld, d2 nlink %+ld\n", nlink(d1) - n1, nlink(d2) - n2);
    CHECK_ERR(r2(q, p, RENAME_EXCHANGE | RENAME_NOREPLACE), EINVAL);
    CHECK_ERR(r2(p, q, 0), ENOTDIR);           /* a directory over a file */
    CHECK_ERR(r2(q, p, 0), EISDIR);            /* a file over a directory */

    /* Directories with each other, and into their own subtree. */
    CHECK(r2(d1, d2, RENAME_EXCHANGE) == 0);
    snprintf(p, sizeof p, "%s/sub", d1);       /* d2's file "sub" now lives in d1 */
    CHECK(stat(p, &st) == 0 && S_ISREG(st.st_mode));
    snprintf(p, sizeof p, "%s/f", d2);         /* and the directory "f" in d2 */
    CHECK(stat(p, &st) == 0 && S_ISDIR(st.st_mode));
    CHECK_ERR(r2(d2, p, RENAME_EXCHANGE), EINVAL);
    CHECK_ERR(r2(p, d2, RENAME_EXCHANGE), EINVAL);
    CHECK_ERR(r2(d2, p, 0), EINVAL);
    printf("exchange dirs: ok\n");

    /* A symlink with a file: the links themselves swap. */
    snprintf(p, sizeof p, "%s/sym", base);
    CHECK(symlink("target", p) == 0);
    CHECK(r2(p, a, RENAME_EXCHANGE) == 0);
    char t[64] = "";
    CHECK(readlink(a, t, sizeof t) == 6 && strcmp(get(p), "B") == 0);
    printf("exchange symlink: %.6s\n", t);
    CHECK(unlink(a) == 0);

    /* RENAME_WHITEOUT: tmpfs leaves a 0:0 character device; other filesystems may
     * refuse the flag (EINVAL: overlayfs, and the sandbox's overlay root). */
    struct statfs sf;
    CHECK(statfs(base, &sf) == 0);
    snprintf(q, sizeof q, "%s/w", base);
    int r = r2(p, q, RENAME_WHITEOUT);
    if (r == 0) {
        CHECK(lstat(p, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0));
        CHECK(strcmp(get(q), "B") == 0);
        CHECK(unlink(p) == 0 && rename(q, p) == 0);
    } else {
        CHECK(errno == EINVAL && sf.f_type != TMPFS_MAGIC);
    }
    printf("whiteout: ok\n");

    /* A file of the layer below (overlay root: both sides copied up). */
    snprintf(p, sizeof p, "%s/lower", argv[1]);
    if (access(p, F_OK) == 0) {
        snprintf(q, sizeof q, "%s/upper", argv[1]);
        put(q, "new\n");
        CHECK(r2(p, q, RENAME_EXCHANGE) == 0);
        printf("lower: lower=%s", get(p));
        printf(" upper=%s", get(q));
        CHECK(r2(q, p, RENAME_NOREPLACE) != 0 && errno == EEXIST);
        CHECK(r2(q, p, 0) == 0 && access(q, F_OK) != 0 && unlink(p) == 0);
    }

    snprintf(p, sizeof p, "%s/sub", d1);
    CHECK(unlink(p) == 0);
    snprintf(p, sizeof p, "%s/f", d2);
    CHECK(rmdir(p) == 0 && rmdir(d1) == 0 && rmdir(d2) == 0);
    snprintf(p, sizeof p, "%s/sym", base);
    CHECK(unlink(p) == 0 && unlink(b) == 0 && rmdir(base) == 0);
    ok();
    return 0;
}
