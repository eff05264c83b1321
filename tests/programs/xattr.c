/* Extended attributes on tmpfs (issue #10): user.* attributes, the
 * create/replace flags, size probing and ERANGE, listing, removal, the
 * namespaces and file types that refuse them. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include "check.h"

int main(void)
{
    char dir[] = "/dev/shm/xattr.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[64], fifo[64], link[64];
    snprintf(path, sizeof path, "%s/f", dir);
    snprintf(fifo, sizeof fifo, "%s/p", dir);
    snprintf(link, sizeof link, "%s/l", dir);
    int fd = open(path, O_CREAT | O_RDWR, 0644);
    CHECK(fd >= 0);

    CHECK_ERR(getxattr(path, "user.a", NULL, 0), ENODATA);
    CHECK(listxattr(path, NULL, 0) == 0);
    CHECK(setxattr(path, "user.a", "hello", 5, 0) == 0);
    CHECK(getxattr(path, "user.a", NULL, 0) == 5);
    char buf[64];
    CHECK(getxattr(path, "user.a", buf, sizeof buf) == 5 && memcmp(buf, "hello", 5) == 0);
    CHECK_ERR(getxattr(path, "user.a", buf, 2), ERANGE);
    CHECK_ERR(setxattr(path, "user.a", "x", 1, XATTR_CREATE), EEXIST);
    CHECK_ERR(setxattr(path, "user.b", "x", 1, XATTR_REPLACE), ENODATA);
    CHECK(setxattr(path, "user.a", "hi", 2, XATTR_REPLACE) == 0);
    CHECK(fgetxattr(fd, "user.a", buf, sizeof buf) == 2 && memcmp(buf, "hi", 2) == 0);
    CHECK(fsetxattr(fd, "user.empty", NULL, 0, 0) == 0);
    CHECK(getxattr(path, "user.empty", buf, sizeof buf) == 0);
    CHECK(setxattr(path, "user.t", "v", 1, 0) == 0);

    /* The list: every name with its NUL (in no promised order). */
    const char want[] = "user.a\0user.empty\0user.t";
    CHECK(listxattr(path, NULL, 0) == sizeof want);
    CHECK(listxattr(path, buf, sizeof buf) == sizeof want);
    int seen = 0;
    for (char *p = buf; p < buf + sizeof want; p += strlen(p) + 1)
        seen |= !strcmp(p, "user.a") | !strcmp(p, "user.empty") << 1 | !strcmp(p, "user.t") << 2;
    CHECK(seen == 7);
    CHECK_ERR(listxattr(path, buf, 3), ERANGE);

    CHECK(removexattr(path, "user.a") == 0);
    CHECK_ERR(removexattr(path, "user.a"), ENODATA);
    CHECK(fremovexattr(fd, "user.t") == 0);
    CHECK(flistxattr(fd, buf, sizeof buf) == sizeof "user.empty");

    /* Names: a known namespace, 1..255 bytes. */
    CHECK_ERR(setxattr(path, "bogus.a", "x", 1, 0), EOPNOTSUPP);
    CHECK_ERR(getxattr(path, "bogus.a", buf, sizeof buf), EOPNOTSUPP);
    CHECK_ERR(setxattr(path, "", "x", 1, 0), ERANGE);
    char longname[300];
    memset(longname, 'a', sizeof longname);
    memcpy(longname, "user.", 5);
    longname[256] = 0;
    CHECK_ERR(setxattr(path, longname, "x", 1, 0), ERANGE);
    longname[255] = 0;
    CHECK(setxattr(path, longname, "x", 1, 0) == 0);
    char *big = calloc(1, 65537);
    CHECK(big != NULL);
    CHECK_ERR(setxattr(path, "user.big", big, 65537, 0), E2BIG);
    free(big);
    CHECK_ERR(setxattr(path, "user.a", "x", 1, 4), EINVAL);

    /* user.* only on regular files and directories. */
    CHECK(setxattr(dir, "user.d", "x", 1, 0) == 0);
    CHECK(mknod(fifo, S_IFIFO | 0600, 0) == 0);
    CHECK_ERR(setxattr(fifo, "user.a", "x", 1, 0), EPERM);
    CHECK_ERR(getxattr(fifo, "user.a", buf, sizeof buf), ENODATA);
    CHECK(symlink(path, link) == 0);
    CHECK_ERR(lsetxattr(link, "user.a", "x", 1, 0), EPERM);
    CHECK(setxattr(link, "user.via", "x", 1, 0) == 0);      /* follows the link */
    CHECK(getxattr(path, "user.via", buf, sizeof buf) == 1);
    CHECK_ERR(getxattr("/nonexistent", "user.a", buf, sizeof buf), ENOENT);
    int opath = open(path, O_PATH);
    CHECK(opath >= 0);
    CHECK_ERR(fgetxattr(opath, "user.via", buf, sizeof buf), EBADF);

    close(opath);
    close(fd);
    unlink(link);
    unlink(fifo);
    unlink(path);
    rmdir(dir);
    ok();
    return 0;
}
