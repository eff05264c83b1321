/* Reads into a buffer whose tail is unmapped (PROT_NONE): read, pread,
 * readv, preadv of a file and read of a pipe return what fits before the
 * fault, and the file position or the pipe's contents move only by that; a
 * buffer with no valid byte is EFAULT and consumes nothing.  Printed for
 * comparison with Linux (copy_to_user stops at the first fault). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include "check.h"

static const char *res(long r)
{
    static char buf[64];
    if (r < 0)
        snprintf(buf, sizeof buf, "-1 %s", strerrorname_np(errno));
    else
        snprintf(buf, sizeof buf, "%ld", r);
    return buf;
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    long page = sysconf(_SC_PAGESIZE);
    char *map = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(map != MAP_FAILED);
    CHECK(mprotect(map + page, page, PROT_NONE) == 0);
    char *one = map + page - 1;          /* one writable byte, then the guard page */
    char *none = map + page;

    char path[] = "/tmp/partial-read-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    unlink(path);
    CHECK(write(fd, "hello world", 11) == 11);
    CHECK(lseek(fd, 0, SEEK_SET) == 0);

    printf("read big: %s", res(read(fd, one, page)));
    printf(" byte %c pos %ld\n", *one, (long)lseek(fd, 0, SEEK_CUR));
    printf("read small: %s", res(read(fd, one, 10)));
    printf(" byte %c pos %ld\n", *one, (long)lseek(fd, 0, SEEK_CUR));
    printf("read none: %s pos %ld\n", res(read(fd, none, 10)), (long)lseek(fd, 0, SEEK_CUR));
    printf("pread: %s byte %c\n", res(pread(fd, one, 10, 6)), *one);
    struct iovec iov[2] = {{map, 3}, {one, 10}};
    CHECK(lseek(fd, 0, SEEK_SET) == 0);
    printf("readv: %s", res(readv(fd, iov, 2)));
    printf(" got %.3s%c pos %ld\n", map, *one, (long)lseek(fd, 0, SEEK_CUR));
    struct iovec bad[2] = {{map, 2}, {none, 10}};
    printf("preadv second bad: %s got %.2s\n", res(preadv(fd, bad, 2, 8)), map);
    struct iovec first_bad[1] = {{none, 10}};
    printf("preadv first bad: %s\n", res(preadv(fd, first_bad, 1, 0)));

    int p[2];
    CHECK(pipe(p) == 0);
    CHECK(write(p[1], "abcdef", 6) == 6);
    printf("pipe read none: %s\n", res(read(p[0], none, 4)));
    printf("pipe read one: %s byte %c\n", res(read(p[0], one, 4)), *one);
    char rest[16] = {0};
    printf("pipe rest: %s %s\n", res(read(p[0], rest, sizeof rest)), rest);
    ok();
    return 0;
}
