/* mlock, mlock2, munlock, mlockall, munlockall and MAP_LOCKED: locks seen through
 * msync(MS_INVALIDATE) (EBUSY on locked pages), /proc/self/status VmLck, madvise
 * (MADV_DONTNEED is EINVAL), fork (not inherited), mremap (kept, and limited);
 * RLIMIT_MEMLOCK without CAP_IPC_LOCK (EPERM at 0, ENOMEM/EAGAIN above it);
 * msync's ENOMEM for holes.  Linux: mm/mlock.c, mm/msync.c. */
#define _GNU_SOURCE
#include <linux/capability.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include "check.h"

#define PG 4096L

static int locked(void *p)
{
    if (msync(p, PG, MS_ASYNC | MS_INVALIDATE) == 0)
        return 0;
    CHECK(errno == EBUSY);
    return 1;
}

static long vmlck_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    CHECK(f != NULL);
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmLck: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

static void drop_ipc_lock(void)
{
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    CHECK(syscall(SYS_capget, &h, d) == 0);
    d[0].effective &= ~(1u << CAP_IPC_LOCK);
    CHECK(syscall(SYS_capset, &h, d) == 0);
}

static void set_memlock(rlim_t cur)
{
    struct rlimit rl;
    CHECK(getrlimit(RLIMIT_MEMLOCK, &rl) == 0);
    rl.rlim_cur = cur;
    CHECK(setrlimit(RLIMIT_MEMLOCK, &rl) == 0);
}

static void limits(void)
{
    drop_ipc_lock();
    char *p = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED);
    set_memlock(0);
    CHECK_ERR(mlock(p, PG), EPERM);
    CHECK_ERR(mmap(NULL, PG, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED, -1, 0), EPERM);
    CHECK_ERR(mlockall(MCL_CURRENT), EPERM);
    set_memlock(PG);
    CHECK_ERR(mlock(p, 2 * PG), ENOMEM);
    CHECK(!locked(p));
    CHECK_ERR(mmap(NULL, 2 * PG, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED, -1, 0),
              EAGAIN);
    CHECK(mlock(p, PG) == 0);
    CHECK(mlock(p, PG) == 0);            /* already locked pages are not counted twice */
    /* growing a locked mapping past the limit */
    CHECK_ERR(mremap(p, PG, 2 * PG, MREMAP_MAYMOVE), EAGAIN);
    CHECK(munlock(p, 2 * PG) == 0);
    CHECK(mlock(p + PG, PG) == 0);
    CHECK(locked(p + PG) && !locked(p));
    exit(0);
}

int main(void)
{
    char *p = mmap(NULL, 3 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED);
    long base = vmlck_kb();
    CHECK(base == 0);
    CHECK(!locked(p));
    CHECK(mlock(p + 100, PG) == 0);      /* two pages: [p, p + PG + 100) rounded */
    CHECK(locked(p) && locked(p + PG) && !locked(p + 2 * PG));
    CHECK(vmlck_kb() == 8);
    CHECK_ERR(madvise(p, PG, MADV_DONTNEED), EINVAL);
    CHECK_ERR(msync(p, PG, MS_SYNC | MS_INVALIDATE), EBUSY);
    CHECK(msync(p, PG, MS_SYNC) == 0);

    /* not inherited by a fork child */
    pid_t c = fork();
    CHECK(c >= 0);
    if (c == 0)
        _exit(!locked(p) && vmlck_kb() == 0 ? 0 : 1);
    int st;
    CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0);

    CHECK(munlock(p, PG) == 0);
    CHECK(!locked(p) && locked(p + PG));
    CHECK(munlock(p, 3 * PG) == 0);
    CHECK(vmlck_kb() == 0);

    /* mlock2 */
    CHECK_ERR(syscall(SYS_mlock2, p, PG, ~0), EINVAL);
    CHECK(syscall(SYS_mlock2, p, PG, MLOCK_ONFAULT) == 0);
    CHECK(locked(p));
    CHECK(munlockall() == 0);
    CHECK(!locked(p));

    /* a hole: pages before it are locked, the call fails */
    CHECK(munmap(p + PG, PG) == 0);
    CHECK_ERR(mlock(p, 3 * PG), ENOMEM);
    CHECK(locked(p));
    CHECK(munlock(p, PG) == 0);
    CHECK_ERR(msync(p, 3 * PG, MS_ASYNC), ENOMEM);
    CHECK_ERR(msync(p, 3 * PG, MS_SYNC), ENOMEM);
    CHECK_ERR(msync(p, PG, MS_SYNC | MS_ASYNC), EINVAL);
    CHECK_ERR(msync(p + 1, PG, MS_SYNC), EINVAL);
    CHECK(msync(p, 0, MS_SYNC) == 0);
    CHECK_ERR(munlock(p, 3 * PG), ENOMEM);

    /* PROT_NONE: locked, but populating fails */
    char *n = mmap(NULL, PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(n != MAP_FAILED);
    CHECK_ERR(mlock(n, PG), ENOMEM);
    CHECK(locked(n));

    /* MAP_LOCKED, mremap keeps the lock */
    char *m = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED,
                   -1, 0);
    CHECK(m != MAP_FAILED && locked(m));
    char *m2 = mremap(m, PG, 4 * PG, MREMAP_MAYMOVE);
    CHECK(m2 != MAP_FAILED && locked(m2) && locked(m2 + 3 * PG));

    /* mlockall(MCL_FUTURE) */
    CHECK(munlockall() == 0);
    CHECK_ERR(mlockall(0), EINVAL);
    CHECK_ERR(mlockall(MCL_ONFAULT), EINVAL);
    CHECK(mlockall(MCL_FUTURE) == 0);
    char *f = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(f != MAP_FAILED && locked(f) && !locked(p));
    CHECK(munlockall() == 0);
    CHECK(!locked(f));
    char *g = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(g != MAP_FAILED && !locked(g));

    c = fork();
    CHECK(c >= 0);
    if (c == 0)
        limits();
    CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ok();
    return 0;
}
