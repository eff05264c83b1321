/* File and directory syscalls, all inside a fresh directory under /tmp. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include "check.h"

struct linux_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

/* Lists dir with getdents64; returns a bitmask of which of names[] were
 * seen (and checks "." and ".." are there and nothing else). */
static int list_dir(int dfd, const char *const names[], int n)
{
    char buf[1024];
    int seen = 0, dots = 0;
    long nread;
    while ((nread = syscall(SYS_getdents64, dfd, buf, sizeof buf)) > 0) {
        for (long off = 0; off < nread;) {
            struct linux_dirent64 *d = (void *)(buf + off);
            CHECK(d->d_reclen > 0 && d->d_ino != 0);
            if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0) {
                CHECK(d->d_type == DT_DIR);
                dots++;
            } else {
                int found = 0;
                for (int i = 0; i < n; i++)
                    if (strcmp(d->d_name, names[i]) == 0) {
                        CHECK(!(seen & (1 << i)));
                        seen |= 1 << i;
                        found = 1;
                    }
                if (!found)
                    fprintf(stderr, "unexpected entry %s\n", d->d_name);
                CHECK(found);
            }
            off += d->d_reclen;
        }
    }
    CHECK(nread == 0);
    CHECK(dots == 2);
    return seen;
}

int main(void)
{
    char dir[] = "/tmp/pyvisor-files-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    CHECK(chdir(dir) == 0);
    char cwd[PATH_MAX];
    CHECK(getcwd(cwd, sizeof cwd) == cwd && strcmp(cwd, dir) == 0);
    struct stat st;
    char buf[64];

    /* creat/write/read/lseek. */
    mode_t old_umask = umask(022);
    int fd = creat("a", 0666);
    CHECK(fd >= 0);
    CHECK(fstat(fd, &st) == 0);
    CHECK(S_ISREG(st.st_mode) && (st.st_mode & 07777) == 0644);  /* umask */
    CHECK(write(fd, "hello world", 11) == 11);
    CHECK_ERR(read(fd, buf, 1), EBADF);  /* creat is O_WRONLY */
    CHECK(close(fd) == 0);
    umask(077);
    fd = open("private", O_CREAT | O_RDWR, 0666);
    CHECK(fd >= 0 && fstat(fd, &st) == 0 && (st.st_mode & 0777) == 0600);
    CHECK(close(fd) == 0);
    umask(old_umask);

    fd = open("a", O_RDWR);
    CHECK(fd >= 0);
    CHECK(read(fd, buf, 5) == 5 && memcmp(buf, "hello", 5) == 0);
    CHECK(lseek(fd, 0, SEEK_CUR) == 5);
    CHECK(lseek(fd, 1, SEEK_CUR) == 6);
    CHECK(read(fd, buf, 5) == 5 && memcmp(buf, "world", 5) == 0);
    CHECK(read(fd, buf, 5) == 0);
    CHECK(lseek(fd, -5, SEEK_END) == 6);
    CHECK(lseek(fd, 0, SEEK_SET) == 0);
    CHECK_ERR(lseek(fd, -1, SEEK_SET), EINVAL);

    /* pread/pwrite do not move the offset. */
    CHECK(pwrite(fd, "W", 1, 6) == 1);
    CHECK(pread(fd, buf, 5, 6) == 5 && memcmp(buf, "World", 5) == 0);
    CHECK(lseek(fd, 0, SEEK_CUR) == 0);

    /* writev/readv gather and scatter. */
    CHECK(lseek(fd, 0, SEEK_END) == 11);
    struct iovec wv[2] = {{"-ab", 3}, {"cd", 2}};
    CHECK(writev(fd, wv, 2) == 5);
    CHECK(lseek(fd, 11, SEEK_SET) == 11);
    char x[2], y[3];
    struct iovec rv[2] = {{x, 2}, {y, 3}};
    CHECK(readv(fd, rv, 2) == 5);
    CHECK(memcmp(x, "-a", 2) == 0 && memcmp(y, "bcd", 3) == 0);

    /* Writing past the end leaves a hole of zeros. */
    CHECK(pwrite(fd, "Z", 1, 100) == 1);
    CHECK(pread(fd, buf, 2, 50) == 2 && buf[0] == 0 && buf[1] == 0);
    CHECK(fstat(fd, &st) == 0 && st.st_size == 101);

    /* ftruncate/truncate. */
    CHECK(ftruncate(fd, 5) == 0);
    CHECK(fstat(fd, &st) == 0 && st.st_size == 5);
    CHECK(truncate("a", 3) == 0);
    CHECK(stat("a", &st) == 0 && st.st_size == 3);
    CHECK(truncate("a", 10) == 0);
    CHECK(pread(fd, buf, 10, 0) == 10 && memcmp(buf, "hel\0\0", 5) == 0);

    /* chmod/fchmod, chown (as root). */
    CHECK(fchmod(fd, 0600) == 0);
    CHECK(stat("a", &st) == 0 && (st.st_mode & 07777) == 0600);
    CHECK(chmod("a", 0755) == 0);
    CHECK(fstat(fd, &st) == 0 && (st.st_mode & 07777) == 0755);
    CHECK(chown("a", 1234, 5678) == 0);
    CHECK(stat("a", &st) == 0 && st.st_uid == 1234 && st.st_gid == 5678);
    CHECK(fchown(fd, 0, 0) == 0);
    CHECK(stat("a", &st) == 0 && st.st_uid == 0 && st.st_gid == 0);

    /* access: root may read/write anything but needs some x bit to exec. */
    CHECK(access("a", R_OK | W_OK | X_OK) == 0);
    CHECK(chmod("a", 0444) == 0);
    CHECK(access("a", W_OK) == 0);
    CHECK_ERR(access("a", X_OK), EACCES);
    CHECK_ERR(access("missing", F_OK), ENOENT);
    CHECK(chmod("a", 0644) == 0);

    /* stat family agrees on the inode. */
    struct stat st2;
    CHECK(fstat(fd, &st) == 0);
    CHECK(stat("a", &st2) == 0 && st2.st_ino == st.st_ino &&
          st2.st_dev == st.st_dev && st2.st_nlink == 1);
    CHECK(close(fd) == 0);

    /* O_EXCL, ENOENT, ENOTDIR, EISDIR, O_DIRECTORY. */
    CHECK_ERR(open("a", O_CREAT | O_EXCL | O_WRONLY, 0600), EEXIST);
    CHECK_ERR(open("missing", O_RDONLY), ENOENT);
    CHECK_ERR(open("missing/x", O_RDONLY), ENOENT);
    CHECK_ERR(open("a/x", O_RDONLY), ENOTDIR);
    CHECK_ERR(open("a", O_RDONLY | O_DIRECTORY), ENOTDIR);
    CHECK_ERR(open(".", O_WRONLY), EISDIR);
    fd = open(".", O_RDONLY | O_DIRECTORY);
    CHECK(fd >= 0);
    CHECK_ERR(read(fd, buf, 1), EISDIR);
    CHECK(close(fd) == 0);

    /* mkdir/rmdir. */
    CHECK(mkdir("d", 0755) == 0);
    CHECK_ERR(mkdir("d", 0755), EEXIST);
    CHECK(stat("d", &st) == 0 && S_ISDIR(st.st_mode) && st.st_nlink == 2);
    CHECK(stat(".", &st) == 0 && st.st_nlink == 3);
    CHECK_ERR(rmdir("a"), ENOTDIR);

    /* openat relative to a directory fd, and getdents64 of three files. */
    int dfd = open("d", O_RDONLY | O_DIRECTORY);
    CHECK(dfd >= 0);
    const char *const names[] = {"one", "two", "three"};
    for (int i = 0; i < 3; i++) {
        fd = openat(dfd, names[i], O_CREAT | O_WRONLY, 0644);
        CHECK(fd >= 0);
        CHECK(write(fd, names[i], strlen(names[i])) == (ssize_t)strlen(names[i]));
        CHECK(close(fd) == 0);
    }
    CHECK(stat("d/two", &st) == 0 && st.st_size == 3);
    CHECK(fstatat(dfd, "three", &st, 0) == 0 && st.st_size == 5);
    CHECK(list_dir(dfd, names, 3) == 7);
    CHECK_ERR(rmdir("d"), ENOTEMPTY);

    /* statx. */
    struct statx stx;
    CHECK(statx(dfd, "one", 0, STATX_BASIC_STATS, &stx) == 0);
    CHECK(stx.stx_size == 3 && S_ISREG(stx.stx_mode));
    CHECK((stx.stx_mask & (STATX_SIZE | STATX_MODE)) == (STATX_SIZE | STATX_MODE));
    CHECK(statx(AT_FDCWD, "d", 0, STATX_BASIC_STATS, &stx) == 0);
    CHECK(S_ISDIR(stx.stx_mode));

    /* rename, also over an existing file; unlink. */
    CHECK(renameat(dfd, "one", dfd, "uno") == 0);
    CHECK_ERR(fstatat(dfd, "one", &st, 0), ENOENT);
    CHECK(rename("d/uno", "d/two") == 0);
    CHECK(stat("d/two", &st) == 0 && st.st_size == 3);
    fd = open("d/two", O_RDONLY);
    CHECK(fd >= 0 && read(fd, buf, 3) == 3 && memcmp(buf, "one", 3) == 0);
    CHECK(close(fd) == 0);
    CHECK(unlinkat(dfd, "two", 0) == 0);
    CHECK(unlink("d/three") == 0);
    CHECK_ERR(unlink("d/three"), ENOENT);
    CHECK_ERR(unlink("d"), EISDIR);

    /* An unlinked file stays readable through an open fd. */
    fd = open("d/tmp", O_CREAT | O_RDWR, 0600);
    CHECK(fd >= 0 && write(fd, "still", 5) == 5);
    CHECK(unlink("d/tmp") == 0);
    CHECK(pread(fd, buf, 5, 0) == 5 && memcmp(buf, "still", 5) == 0);
    CHECK(fstat(fd, &st) == 0 && st.st_nlink == 0);
    CHECK(close(fd) == 0);

    /* symlink/readlink/lstat, O_NOFOLLOW. */
    CHECK(symlink("a", "sl") == 0);
    ssize_t n = readlink("sl", buf, sizeof buf);
    CHECK(n == 1 && buf[0] == 'a');
    CHECK(lstat("sl", &st) == 0 && S_ISLNK(st.st_mode) && st.st_size == 1);
    CHECK(stat("sl", &st) == 0 && S_ISREG(st.st_mode));
    CHECK_ERR(open("sl", O_RDONLY | O_NOFOLLOW), ELOOP);
    CHECK_ERR(readlink("a", buf, sizeof buf), EINVAL);
    CHECK(symlink("loop", "loop") == 0);
    CHECK_ERR(open("loop", O_RDONLY), ELOOP);
    CHECK(symlink("nowhere", "dangling") == 0);
    CHECK_ERR(stat("dangling", &st), ENOENT);
    CHECK(lstat("dangling", &st) == 0);
    fd = open("sl", O_RDONLY);
    CHECK(fd >= 0 && read(fd, buf, 3) == 3 && memcmp(buf, "hel", 3) == 0);
    CHECK(close(fd) == 0);

    /* link: same inode, link count 2. */
    CHECK(link("a", "d/hard") == 0);
    CHECK(stat("a", &st) == 0 && st.st_nlink == 2);
    CHECK(stat("d/hard", &st2) == 0 && st2.st_ino == st.st_ino);
    CHECK_ERR(link("a", "d/hard"), EEXIST);
    CHECK(unlink("d/hard") == 0);
    CHECK(stat("a", &st) == 0 && st.st_nlink == 1);

    /* chdir/fchdir/getcwd. */
    CHECK(chdir("d") == 0);
    CHECK(getcwd(cwd, sizeof cwd) == cwd);
    CHECK(strncmp(cwd, dir, strlen(dir)) == 0 && strcmp(cwd + strlen(dir), "/d") == 0);
    CHECK(chdir("..") == 0);
    CHECK(getcwd(cwd, sizeof cwd) == cwd && strcmp(cwd, dir) == 0);
    CHECK(fchdir(dfd) == 0);
    CHECK(access("../a", F_OK) == 0);
    CHECK_ERR(chdir("../a"), ENOTDIR);
    CHECK(close(dfd) == 0);
    CHECK_ERR(fchdir(dfd), EBADF);

    /* Clean up: everything removes and the directory goes away. */
    CHECK(chdir("/") == 0);
    CHECK(chdir(dir) == 0);
    const char *files[] = {"a", "private", "sl", "loop", "dangling"};
    for (int i = 0; i < 5; i++)
        CHECK(unlink(files[i]) == 0);
    CHECK(rmdir("d") == 0);
    CHECK(chdir("/") == 0);
    CHECK(rmdir(dir) == 0);
    CHECK_ERR(stat(dir, &st), ENOENT);

    ok();
    return 0;
}
