/* memfd seals: F_ADD_SEALS / F_GET_SEALS and their effect on write, truncate, mmap and
 * mprotect.  Self-checking: prints "ok". */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "check.h"

static int memfd(unsigned flags)
{
    int fd = memfd_create("seal-test", flags);
    CHECK(fd >= 0);
    return fd;
}

int main(void)
{
    char page[4096];
    memset(page, 'a', sizeof page);

    /* Without MFD_ALLOW_SEALING the file is born sealed against more seals. */
    int fd = memfd(0);
    CHECK(fcntl(fd, F_GET_SEALS) == F_SEAL_SEAL);
    CHECK_ERR(fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE), EPERM);
    char path[64], link[128];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, link, sizeof link - 1);
    CHECK(n > 0);
    link[n] = 0;
    CHECK(strncmp(link, "/memfd:seal-test", 16) == 0);
    close(fd);

    int p[2];
    CHECK(pipe(p) == 0);
    CHECK_ERR(fcntl(p[0], F_GET_SEALS), EINVAL);
    CHECK_ERR(fcntl(p[1], F_ADD_SEALS, F_SEAL_WRITE), EINVAL);

    /* SHRINK and GROW */
    fd = memfd(MFD_ALLOW_SEALING);
    CHECK(fcntl(fd, F_GET_SEALS) == 0);
    CHECK_ERR(fcntl(fd, F_ADD_SEALS, 0x1000), EINVAL);
    CHECK(ftruncate(fd, 3 * 4096 / 4) == 0);
    CHECK(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) == 0);
    CHECK(fcntl(fd, F_GET_SEALS) == (F_SEAL_SHRINK | F_SEAL_GROW));
    CHECK_ERR(ftruncate(fd, 100), EPERM);
    CHECK_ERR(ftruncate(fd, 8192), EPERM);
    CHECK(ftruncate(fd, 3 * 4096 / 4) == 0);               /* same size: fine */
    CHECK_ERR(fallocate(fd, 0, 0, 8192), EPERM);
    CHECK(pwrite(fd, page, 100, 0) == 100);                 /* inside: fine */
    CHECK_ERR(pwrite(fd, page, 2048, 2048), EPERM);         /* only the EOF page: refused */
    CHECK_ERR(pwrite(fd, page, 10, 3072), EPERM);           /* at EOF */
    CHECK(ftruncate(fd, 3 * 4096 / 4) == 0);
    close(fd);
    fd = memfd(MFD_ALLOW_SEALING);
    CHECK(ftruncate(fd, 4096 + 1024) == 0);
    CHECK(fcntl(fd, F_ADD_SEALS, F_SEAL_GROW) == 0);
    /* whole pages below EOF are written, the page that would grow is not */
    CHECK(pwrite(fd, page, 4096, 2048) == 2048);
    CHECK(pwrite(fd, page, 4096, 1024) == 4096);             /* up to EOF exactly */
    CHECK(ftruncate(fd, 100) == 0);                          /* shrinking is allowed */
    close(fd);

    /* WRITE */
    fd = memfd(MFD_ALLOW_SEALING);
    CHECK(write(fd, page, 4096) == 4096);
    char *m = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
    CHECK(m != MAP_FAILED);
    CHECK_ERR(fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE), EBUSY);   /* a shared map of a RW fd */
    CHECK(munmap(m, 4096) == 0);
    m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    CHECK(m != MAP_FAILED);
    CHECK(fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE) == 0);         /* private maps don't count */
    m[0] = 'b';                                              /* copy-on-write: fine */
    CHECK_ERR(write(fd, page, 1), EPERM);
    CHECK_ERR(pwrite(fd, page, 1, 8192), EPERM);
    CHECK(write(fd, page, 0) == 0);
    CHECK(ftruncate(fd, 8192) == 0);                         /* WRITE does not seal the size */
    CHECK(ftruncate(fd, 4096) == 0);
    CHECK(mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) == MAP_FAILED &&
          errno == EPERM);
    char c;
    CHECK(pread(fd, &c, 1, 0) == 1 && c == 'a');
    /* a read-only fd maps it shared read-only, and cannot add seals */
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    int ro = open(path, O_RDONLY);
    CHECK(ro >= 0);
    char *r = mmap(NULL, 4096, PROT_READ, MAP_SHARED, ro, 0);
    CHECK(r != MAP_FAILED && r[0] == 'a');
    CHECK_ERR(mprotect(r, 4096, PROT_READ | PROT_WRITE), EACCES);
    CHECK_ERR(fcntl(ro, F_ADD_SEALS, F_SEAL_SEAL), EPERM);
    CHECK(fcntl(ro, F_GET_SEALS) == F_SEAL_WRITE);           /* seals belong to the inode */
    CHECK(fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL) == 0);
    CHECK_ERR(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK), EPERM);
    close(ro);
    close(fd);

    /* FUTURE_WRITE: existing writable shared maps keep writing, nothing new can */
    fd = memfd(MFD_ALLOW_SEALING);
    CHECK(ftruncate(fd, 4096) == 0);
    char *w = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(w != MAP_FAILED);
    CHECK(fcntl(fd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE) == 0);
    w[10] = 'z';
    CHECK(pread(fd, &c, 1, 10) == 1 && c == 'z');
    CHECK_ERR(pwrite(fd, page, 1, 0), EPERM);
    CHECK(mmap(NULL, 4096, PROT_WRITE, MAP_SHARED, fd, 0) == MAP_FAILED && errno == EPERM);
    r = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
    CHECK(r != MAP_FAILED && r[10] == 'z');
    CHECK_ERR(mprotect(r, 4096, PROT_READ | PROT_WRITE), EACCES);
    CHECK(ftruncate(fd, 8192) == 0);                         /* size is not sealed */
    close(fd);
    ok();
    return 0;
}
