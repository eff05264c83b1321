/* O_TMPFILE, and giving the file a name with linkat (AT_EMPTY_PATH, or through
 * /proc/self/fd/N); O_EXCL forbids it, and so does a file whose last name went.
 *
 * Usage: tmpfile DIR.  Works in a fresh directory under DIR.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <dirent.h>
#include <unistd.h>

#include "check.h"

int main(int argc, char **argv)
{
    char base[2048], p[2200], q[2200], proc[64], link[4096];
    struct stat st;
    CHECK(argc == 2);
    umask(022);
    snprintf(base, sizeof base, "%s/tmpfileXXXXXX", argv[1]);
    CHECK(mkdtemp(base) != NULL);

    /* Errors. */
    CHECK_ERR(open(base, O_TMPFILE | O_RDONLY, 0600), EINVAL);
    CHECK_ERR(open(base, O_TMPFILE | O_RDWR | O_CREAT, 0600), EINVAL);
    snprintf(p, sizeof p, "%s/missing", base);
    CHECK_ERR(open(p, O_TMPFILE | O_RDWR, 0600), ENOENT);
    snprintf(p, sizeof p, "%s/file", base);
    int fd = open(p, O_CREAT | O_WRONLY, 0644);
    CHECK(fd >= 0 && close(fd) == 0);
    CHECK_ERR(open(p, O_TMPFILE | O_RDWR, 0600), ENOTDIR);

    /* An unnamed file: link count 0, the mode less the umask, data as any file. */
    fd = open(base, O_TMPFILE | O_RDWR, 0666);
    CHECK(fd >= 0);
    CHECK(fstat(fd, &st) == 0);
    printf("tmpfile: nlink=%ld mode=%o size=%ld\n", (long)st.st_nlink,
           st.st_mode & 07777, (long)st.st_size);
    CHECK(S_ISREG(st.st_mode));
    CHECK(write(fd, "hello", 5) == 5);
    char buf[16] = "";
    CHECK(pread(fd, buf, sizeof buf, 0) == 5 && memcmp(buf, "hello", 5) == 0);
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(proc, link, sizeof link - 1);
    CHECK(n > 0);
    link[n] = 0;
    size_t bl = strlen(base);
    CHECK(strncmp(link, base, bl) == 0 && link[bl] == '/' && link[bl + 1] == '#');
    printf("proc link: %s\n", strstr(link, " (deleted)") ? "#N (deleted)" : link + bl);
    int count = 0;

    /* linkat(AT_EMPTY_PATH) gives it a name; a second name too. */
    snprintf(p, sizeof p, "%s/named", base);
    CHECK(linkat(fd, "", AT_FDCWD, p, AT_EMPTY_PATH) == 0);
    CHECK(fstat(fd, &st) == 0);
    printf("after linkat: nlink=%ld\n", (long)st.st_nlink);
    CHECK(stat(p, &st) == 0 && st.st_size == 5);
    snprintf(q, sizeof q, "%s/named2", base);
    CHECK(linkat(fd, "", AT_FDCWD, q, AT_EMPTY_PATH) == 0);
    CHECK_ERR(linkat(fd, "", AT_FDCWD, q, AT_EMPTY_PATH), EEXIST);
    CHECK(unlink(p) == 0 && unlink(q) == 0);
    /* Its names gone again, it cannot get one back: only O_TMPFILE files can. */
    CHECK_ERR(linkat(fd, "", AT_FDCWD, p, AT_EMPTY_PATH), ENOENT);
    CHECK(close(fd) == 0);

    /* Through /proc/self/fd/N, following the magic link. */
    fd = open(base, O_TMPFILE | O_WRONLY, 0640);
    CHECK(fd >= 0);
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    snprintf(p, sizeof p, "%s/viaproc", base);
    CHECK(linkat(AT_FDCWD, proc, AT_FDCWD, p, AT_SYMLINK_FOLLOW) == 0);
    CHECK(lstat(p, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 07777) == 0640);
    CHECK_ERR(linkat(AT_FDCWD, proc, AT_FDCWD, q, 0), EXDEV);   /* the proc link itself */
    CHECK(close(fd) == 0 && unlink(p) == 0);

    /* O_EXCL: never linkable. */
    fd = open(base, O_TMPFILE | O_RDWR | O_EXCL, 0600);
    CHECK(fd >= 0);
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    CHECK_ERR(linkat(fd, "", AT_FDCWD, p, AT_EMPTY_PATH), ENOENT);
    CHECK_ERR(linkat(AT_FDCWD, proc, AT_FDCWD, p, AT_SYMLINK_FOLLOW), ENOENT);
    CHECK(close(fd) == 0);

    /* An ordinary file whose last name went: ENOENT as well. */
    snprintf(p, sizeof p, "%s/file", base);
    fd = open(p, O_RDWR);
    CHECK(fd >= 0 && unlink(p) == 0);
    CHECK_ERR(linkat(fd, "", AT_FDCWD, q, AT_EMPTY_PATH), ENOENT);
    CHECK(close(fd) == 0);

    /* Nothing of them is left in the directory. */
    fd = open(base, O_RDONLY | O_DIRECTORY);
    CHECK(fd >= 0);
    char d[4096];
    long got = syscall(217 /* getdents64 */, fd, d, sizeof d);
    for (long off = 0; off < got;) {
        unsigned short reclen = *(unsigned short *)(d + off + 16);
        count++;
        off += reclen;
    }
    printf("entries left: %d\n", count - 2);
    CHECK(close(fd) == 0 && rmdir(base) == 0);
    ok();
    return 0;
}
