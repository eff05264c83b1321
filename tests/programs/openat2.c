/* openat2: struct open_how's checks and every RESOLVE_* flag.
 *
 * Usage: openat2 DIR.  Builds a small tree in a fresh directory under DIR:
 *   dir/file, dir/dotdot -> .., rel -> dir/file, up -> ../.., abs -> /dir/file
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "check.h"

#ifndef RESOLVE_NO_XDEV
#define RESOLVE_NO_XDEV 0x01
#define RESOLVE_NO_MAGICLINKS 0x02
#define RESOLVE_NO_SYMLINKS 0x04
#define RESOLVE_BENEATH 0x08
#define RESOLVE_IN_ROOT 0x10
#define RESOLVE_CACHED 0x20
#endif

struct how {
    uint64_t flags, mode, resolve;
    uint64_t extra[2];
};

static int o2(int dirfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve)
{
    struct how h = {flags, mode, resolve, {0, 0}};
    return syscall(SYS_openat2, dirfd, path, &h, 24);
}

static ino_t ino_of(int fd)
{
    struct stat st;
    CHECK(fstat(fd, &st) == 0);
    return st.st_ino;
}

static void closes(int fd)
{
    CHECK(fd >= 0);
    CHECK(close(fd) == 0);
}

int main(int argc, char **argv)
{
    char base[2048], p[2200];
    CHECK(argc == 2);
    snprintf(base, sizeof base, "%s/openat2XXXXXX", argv[1]);
    CHECK(mkdtemp(base) != NULL);
    int b = open(base, O_PATH | O_DIRECTORY);
    CHECK(b >= 0);
    CHECK(mkdirat(b, "dir", 0755) == 0);
    closes(openat(b, "dir/file", O_CREAT | O_WRONLY, 0644));
    CHECK(symlinkat("..", b, "dir/dotdot") == 0);
    CHECK(symlinkat("dir/file", b, "rel") == 0);
    CHECK(symlinkat("../..", b, "up") == 0);
    CHECK(symlinkat("/dir/file", b, "abs") == 0);
    int file = openat(b, "dir/file", O_RDONLY);
    CHECK(file >= 0);
    ino_t file_ino = ino_of(file);

    /* struct open_how: size and fields. */
    struct how h = {O_RDONLY, 0, 0, {0, 0}};
    CHECK_ERR(syscall(SYS_openat2, b, "dir/file", &h, 0), EINVAL);
    CHECK_ERR(syscall(SYS_openat2, b, "dir/file", &h, 23), EINVAL);
    CHECK_ERR(syscall(SYS_openat2, b, "dir/file", &h, 4097), E2BIG);
    closes(syscall(SYS_openat2, b, "dir/file", &h, sizeof h));  /* larger, zeroes: fine */
    h.extra[1] = 1;
    CHECK_ERR(syscall(SYS_openat2, b, "dir/file", &h, sizeof h), E2BIG);
    CHECK_ERR(syscall(SYS_openat2, b, "dir/file", NULL, 24), EFAULT);
    CHECK_ERR(o2(b, "dir/file", 1ull << 40, 0, 0), EINVAL);
    CHECK_ERR(o2(b, "dir/file", 0x4000000, 0, 0), EINVAL);          /* no such flag */
    CHECK_ERR(o2(b, "dir/file", O_RDONLY, 0, 0x40), EINVAL);
    CHECK_ERR(o2(b, "dir/file", O_RDONLY, 0, RESOLVE_BENEATH | RESOLVE_IN_ROOT), EINVAL);
    CHECK_ERR(o2(b, "dir/file", O_RDONLY, 0644, 0), EINVAL);        /* mode without O_CREAT */
    CHECK_ERR(o2(b, "dir/new", O_CREAT | O_WRONLY, 010000, 0), EINVAL);
    CHECK_ERR(o2(b, "dir/new", O_CREAT | O_DIRECTORY, 0644, 0), EINVAL);
    CHECK_ERR(o2(b, "dir/new", O_CREAT | O_WRONLY, 0644, RESOLVE_CACHED), EAGAIN);
    CHECK_ERR(o2(b, "dir/file", O_TRUNC | O_WRONLY, 0, RESOLVE_CACHED), EAGAIN);
    CHECK_ERR(o2(b, "dir", O_TMPFILE | O_RDWR, 0600, RESOLVE_CACHED), EAGAIN);
    CHECK_ERR(o2(b, NULL, O_RDONLY, 0, 0), EFAULT);
    int fd = o2(b, "dir/new", O_CREAT | O_WRONLY | O_CLOEXEC, 0600, 0);
    CHECK(fd >= 0 && fcntl(fd, F_GETFD) == FD_CLOEXEC);
    closes(fd);
    CHECK(unlinkat(b, "dir/new", 0) == 0);
    printf("open_how: ok\n");

    /* RESOLVE_NO_SYMLINKS: no symlink anywhere, unless the last is not followed. */
    CHECK(ino_of(fd = o2(b, "dir/file", O_RDONLY, 0, RESOLVE_NO_SYMLINKS)) == file_ino);
    closes(fd);
    CHECK_ERR(o2(b, "rel", O_RDONLY, 0, RESOLVE_NO_SYMLINKS), ELOOP);
    CHECK_ERR(o2(b, "dir/dotdot/dir/file", O_RDONLY, 0, RESOLVE_NO_SYMLINKS), ELOOP);
    closes(o2(b, "rel", O_PATH | O_NOFOLLOW, 0, RESOLVE_NO_SYMLINKS));
    CHECK_ERR(o2(b, "rel", O_RDONLY | O_NOFOLLOW, 0, RESOLVE_NO_SYMLINKS), ELOOP);
    snprintf(p, sizeof p, "/proc/self/fd/%d", file);
    CHECK_ERR(o2(AT_FDCWD, p, O_RDONLY, 0, RESOLVE_NO_SYMLINKS), ELOOP);
    printf("no_symlinks: ok\n");

    /* RESOLVE_NO_MAGICLINKS: /proc's fd, exe, cwd links; plain symlinks are fine. */
    CHECK_ERR(o2(AT_FDCWD, p, O_RDONLY, 0, RESOLVE_NO_MAGICLINKS), ELOOP);
    CHECK_ERR(o2(AT_FDCWD, "/proc/self/exe", O_RDONLY, 0, RESOLVE_NO_MAGICLINKS), ELOOP);
    CHECK_ERR(o2(AT_FDCWD, "/proc/self/cwd/.", O_RDONLY, 0, RESOLVE_NO_MAGICLINKS), ELOOP);
    closes(o2(AT_FDCWD, p, O_PATH | O_NOFOLLOW, 0, RESOLVE_NO_MAGICLINKS));
    closes(o2(AT_FDCWD, "/proc/self/status", O_RDONLY, 0, RESOLVE_NO_MAGICLINKS));
    CHECK(ino_of(fd = o2(b, "rel", O_RDONLY, 0, RESOLVE_NO_MAGICLINKS)) == file_ino);
    closes(fd);
    CHECK(ino_of(fd = o2(AT_FDCWD, p, O_RDONLY, 0, 0)) == file_ino);
    closes(fd);
    printf("no_magiclinks: ok\n");

    /* RESOLVE_BENEATH: never above dirfd, no absolute path, no magic link. */
    CHECK(ino_of(fd = o2(b, "dir/../rel", O_RDONLY, 0, RESOLVE_BENEATH)) == file_ino);
    closes(fd);
    CHECK(ino_of(fd = o2(b, "dir/dotdot/dir/file", O_RDONLY, 0, RESOLVE_BENEATH)) == file_ino);
    closes(fd);
    CHECK_ERR(o2(b, "..", O_PATH, 0, RESOLVE_BENEATH), EXDEV);
    CHECK_ERR(o2(b, "dir/../../x", O_RDONLY, 0, RESOLVE_BENEATH), EXDEV);
    CHECK_ERR(o2(b, "/etc/passwd", O_RDONLY, 0, RESOLVE_BENEATH), EXDEV);
    CHECK_ERR(o2(b, "abs", O_RDONLY, 0, RESOLVE_BENEATH), EXDEV);
    CHECK_ERR(o2(b, "up", O_PATH, 0, RESOLVE_BENEATH), EXDEV);
    int proc = open("/proc/self", O_PATH | O_DIRECTORY);
    CHECK(proc >= 0);
    snprintf(p, sizeof p, "fd/%d", file);
    CHECK_ERR(o2(proc, p, O_RDONLY, 0, RESOLVE_BENEATH), EXDEV);
    closes(o2(b, "dir/new", O_CREAT | O_WRONLY, 0600, RESOLVE_BENEATH));
    CHECK_ERR(o2(b, "../new", O_CREAT | O_WRONLY, 0600, RESOLVE_BENEATH), EXDEV);
    CHECK(unlinkat(b, "dir/new", 0) == 0);
    printf("beneath: ok\n");

    /* RESOLVE_IN_ROOT: dirfd is "/", for the path and for absolute symlinks; ".." stays. */
    CHECK(ino_of(fd = o2(b, "/dir/file", O_RDONLY, 0, RESOLVE_IN_ROOT)) == file_ino);
    closes(fd);
    CHECK(ino_of(fd = o2(b, "abs", O_RDONLY, 0, RESOLVE_IN_ROOT)) == file_ino);
    closes(fd);
    CHECK(ino_of(fd = o2(b, "../../../dir/file", O_RDONLY, 0, RESOLVE_IN_ROOT)) == file_ino);
    closes(fd);
    CHECK(ino_of(fd = o2(b, "up/up/rel", O_RDONLY, 0, RESOLVE_IN_ROOT)) == file_ino);
    closes(fd);
    CHECK_ERR(o2(b, "abs", O_RDONLY, 0, 0), ENOENT);                 /* /dir/file */
    CHECK_ERR(o2(proc, p, O_RDONLY, 0, RESOLVE_IN_ROOT), EXDEV);
    printf("in_root: ok\n");

    /* RESOLVE_NO_XDEV: no mount crossing, down, up or through a magic link. */
    int root = open("/", O_PATH | O_DIRECTORY);
    CHECK(root >= 0);
    CHECK_ERR(o2(root, "proc/self/status", O_RDONLY, 0, RESOLVE_NO_XDEV), EXDEV);
    CHECK_ERR(o2(AT_FDCWD, "/proc/self/status", O_RDONLY, 0, RESOLVE_NO_XDEV), EXDEV);
    closes(o2(proc, "status", O_RDONLY, 0, RESOLVE_NO_XDEV));
    CHECK_ERR(o2(proc, "../..", O_PATH, 0, RESOLVE_NO_XDEV), EXDEV);
    CHECK_ERR(o2(proc, p, O_RDONLY, 0, RESOLVE_NO_XDEV), EXDEV);
    closes(o2(proc, "/etc", O_PATH, 0, RESOLVE_NO_XDEV));   /* an absolute path may start */
    CHECK(ino_of(fd = o2(b, "rel", O_RDONLY, 0, RESOLVE_NO_XDEV)) == file_ino);
    closes(fd);
    printf("no_xdev: ok\n");

    /* RESOLVE_CACHED: a path just looked up is cached. */
    CHECK(ino_of(fd = o2(b, "dir/file", O_RDONLY, 0, RESOLVE_CACHED)) == file_ino);
    closes(fd);
    printf("cached: ok\n");

    CHECK(close(file) == 0 && close(proc) == 0 && close(root) == 0);
    const char *rm[] = {"dir/file", "dir/dotdot", "rel", "up", "abs"};
    for (int i = 0; i < 5; i++)
        CHECK(unlinkat(b, rm[i], 0) == 0);
    CHECK(unlinkat(b, "dir", AT_REMOVEDIR) == 0 && close(b) == 0 && rmdir(base) == 0);
    ok();
    return 0;
}
