/* A write to /proc/self/mem is a tracer's (FOLL_FORCE): it goes through a PROT_NONE
 * page and on into the next mapping, private or shared, and stops at an unmapped
 * hole (a short write; EIO if nothing could be written).  The syscall fuzzer's
 * statistics were overwritten this way (tests/fuzz/sysfuzz.c, SHARED_AT). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#include "check.h"

static int count(const char *p, size_t n, char c)
{
    int k = 0;
    for (size_t i = 0; i < n; i++)
        k += p[i] == c;
    return k;
}

int main(void)
{
    static char buf[3 * 4096];
    memset(buf, 'Q', sizeof buf);
    int fd = open("/proc/self/mem", O_RDWR);
    CHECK(fd >= 0);
    for (int shared = 0; shared < 2; shared++) {
        /* page 0 RW | page 1 PROT_NONE | page 2 RW (private or shared) | page 3 hole */
        char *m = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                       -1, 0);
        CHECK(m != MAP_FAILED);
        if (shared)
            CHECK(mmap(m + 8192, 4096, PROT_READ | PROT_WRITE,
                       MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == m + 8192);
        memset(m, 0, 3 * 4096);
        CHECK(munmap(m + 3 * 4096, 4096) == 0);
        CHECK(mprotect(m + 4096, 4096, PROT_NONE) == 0);
        /* From 16 bytes before the guard page through the guard into page 2. */
        CHECK(pwrite(fd, buf, 8192, (off_t)(unsigned long)(m + 4096 - 16)) == 8192);
        CHECK(count(m + 8192, 4096, 'Q') == 4096 - 16);
        /* A write running into the hole stops there. */
        CHECK(pwrite(fd, buf, 8192, (off_t)(unsigned long)(m + 8192 + 100)) == 4096 - 100);
        CHECK(pwrite(fd, buf, 100, (off_t)(unsigned long)(m + 3 * 4096)) == -1 && errno == EIO);
        CHECK(mprotect(m + 4096, 4096, PROT_READ) == 0);
        CHECK(count(m + 4096, 4096, 'Q') == 4096);
        CHECK(count(m, 4096, 'Q') == 16);
        /* A read goes through the guard page too. */
        char back[8192];
        CHECK(mprotect(m + 4096, 4096, PROT_NONE) == 0);
        CHECK(pread(fd, back, sizeof back, (off_t)(unsigned long)(m + 4096)) == 8192);
        CHECK(count(back, sizeof back, 'Q') == 8192);
        CHECK(munmap(m, 3 * 4096) == 0);
    }
    ok();
    return 0;
}
