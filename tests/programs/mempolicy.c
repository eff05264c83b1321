/* set_mempolicy/get_mempolicy/mbind on node 0 (which every machine has):
 * argument checks, what is reported back, per-VMA policies through splits
 * and fork.  Linux: mm/mempolicy.c. */
#define _GNU_SOURCE
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include "check.h"

#define MPOL_DEFAULT 0
#define MPOL_PREFERRED 1
#define MPOL_BIND 2
#define MPOL_INTERLEAVE 3
#define MPOL_LOCAL 4
#define MPOL_F_STATIC_NODES (1 << 15)
#define MPOL_F_RELATIVE_NODES (1 << 14)
#define MPOL_F_NODE 1
#define MPOL_F_ADDR 2
#define MPOL_F_MEMS_ALLOWED 4
#define MPOL_MF_STRICT 1

static long getp(int *mode, uint64_t *mask, unsigned long maxnode, void *addr, long flags)
{
    return syscall(SYS_get_mempolicy, mode, mask, maxnode, addr, flags);
}

static long setp(long mode, uint64_t *mask, unsigned long maxnode)
{
    return syscall(SYS_set_mempolicy, mode, mask, maxnode);
}

static long mbind_(void *a, unsigned long len, long mode, uint64_t *mask, unsigned long maxnode,
                   long flags)
{
    return syscall(SYS_mbind, a, len, mode, mask, maxnode, flags);
}

static int mode_at(void *p)
{
    int mode = -1;
    CHECK(getp(&mode, NULL, 0, p, MPOL_F_ADDR) == 0);
    return mode;
}

