/* getrandom, uname, rlimits, credentials, affinity, getcwd. */
#define _GNU_SOURCE
#include <grp.h>
#include <limits.h>
#include <sched.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include "check.h"

int main(void)
{
    /* getrandom: 64 bytes, not all zero, two calls differ. */
    unsigned char r1[64] = {0}, r2[64] = {0};
    CHECK(getrandom(r1, sizeof r1, 0) == sizeof r1);
    CHECK(getrandom(r2, sizeof r2, GRND_NONBLOCK) == sizeof r2);
    int nonzero = 0;
    for (size_t i = 0; i < sizeof r1; i++)
        nonzero |= r1[i];
    CHECK(nonzero);
    CHECK(memcmp(r1, r2, sizeof r1) != 0);
    CHECK_ERR(getrandom(r1, sizeof r1, 0x1000), EINVAL);

    /* uname. */
    struct utsname u;
    CHECK(uname(&u) == 0);
    CHECK(strcmp(u.sysname, "Linux") == 0);
    CHECK(strcmp(u.machine, "x86_64") == 0);
    CHECK(u.release[0] >= '1' && u.release[0] <= '9');
    CHECK(u.nodename[0] != '\0');

    /* getrlimit/setrlimit round trip on RLIMIT_NOFILE. */
    struct rlimit rl, rl2;
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    CHECK(rl.rlim_cur > 2 && rl.rlim_cur <= rl.rlim_max);
    rl2 = rl;
    rl2.rlim_cur = 100;
    CHECK(setrlimit(RLIMIT_NOFILE, &rl2) == 0);
    CHECK(getrlimit(RLIMIT_NOFILE, &rl2) == 0 && rl2.rlim_cur == 100);
    CHECK(rl2.rlim_max == rl.rlim_max);
    /* The new soft limit is enforced. */
    CHECK_ERR(dup2(0, 150), EBADF);
    rl2.rlim_cur = rl2.rlim_max + 1;
    if (rl2.rlim_max != RLIM_INFINITY)
        CHECK_ERR(setrlimit(RLIMIT_NOFILE, &rl2), EINVAL);

    /* prlimit on ourselves: set and get the old value in one call. */
    struct rlimit old;
    CHECK(prlimit(0, RLIMIT_NOFILE, &rl, &old) == 0);
    CHECK(old.rlim_cur == 100);
    CHECK(prlimit(getpid(), RLIMIT_NOFILE, NULL, &rl2) == 0);
    CHECK(rl2.rlim_cur == rl.rlim_cur && rl2.rlim_max == rl.rlim_max);
    CHECK(getrlimit(RLIMIT_STACK, &rl) == 0 && rl.rlim_cur > 0);

    /* Credentials: the harness runs us as root. */
    CHECK(getuid() == 0 && geteuid() == 0);
    CHECK(getgid() == 0 && getegid() == 0);
    uid_t ru, eu, su;
    CHECK(getresuid(&ru, &eu, &su) == 0 && ru == 0 && eu == 0 && su == 0);
    int n = getgroups(0, NULL);
    CHECK(n >= 0);
    gid_t groups[NGROUPS_MAX];
    CHECK(getgroups(NGROUPS_MAX, groups) == n);
    if (n > 1)
        CHECK_ERR(getgroups(1, groups), EINVAL);

    /* sched_getaffinity: at least one CPU. */
    cpu_set_t set;
    CPU_ZERO(&set);
    CHECK(sched_getaffinity(0, sizeof set, &set) == 0);
    CHECK(CPU_COUNT(&set) >= 1);

    /* getcwd; ERANGE when the buffer is too small. */
    char cwd[PATH_MAX];
    CHECK(getcwd(cwd, sizeof cwd) == cwd && cwd[0] == '/');
    char tiny[1];
    CHECK(getcwd(tiny, sizeof tiny) == NULL && errno == ERANGE);

    ok();
    return 0;
}
