/* mremap growing a shared file mapping maps more of that file (moved or in
 * place), never whatever lies next to the file's pages in the Sentry's memory
 * file; the vDSO's mappings cannot grow (EFAULT, Linux's VM_DONTEXPAND). */
#define _GNU_SOURCE
#include "check.h"

#include <fcntl.h>
#include <sys/mman.h>

int main(void)
{
    char path[] = "/dev/shm/mremap_file_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK(unlink(path) == 0);
    CHECK(ftruncate(fd, 3 * 4096) == 0);
    CHECK(pwrite(fd, "bbbb", 4, 4096) == 4);
    CHECK(pwrite(fd, "cccc", 4, 8192) == 4);

    /* Moved. */
    char *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(m != MAP_FAILED);
    memset(m, 'a', 4096);
    char *m2 = mremap(m, 4096, 3 * 4096, MREMAP_MAYMOVE);
    CHECK(m2 != MAP_FAILED);
    CHECK(m2[0] == 'a' && m2[4096] == 'b' && m2[8192] == 'c');
    m2[8193] = 'x';                                 /* shared: reaches the file */
    char c;
    CHECK(pread(fd, &c, 1, 8193) == 1 && c == 'x');
    CHECK(munmap(m2, 3 * 4096) == 0);

    /* In place, into a hole left for it. */
    char *hole = mmap(NULL, 8 * 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(hole != MAP_FAILED);
    CHECK(munmap(hole, 8 * 4096) == 0);
    char *m3 = mmap(hole, 4096, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 4096);
    CHECK(m3 == hole);
    char *m4 = mremap(m3, 4096, 2 * 4096, 0);
    CHECK(m4 == m3);
    CHECK(m4[0] == 'b' && m4[4096] == 'c' && m4[4097] == 'x');

    /* The vDSO's mappings do not grow. */
    FILE *maps = fopen("/proc/self/maps", "r");
    CHECK(maps != NULL);
    char line[512];
    unsigned long vvar = 0, vdso = 0, vdso_end = 0, lo, hi;
    while (fgets(line, sizeof line, maps)) {
        CHECK(sscanf(line, "%lx-%lx", &lo, &hi) == 2);
        if (strstr(line, "[vvar]") && !vvar)
            vvar = lo;
        if (strstr(line, "[vdso]"))
            vdso = lo, vdso_end = hi;
    }
    fclose(maps);
    CHECK(vvar && vdso);
    CHECK_ERR(mremap((void *)vvar, 4096, 3 * 4096, MREMAP_MAYMOVE), EFAULT);
    CHECK_ERR(mremap((void *)vdso, vdso_end - vdso, vdso_end - vdso + 8192, MREMAP_MAYMOVE),
              EFAULT);
    ok();
    return 0;
}