int main(void)
{
    int mode = -1;
    uint64_t mask = 99, one = 1, zero = 0, big[4] = {1, 0, 0, 0};
    CHECK(getp(&mode, &mask, 64, NULL, 0) == 0);
    CHECK(mode == MPOL_DEFAULT && mask == 0);
    CHECK(getp(NULL, NULL, 0, NULL, 0) == 0);
    CHECK_ERR(getp(&mode, &mask, 0, NULL, 0), EINVAL);           /* maxnode < node ids */
    CHECK_ERR(getp(&mode, NULL, 0, &mode, 0), EINVAL);           /* addr without F_ADDR */
    CHECK_ERR(getp(&mode, NULL, 0, NULL, 8), EINVAL);
    CHECK_ERR(getp(&mode, NULL, 0, NULL, MPOL_F_NODE), EINVAL);  /* not interleaving */
    mask = 0;
    CHECK(getp(NULL, &mask, 64, NULL, MPOL_F_MEMS_ALLOWED) == 0);
    CHECK(mask & 1);
    CHECK_ERR(getp(NULL, &mask, 64, NULL, MPOL_F_MEMS_ALLOWED | MPOL_F_ADDR), EINVAL);
    /* maxnode - 1 bits: maxnode 1 copies nothing out. */
    mask = 77;
    CHECK(getp(NULL, &mask, 1, NULL, MPOL_F_MEMS_ALLOWED) == 0);
    CHECK(mask == 77);
    CHECK_ERR(getp(NULL, &mask, 64, NULL, MPOL_F_MEMS_ALLOWED | 0x10), EINVAL);
    CHECK_ERR(getp(NULL, (uint64_t *)8, 64, NULL, MPOL_F_MEMS_ALLOWED), EFAULT);

    /* set_mempolicy checks. */
    CHECK_ERR(setp(7439, &one, 64), EINVAL);
    CHECK_ERR(setp(MPOL_DEFAULT, &one, 0), EINVAL);            /* maxnode 0 with a mask */
    CHECK(setp(MPOL_DEFAULT, NULL, 1) == 0);
    CHECK(setp(MPOL_DEFAULT, &one, 1) == 0);                   /* zero bits: empty */
    CHECK_ERR(setp(MPOL_DEFAULT, &one, 64), EINVAL);
    CHECK_ERR(setp(MPOL_BIND, NULL, 64), EINVAL);
    CHECK_ERR(setp(MPOL_INTERLEAVE, &zero, 64), EINVAL);
    CHECK_ERR(setp(MPOL_BIND | MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES, &one, 64), EINVAL);
    CHECK_ERR(setp(MPOL_PREFERRED | MPOL_F_STATIC_NODES, NULL, 64), EINVAL);
    CHECK_ERR(setp(MPOL_LOCAL, &one, 64), EINVAL);
    CHECK_ERR(setp(MPOL_BIND, (uint64_t *)8, 64), EFAULT);
    CHECK_ERR(setp(MPOL_BIND, &one, 4096 * 8 + 2), EINVAL);
    CHECK(setp(MPOL_BIND, big, 4 * 64) == 0);
    big[3] = 1ULL << 62;                                       /* node 254: none such */
    CHECK_ERR(setp(MPOL_DEFAULT, big, 4 * 64), EINVAL);

    CHECK(setp(MPOL_BIND, &one, 64) == 0);
    CHECK(getp(&mode, &mask, 64, NULL, 0) == 0);
    CHECK(mode == MPOL_BIND && mask == 1);
    CHECK(setp(MPOL_INTERLEAVE | MPOL_F_STATIC_NODES, &one, 64) == 0);
    CHECK(getp(&mode, &mask, 64, NULL, 0) == 0);
    CHECK(mode == (MPOL_INTERLEAVE | MPOL_F_STATIC_NODES) && mask == 1);
    mode = -1;
    CHECK(getp(&mode, NULL, 0, NULL, MPOL_F_NODE) == 0);
    CHECK(mode == 0);
    /* An empty preference is local allocation; LOCAL reports no nodes. */
    CHECK(setp(MPOL_PREFERRED, NULL, 0) == 0);
    mask = 5;
    CHECK(getp(&mode, &mask, 64, NULL, 0) == 0);
    CHECK(mode == MPOL_LOCAL && mask == 0);
    CHECK(setp(MPOL_PREFERRED, &one, 64) == 0);

    /* The task's policy is inherited by fork; each child has its own. */
    pid_t c = fork();
    if (c == 0) {
        CHECK(getp(&mode, &mask, 64, NULL, 0) == 0);
        CHECK(mode == MPOL_PREFERRED && mask == 1);
        CHECK(setp(MPOL_DEFAULT, NULL, 0) == 0);
        _exit(0);
    }
    int st;
    CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(getp(&mode, NULL, 0, NULL, 0) == 0 && mode == MPOL_PREFERRED);

    /* mbind: per VMA, not the task's. */
    long pg = sysconf(_SC_PAGESIZE);
    char *m = mmap(NULL, 4 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED);
    CHECK(mode_at(m) == MPOL_DEFAULT);
    CHECK(mbind_(m + pg, pg, MPOL_BIND, &one, 64, MPOL_MF_STRICT) == 0);
    CHECK(mode_at(m) == MPOL_DEFAULT);
    CHECK(mode_at(m + pg) == MPOL_BIND);
    CHECK(mode_at(m + 2 * pg) == MPOL_DEFAULT);
    mask = 0;
    CHECK(getp(&mode, &mask, 64, m + pg + 5, MPOL_F_ADDR) == 0 && mask == 1);
    mode = -1;
    CHECK(getp(&mode, NULL, 0, m + pg, MPOL_F_ADDR | MPOL_F_NODE) == 0 && mode == 0);
    CHECK_ERR(mbind_(m + 1, pg, MPOL_BIND, &one, 64, 0), EINVAL);
    CHECK_ERR(mbind_(m, pg, MPOL_BIND, &one, 64, 8), EINVAL);
    CHECK(mbind_(m, 0, MPOL_BIND, &one, 64, 0) == 0);
    CHECK(mode_at(m) == MPOL_DEFAULT);
    /* A hole in the range: EFAULT, and nothing changed. */
    CHECK(munmap(m + 3 * pg, pg) == 0);
    CHECK_ERR(mbind_(m, 4 * pg, MPOL_INTERLEAVE, &one, 64, 0), EFAULT);
    CHECK(mode_at(m) == MPOL_DEFAULT);
    CHECK(mbind_(m, 3 * pg - 100, MPOL_INTERLEAVE, &one, 64, 0) == 0);   /* length rounded up */
    CHECK(mode_at(m + 2 * pg) == MPOL_INTERLEAVE);
    c = fork();
    if (c == 0) {
        CHECK(mode_at(m + pg) == MPOL_INTERLEAVE);
        _exit(0);
    }
    CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(mbind_(m + pg, pg, MPOL_DEFAULT, NULL, 0, 0) == 0);
    CHECK(mode_at(m + pg) == MPOL_DEFAULT && mode_at(m) == MPOL_INTERLEAVE);
    CHECK_ERR(getp(&mode, NULL, 0, m + 3 * pg, MPOL_F_ADDR), EFAULT);
    CHECK_ERR(getp(&mode, NULL, 0, (void *)-1, MPOL_F_ADDR | MPOL_F_NODE), EFAULT);
    CHECK_ERR(getp((int *)-1, NULL, 0, m, MPOL_F_ADDR | MPOL_F_NODE), EFAULT);
    CHECK(setp(MPOL_DEFAULT, NULL, 0) == 0);
    ok();
    return 0;
}
