/* sched_{get,set}attr, sched_setscheduler/param, affinity and ioprio: checked,
 * kept per thread, inherited (SCHED_RESET_ON_FORK resets), reported back.
 * Linux: kernel/sched/syscalls.c, block/ioprio.c. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include "check.h"

struct attr {
    uint32_t size, policy;
    uint64_t flags;
    int32_t nice;
    uint32_t prio;
    uint64_t runtime, deadline, period;
    uint32_t umin, umax;
};

#define IOPRIO(c, d) (((c) << 13) | (d))

static long setattr(int pid, struct attr *a, unsigned f) { return syscall(SYS_sched_setattr, pid, a, f); }
static long getattr(int pid, struct attr *a, unsigned sz, unsigned f)
{
    return syscall(SYS_sched_getattr, pid, a, sz, f);
}
static long ioprio_get(int which, int who) { return syscall(SYS_ioprio_get, which, who); }
static long ioprio_set(int which, int who, int p) { return syscall(SYS_ioprio_set, which, who, p); }

static cpu_set_t want;

/* Field `n` (1-based) of /proc/self/stat, after the command name. */
static long stat_field(int n)
{
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    CHECK(f != NULL);
    CHECK(fgets(buf, sizeof buf, f) != NULL);
    fclose(f);
    char *p = strrchr(buf, ')');
    CHECK(p != NULL);
    p += 2;
    for (int i = 3; i < n; i++) {
        p = strchr(p, ' ');
        CHECK(p != NULL);
        p++;
    }
    return strtol(p, NULL, 10);
}

static void *thread_main(void *arg)
{
    cpu_set_t got;
    CHECK(sched_getaffinity(0, sizeof got, &got) == 0);
    CHECK(CPU_EQUAL(&got, &want));
    CHECK(ioprio_get(1, 0) == IOPRIO(3, 0));
    return arg;
}

