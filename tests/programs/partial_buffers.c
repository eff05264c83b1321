/* Transfers with a buffer whose tail is unmapped (PROT_NONE): read, pread,
 * readv, preadv of a regular file return what fits before the fault and the
 * position moves only by that, writev/pwritev write the readable prefix; a
 * buffer with no valid byte is EFAULT; a pipe read that would fault is EFAULT
 * and consumes nothing; an iovec outside the address space is EFAULT even
 * when empty.  Printed for comparison with Linux. */
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

    /* Writes: the second iovec runs into the guard page. */
    char wpath[] = "/tmp/partial-write-XXXXXX";
    int wfd = mkstemp(wpath);
    CHECK(wfd >= 0);
    unlink(wpath);
    memset(map, 'w', page);
    struct iovec wv[2] = {{map, page}, {map, 2 * page}};
    printf("pwritev second partly bad: %s", res(pwritev(wfd, wv, 2, 0)));
    printf(" size %ld\n", (long)lseek(wfd, 0, SEEK_END));
    printf("writev second partly bad: %s", res(writev(wfd, wv, 2)));
    printf(" size %ld\n", (long)lseek(wfd, 0, SEEK_END));
    struct iovec wbad[1] = {{none, 10}};
    printf("writev all bad: %s\n", res(writev(wfd, wbad, 1)));
    printf("write one good byte: %s", res(write(wfd, one, 10)));
    printf(" size %ld\n", (long)lseek(wfd, 0, SEEK_END));
    /* A file mapping past the file's end (SIGBUS to touch): the bytes before it. */
    char mpath[] = "/tmp/partial-map-XXXXXX";
    int mfd = mkstemp(mpath);
    CHECK(mfd >= 0);
    unlink(mpath);
    CHECK(ftruncate(mfd, page) == 0);
    char *fmap = mmap(NULL, 2 * page, PROT_READ, MAP_PRIVATE, mfd, 0);
    CHECK(fmap != MAP_FAILED);
    struct iovec mv[2] = {{fmap, page}, {fmap, 2 * page}};
    printf("pwritev past a mapped file's end: %s\n", res(pwritev(wfd, mv, 2, 0)));
    munmap(fmap, 2 * page);
    close(mfd);
    struct iovec outside[2] = {{(void *)~0UL, 0}, {map, 4}};
    printf("readv empty iovec outside: %s\n", res(readv(fd, outside, 2)));
    printf("writev empty iovec outside: %s\n", res(writev(wfd, outside, 2)));
    struct iovec null0[2] = {{NULL, 0}, {map, 4}};
    printf("readv empty NULL iovec: %s\n", res(preadv(fd, null0, 2, 0)));

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
