/* mremap(2) at the edges (Linux: mm/mremap.c): shrinking across VMAs in place,
 * MREMAP_FIXED across VMAs (EFAULT, after unmapping the destination and the shrunk
 * tail), expansion failure and MAYMOVE, duplicating a shared mapping (old_size 0;
 * EINVAL for private), MREMAP_DONTUNMAP's checks; holes seen through msync's ENOMEM. */
#define _GNU_SOURCE
#include <sys/mman.h>
#include "check.h"

#define PG 4096L
#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif

static int mapped(char *p)
{
    if (msync(p, PG, MS_ASYNC) == 0)
        return 1;
    CHECK(errno == ENOMEM);
    return 0;
}

static char *anon(long n, int prot, int flags)
{
    char *p = mmap(NULL, n * PG, prot, flags | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED);
    return p;
}

static void each(int flags)
{
    /* in place, shrinking across two VMAs */
    char *m = anon(3, PROT_READ, flags);
    CHECK(mprotect(m, PG, PROT_NONE) == 0);
    CHECK(mremap(m, 3 * PG, 2 * PG, 0) == m);
    CHECK(mapped(m) && mapped(m + PG) && !mapped(m + 2 * PG));
    CHECK(munmap(m, 2 * PG) == 0);

    /* MREMAP_FIXED shrinking across VMAs: EFAULT, checked before anything is unmapped
     * (Linux 6.17+; older kernels unmapped the destination and the tail first) */
    char *s = anon(3, PROT_READ, flags);
    CHECK(mprotect(s, PG, PROT_NONE) == 0);
    char *d = anon(3, PROT_NONE, flags);
    CHECK(mremap(s, 3 * PG, 2 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, d) == MAP_FAILED);
    CHECK(errno == EFAULT);
    CHECK(mapped(s) && mapped(s + PG) && mapped(s + 2 * PG));
    CHECK(mapped(d) && mapped(d + PG));
    /* a move without resizing may span VMAs (6.17+) */
    CHECK(mprotect(s + PG, PG, PROT_READ | PROT_WRITE) == 0);
    s[PG] = 'v';
    CHECK(mremap(s, 3 * PG, 3 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, d) == d);
    CHECK(!mapped(s) && !mapped(s + 2 * PG) && mapped(d + 2 * PG) && d[PG] == 'v');
    CHECK(munmap(d, 3 * PG) == 0);
    s = anon(3, PROT_READ, flags);
    CHECK(munmap(s + PG, 2 * PG) == 0);
    d = anon(2, PROT_NONE, flags);
    CHECK_ERR(mremap(s, PG, PG, MREMAP_MAYMOVE | MREMAP_FIXED, s), EINVAL);
    CHECK_ERR(mremap(s, PG, PG, MREMAP_FIXED, d), EINVAL);
    /* fixed, growing into the hole */
    char *r = mremap(s, PG, 2 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, d);
    CHECK(r == d && mapped(d) && mapped(d + PG) && !mapped(s));
    CHECK(munmap(d, 2 * PG) == 0);

    /* expansion in place blocked by a later mapping: ENOMEM, or a move */
    m = anon(3, PROT_READ | PROT_WRITE, flags);
    m[0] = 'x';
    CHECK(munmap(m + PG, PG) == 0);
    CHECK_ERR(mremap(m, PG, 3 * PG, 0), ENOMEM);
    CHECK(mapped(m) && !mapped(m + PG) && mapped(m + 2 * PG));
    char *n = mremap(m, PG, 3 * PG, MREMAP_MAYMOVE);
    CHECK(n != MAP_FAILED && n != m && n[0] == 'x');
    CHECK(!mapped(m) && mapped(m + 2 * PG) && mapped(n + 2 * PG));
    CHECK(munmap(n, 3 * PG) == 0 && munmap(m + 2 * PG, PG) == 0);

    /* MREMAP_DONTUNMAP needs old_size == new_size */
    m = anon(1, PROT_READ | PROT_WRITE, flags);
    CHECK_ERR(mremap(m, PG, 2 * PG, MREMAP_MAYMOVE | MREMAP_DONTUNMAP), EINVAL);
    CHECK_ERR(mremap(m, PG, PG, MREMAP_DONTUNMAP), EINVAL);
    CHECK(munmap(m, PG) == 0);
}

int main(void)
{
    each(MAP_PRIVATE);
    each(MAP_SHARED);

    /* old_size 0 duplicates a shared mapping; private ones are EINVAL */
    char *s = anon(1, PROT_READ | PROT_WRITE, MAP_SHARED);
    s[0] = 'z';
    CHECK_ERR(mremap(s, 0, PG, 0), ENOMEM);
    char *c = mremap(s, 0, PG, MREMAP_MAYMOVE);
    CHECK(c != MAP_FAILED && c != s && mapped(s) && c[0] == 'z');
    c[1] = 'w';
    CHECK(s[1] == 'w');
    char *p = anon(1, PROT_READ, MAP_PRIVATE);
    CHECK_ERR(mremap(p, 0, PG, MREMAP_MAYMOVE), EINVAL);
    CHECK_ERR(mremap(p + 1, PG, PG, 0), EINVAL);
    CHECK_ERR(mremap(p, PG, 0, 0), EINVAL);
    char *h = anon(1, PROT_READ, MAP_PRIVATE);
    CHECK(munmap(h, PG) == 0);
    CHECK_ERR(mremap(h, PG, PG, 0), EFAULT);
    CHECK_ERR(mremap(p, PG, 2 * PG, 8), EINVAL);
    ok();
    return 0;
}