int main(void)
{
    struct attr a;
    memset(&a, 0xff, sizeof a);
    errno = 0;
    int nice0 = getpriority(PRIO_PROCESS, 0);       /* whatever we were started with */
    CHECK(errno == 0);
    CHECK(getattr(0, &a, sizeof a, 0) == 0);
    CHECK(a.size == 56 && a.policy == SCHED_OTHER && a.flags == 0 && a.nice == nice0 &&
          a.prio == 0 && a.deadline == 0 && a.period == 0);
    CHECK_ERR(getattr(0, &a, 47, 0), EINVAL);
    CHECK_ERR(getattr(0, &a, sizeof a, 1), EINVAL);
    CHECK_ERR(getattr(-1, &a, sizeof a, 0), EINVAL);
    CHECK_ERR(getattr(0, NULL, sizeof a, 0), EINVAL);
    CHECK_ERR(getattr((1 << 29) + 1, &a, sizeof a, 0), ESRCH);
    struct { struct attr a; char more[8]; } big;
    memset(&big, 0x55, sizeof big);
    CHECK(getattr(0, &big.a, sizeof big, 0) == 0);
    CHECK(big.a.size == 56);

    /* sched_setattr: argument checks; E2BIG writes our size back. */
    memset(&a, 0, sizeof a);
    a.size = sizeof a;
    a.policy = SCHED_BATCH;
    a.nice = 5;
    CHECK_ERR(setattr(0, NULL, 0), EINVAL);
    CHECK_ERR(setattr(-1, &a, 0), EINVAL);
    CHECK_ERR(setattr(0, &a, 2), EINVAL);
    a.size = 12;
    CHECK_ERR(setattr(0, &a, 0), E2BIG);
    CHECK(a.size == 56);
    big.a = a;
    big.a.size = sizeof big;
    memset(big.more, 0, sizeof big.more);
    big.more[3] = 1;
    CHECK_ERR(setattr(0, &big.a, 0), E2BIG);
    a.policy = SCHED_DEADLINE;
    CHECK_ERR(setattr(0, &a, 0), EINVAL);                     /* no runtime/deadline */
    a.policy = 4;
    CHECK_ERR(setattr(0, &a, 0), EINVAL);
    a.policy = SCHED_BATCH;
    a.flags = 0x80;
    CHECK_ERR(setattr(0, &a, 0), EINVAL);
    a.flags = 0;
    a.prio = 1;
    CHECK_ERR(setattr(0, &a, 0), EINVAL);                     /* priority with a fair policy */
    a.prio = 0;
    a.size = 0;                                               /* 0: the first version */
    CHECK(setattr(0, &a, 0) == 0);
    CHECK(getattr(0, &a, sizeof a, 0) == 0);
    CHECK(a.policy == SCHED_BATCH && a.nice == 5);
    CHECK(getpriority(PRIO_PROCESS, 0) == 5);
    CHECK(sched_getscheduler(0) == SCHED_BATCH);
    a.nice = 100;                                             /* clamped */
    CHECK(setattr(0, &a, 0) == 0);
    CHECK(getpriority(PRIO_PROCESS, 0) == 19);
    a.flags = 0x08 | 0x10;                                    /* keep policy and params */
    CHECK(setattr(0, &a, 0) == 0);
    CHECK(sched_getscheduler(0) == SCHED_BATCH && getpriority(PRIO_PROCESS, 0) == 19);

    /* The legacy calls keep nice. */
    struct sched_param sp = {0};
    CHECK(sched_setscheduler(0, SCHED_IDLE, &sp) == 0);
    CHECK(sched_getscheduler(0) == SCHED_IDLE && getpriority(PRIO_PROCESS, 0) == 19);
    CHECK_ERR(sched_setscheduler(0, -1, &sp), EINVAL);
    CHECK_ERR(sched_setscheduler(0, SCHED_OTHER, NULL), EINVAL);
    sp.sched_priority = 5;
    CHECK_ERR(sched_setscheduler(0, SCHED_OTHER, &sp), EINVAL);
    CHECK_ERR(sched_setparam(0, &sp), EINVAL);                 /* still SCHED_IDLE */
    sp.sched_priority = 0;
    CHECK(sched_setparam(0, &sp) == 0);
    CHECK_ERR(sched_getparam(0, NULL), EINVAL);
    CHECK(sched_getparam(0, &sp) == 0 && sp.sched_priority == 0);
    CHECK(sched_get_priority_max(SCHED_FIFO) == 99 && sched_get_priority_min(SCHED_RR) == 1);
    CHECK(sched_get_priority_max(SCHED_BATCH) == 0);
    CHECK_ERR(sched_get_priority_max(4), EINVAL);
    CHECK_ERR(sched_get_priority_min(-1), EINVAL);

    /* SCHED_RESET_ON_FORK: the child gets nice 0 back and no flag; BATCH stays. */
    CHECK(sched_setscheduler(0, SCHED_BATCH | SCHED_RESET_ON_FORK, &sp) == 0);
    CHECK(setpriority(PRIO_PROCESS, 0, -5) == 0);
    CHECK(sched_getscheduler(0) == (SCHED_BATCH | SCHED_RESET_ON_FORK));
    CHECK(getattr(0, &a, sizeof a, 0) == 0 && a.flags == 1 && a.nice == -5);
    CHECK(stat_field(18) == 15 && stat_field(19) == -5);      /* priority, nice */
    CHECK(stat_field(40) == 0 && stat_field(41) == SCHED_BATCH);   /* rt_priority, policy */

    /* ioprio: checks, per thread, inherited. */
    CHECK(ioprio_get(1, 0) == 0);
    CHECK_ERR(ioprio_set(1, 0, IOPRIO(5, 0)), EINVAL);
    CHECK_ERR(ioprio_set(1, 0, IOPRIO(0, 1)), EINVAL);
    CHECK_ERR(ioprio_set(4, 0, IOPRIO(3, 0)), EINVAL);
    CHECK_ERR(ioprio_get(0, 0), EINVAL);
    CHECK_ERR(ioprio_set(1, -1, IOPRIO(3, 0)), ESRCH);
    CHECK(ioprio_set(1, getpid(), IOPRIO(2, 4)) == 0);
    CHECK(ioprio_get(1, getpid()) == IOPRIO(2, 4));
    CHECK(ioprio_get(2, 0) == IOPRIO(2, 4));                  /* the process group's best */
    CHECK(ioprio_set(1, 0, IOPRIO(3, 0)) == 0);

    /* Affinity: kept, reported, inherited by threads and children. */
    cpu_set_t all;
    CHECK(sched_getaffinity(0, sizeof all, &all) == 0);
    want = all;
    if (CPU_COUNT(&all) > 1) {
        for (int i = 0; i < CPU_SETSIZE; i++)
            if (CPU_ISSET(i, &want)) {
                CPU_CLR(i, &want);
                break;
            }
    }
    cpu_set_t extra = want;
    CPU_SET(CPU_SETSIZE - 1, &extra);                         /* no such CPU: dropped */
    CHECK(sched_setaffinity(0, sizeof extra, &extra) == 0);
    cpu_set_t got;
    CHECK(sched_getaffinity(0, sizeof got, &got) == 0 && CPU_EQUAL(&got, &want));
    cpu_set_t none;
    CPU_ZERO(&none);
    CHECK_ERR(sched_setaffinity(0, sizeof none, &none), EINVAL);
    CHECK_ERR(syscall(SYS_sched_getaffinity, 0, 4, &got), EINVAL);
    CHECK_ERR(syscall(SYS_sched_getaffinity, 0, 12, &got), EINVAL);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, thread_main, NULL) == 0);
    CHECK(pthread_join(th, NULL) == 0);

    int sync[2];
    CHECK(pipe(sync) == 0);
    pid_t c = fork();
    if (c == 0) {
        cpu_set_t g;
        CHECK(sched_getaffinity(0, sizeof g, &g) == 0 && CPU_EQUAL(&g, &want));
        CHECK(sched_getscheduler(0) == SCHED_BATCH);
        CHECK(getpriority(PRIO_PROCESS, 0) == 0);
        CHECK(ioprio_get(1, 0) == IOPRIO(3, 0));
        struct attr ca;
        CHECK(getattr(0, &ca, sizeof ca, 0) == 0 && ca.flags == 0 && ca.nice == 0);
        CHECK(write(sync[1], "c", 1) == 1);
        pause();
        _exit(0);
    }
    char ch;
    CHECK(read(sync[0], &ch, 1) == 1);         /* the child has checked what it got */
    /* The parent may change its child. */
    struct attr ca = {.size = sizeof ca, .policy = SCHED_IDLE};
    CHECK(setattr(c, &ca, 0) == 0);
    CHECK(getattr(c, &ca, sizeof ca, 0) == 0 && ca.policy == SCHED_IDLE);
    CHECK(sched_getscheduler(0) == (SCHED_BATCH | SCHED_RESET_ON_FORK));
    CHECK(ioprio_set(1, c, IOPRIO(2, 7)) == 0 && ioprio_get(1, c) == IOPRIO(2, 7));
    CHECK(ioprio_get(1, 0) == IOPRIO(3, 0));
    kill(c, SIGKILL);
    int st;
    CHECK(waitpid(c, &st, 0) == c);
    ok();
    return 0;
}
