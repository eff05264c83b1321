/* madvise(MADV_WIPEONFORK / MADV_KEEPONFORK): a fork child sees wiped private
 * anonymous pages as zero, the parent keeps its data; shared or file mappings
 * are EINVAL, holes ENOMEM (stress-ng's mmapfork checks this). */
#define _GNU_SOURCE
#include <sys/mman.h>
#include <sys/wait.h>
#include "check.h"

static int child_sees(const char *p, int a, int b)
{
    pid_t c = fork();
    CHECK(c >= 0);
    if (c == 0)
        _exit(p[0] == a && p[4096] == b ? 0 : 1);
    int st;
    CHECK(waitpid(c, &st, 0) == c);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

int main(void)
{
    char *p = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *s = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED && s != MAP_FAILED);
    memset(p, 7, 3 * 4096);
    CHECK(madvise(p, 4096, MADV_WIPEONFORK) == 0);
    CHECK(child_sees(p, 0, 7));
    CHECK(p[0] == 7);
    CHECK(madvise(p, 4096, MADV_KEEPONFORK) == 0);
    CHECK(child_sees(p, 7, 7));
    CHECK_ERR(madvise(s, 4096, MADV_WIPEONFORK), EINVAL);
    CHECK(munmap(p + 4096, 4096) == 0);
    CHECK_ERR(madvise(p, 3 * 4096, MADV_WIPEONFORK), ENOMEM);
    ok();
    return 0;
}
