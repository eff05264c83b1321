/* mmap anon private/shared, file private/shared, mprotect, munmap, mremap,
 * brk via sbrk, madvise(MADV_DONTNEED). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include "check.h"

static sigjmp_buf env;
static volatile int fault_code;
static void *volatile fault_addr;

static void on_segv(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    fault_code = si->si_code;
    fault_addr = si->si_addr;
    siglongjmp(env, 1);
}

/* Writes one byte at p; returns the si_code of the SIGSEGV, or 0. */
static int try_write(volatile char *p)
{
    fault_code = 0;
    fault_addr = NULL;
    if (sigsetjmp(env, 1) == 0) {
        *p = 1;
        return 0;
    }
    CHECK(fault_addr == (void *)p);
    return fault_code;
}

static int try_read(volatile char *p)
{
    fault_code = 0;
    fault_addr = NULL;
    if (sigsetjmp(env, 1) == 0) {
        (void)*p;
        return 0;
    }
    CHECK(fault_addr == (void *)p);
    return fault_code;
}

int main(void)
{
    long pg = sysconf(_SC_PAGESIZE);
    CHECK(pg == 4096);
    struct sigaction sa = {0};
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO;
    CHECK(sigaction(SIGSEGV, &sa, NULL) == 0);
    int status;

    /* Anonymous private: zero-filled, writable, private across fork. */
    char *a = mmap(NULL, 4 * pg, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(a != MAP_FAILED);
    CHECK(((uintptr_t)a & (pg - 1)) == 0);
    for (long i = 0; i < 4 * pg; i++)
        CHECK(a[i] == 0);
    memset(a, 'p', 4 * pg);

    /* Anonymous shared: a child's write is seen by the parent. */
    char *s = mmap(NULL, pg, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(s != MAP_FAILED);
    strcpy(s, "before");
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        strcpy(s, "from child");
        a[0] = 'c';  /* private: the parent must not see this */
        _exit(0);
    }
    CHECK(waitpid(pid, &status, 0) == pid && status == 0);
    CHECK(strcmp(s, "from child") == 0);
    CHECK(a[0] == 'p');
    CHECK(munmap(s, pg) == 0);

    /* madvise(MADV_DONTNEED) zeroes private anonymous pages. */
    CHECK(madvise(a + pg, pg, MADV_DONTNEED) == 0);
    CHECK(a[pg] == 0 && a[2 * pg - 1] == 0);
    CHECK(a[0] == 'p' && a[2 * pg] == 'p');

    /* mprotect to read-only: reads work, a write faults with SEGV_ACCERR. */
    CHECK(mprotect(a, pg, PROT_READ) == 0);
    CHECK(try_read(a) == 0);
    CHECK(try_write(a + 10) == SEGV_ACCERR);
    CHECK(mprotect(a, pg, PROT_READ | PROT_WRITE) == 0);
    CHECK(try_write(a + 10) == 0);

    /* mremap grows and keeps the contents. */
    char *b = mremap(a, 4 * pg, 64 * pg, MREMAP_MAYMOVE);
    CHECK(b != MAP_FAILED);
    CHECK(b[0] == 'p' && b[4 * pg - 1] == 'p');
    CHECK(b[63 * pg] == 0);
    b[63 * pg] = 'e';

    /* munmap: later access faults with SEGV_MAPERR. */
    CHECK(munmap(b + 32 * pg, 32 * pg) == 0);
    CHECK(try_read(b + 40 * pg) == SEGV_MAPERR);
    CHECK(try_write(b + 63 * pg) == SEGV_MAPERR);
    CHECK(b[31 * pg] == 0);
    CHECK(munmap(b, 32 * pg) == 0);
    CHECK(try_read(b) == SEGV_MAPERR);

    /* File mappings of a file written in /tmp. */
    char path[] = "/tmp/pyvisor-mmap-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    char data[8192];
    for (int i = 0; i < (int)sizeof data; i++)
        data[i] = 'A' + i % 26;
    CHECK(write(fd, data, sizeof data) == sizeof data);

    /* MAP_PRIVATE: the file's contents; our writes stay ours. */
    char *fp = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    CHECK(fp != MAP_FAILED);
    CHECK(memcmp(fp, data, sizeof data) == 0);
    fp[0] = '!';
    char c;
    CHECK(pread(fd, &c, 1, 0) == 1 && c == 'A');
    /* An offset mapping sees the second page. */
    char *fo = mmap(NULL, pg, PROT_READ, MAP_PRIVATE, fd, pg);
    CHECK(fo != MAP_FAILED && memcmp(fo, data + pg, pg) == 0);
    CHECK(munmap(fo, pg) == 0);

    /* MAP_SHARED: writes through the map are seen by read(), and
     * pwrite() is seen through the map. */
    char *fs = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(fs != MAP_FAILED);
    memcpy(fs + 100, "shared!", 7);
    char buf[8];
    CHECK(pread(fd, buf, 7, 100) == 7 && memcmp(buf, "shared!", 7) == 0);
    CHECK(pwrite(fd, "PW", 2, pg + 5) == 2);
    CHECK(fs[pg + 5] == 'P' && fs[pg + 6] == 'W');
    /* The private map is unaffected at the page it already copied. */
    CHECK(fp[0] == '!');
    CHECK(msync(fs, 2 * pg, MS_SYNC) == 0);
    CHECK(munmap(fs, 2 * pg) == 0);
    CHECK(munmap(fp, 2 * pg) == 0);
    CHECK(pread(fd, buf, 7, 100) == 7 && memcmp(buf, "shared!", 7) == 0);

    /* Mapping a write-only fd, a bad fd, or zero bytes fails. */
    int wfd = open(path, O_WRONLY);
    CHECK(wfd >= 0);
    CHECK(mmap(NULL, pg, PROT_READ, MAP_SHARED, wfd, 0) == MAP_FAILED &&
          errno == EACCES);
    CHECK(close(wfd) == 0);
    CHECK(mmap(NULL, pg, PROT_READ, MAP_PRIVATE, 1000, 0) == MAP_FAILED &&
          errno == EBADF);
    CHECK(mmap(NULL, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) ==
              MAP_FAILED && errno == EINVAL);
    CHECK(close(fd) == 0);
    CHECK(unlink(path) == 0);

    /* brk grows with sbrk and the new memory is usable. */
    char *brk0 = sbrk(0);
    CHECK(brk0 != (void *)-1);
    CHECK(sbrk(16 * pg) == brk0);
    CHECK((char *)sbrk(0) == brk0 + 16 * pg);
    memset(brk0, 'b', 16 * pg);
    CHECK(brk0[16 * pg - 1] == 'b');
    CHECK(sbrk(-16 * pg) == brk0 + 16 * pg);
    CHECK(sbrk(0) == brk0);

    ok();
    return 0;
}
