/* Restartable sequences: glibc's own registration works (its area has a CPU
 * number, sched_getcpu agrees), the registration rules of rseq(2), the CPU
 * fields, a critical section aborted when its thread is preempted, an rseq_cs
 * outside any section cleared, a bad abort signature killing with SIGSEGV, and
 * membarrier's QUERY and private expedited barriers. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <sys/rseq.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/membarrier.h>
#include "check.h"

/* A critical section that spins until it is aborted. */
extern char cs_start[], cs_post[], cs_abort[];
void cs_loop(struct rseq *r, struct rseq_cs *cs);
__asm__(".text\n"
        ".globl cs_loop\n"
        "cs_loop:\n"
        "  movq %rsi, 8(%rdi)\n"
        ".globl cs_start\n"
        "cs_start:\n"
        "  jmp cs_start\n"
        ".globl cs_post\n"
        "cs_post:\n"
        "  .long 0x53053053\n"
        ".globl cs_abort\n"
        "cs_abort:\n"
        "  ret\n");

static long sys_rseq(struct rseq *r, unsigned len, int flags, unsigned sig)
{
    return syscall(SYS_rseq, r, len, flags, sig);
}

static struct rseq mine __attribute__((aligned(32)));

static struct rseq_cs cs_for(void *abort)
{
    struct rseq_cs cs = {0};
    cs.start_ip = (uintptr_t)cs_start;
    cs.post_commit_offset = (uintptr_t)cs_post - (uintptr_t)cs_start;
    cs.abort_ip = (uintptr_t)abort;
    return cs;
}

static void *spin_thread(void *arg)
{
    /* A thread of its own: register, spin in the section until preempted. */
    struct rseq *r = arg;
    CHECK(sys_rseq(r, 32, 0, RSEQ_SIG) == 0);
    struct rseq_cs cs = cs_for(cs_abort);
    cs_loop(r, &cs);                                 /* returns only by the abort */
    CHECK(r->rseq_cs == 0);
    CHECK(sys_rseq(r, 32, RSEQ_FLAG_UNREGISTER, RSEQ_SIG) == 0);
    return NULL;
}

int main(void)
{
    /* glibc registered this thread at start-up. */
    CHECK(__rseq_size >= 20);
    struct rseq *glibc = (struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset);
    CHECK((int)glibc->cpu_id >= 0);
    CHECK(sched_getcpu() == (int)glibc->cpu_id);
    CHECK_ERR(sys_rseq(&mine, 32, 0, RSEQ_SIG), EINVAL);           /* another area */
    CHECK_ERR(sys_rseq(glibc, 32, 0, RSEQ_SIG), EBUSY);
    CHECK_ERR(sys_rseq(glibc, 32, 0, RSEQ_SIG + 1), EPERM);
    CHECK_ERR(sys_rseq(glibc, 32, RSEQ_FLAG_UNREGISTER, RSEQ_SIG + 1), EPERM);
    CHECK_ERR(sys_rseq(&mine, 32, RSEQ_FLAG_UNREGISTER, RSEQ_SIG), EINVAL);
    CHECK_ERR(sys_rseq(glibc, 32, 4, RSEQ_SIG), EINVAL);
    CHECK(sys_rseq(glibc, 32, RSEQ_FLAG_UNREGISTER, RSEQ_SIG) == 0);
    CHECK(glibc->cpu_id == RSEQ_CPU_ID_UNINITIALIZED);

    /* Our own registration. */
    CHECK_ERR(sys_rseq((struct rseq *)((char *)&mine + 8), 32, 0, 0), EINVAL);  /* misaligned */
    CHECK_ERR(sys_rseq(&mine, 16, 0, 0), EINVAL);                             /* too short */
    mine.cpu_id = RSEQ_CPU_ID_UNINITIALIZED;
    mine.cpu_id_start = 0xffffffff;
    CHECK(sys_rseq(&mine, 32, 0, RSEQ_SIG) == 0);
    CHECK((int)mine.cpu_id >= 0 && (int)mine.cpu_id_start >= 0);
    CHECK_ERR(sys_rseq(&mine, 32, 0, RSEQ_SIG), EBUSY);

    /* rseq_cs outside any section: cleared at the next preemption. */
    struct rseq_cs cs = cs_for(cs_abort);
    __atomic_store_n(&mine.rseq_cs, (uintptr_t)&cs, __ATOMIC_RELAXED);
    while (__atomic_load_n(&mine.rseq_cs, __ATOMIC_RELAXED))
        ;
    /* In the section: aborted at the next preemption. */
    cs_loop(&mine, &cs);
    CHECK(mine.rseq_cs == 0);

    /* The same in another thread, with the main thread waiting. */
    static struct rseq other __attribute__((aligned(32)));
    pthread_t th;
    CHECK(pthread_create(&th, NULL, spin_thread, &other) == 0);
    CHECK(pthread_join(th, NULL) == 0);

    /* A wrong signature before the abort handler: SIGSEGV. */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        static struct rseq child __attribute__((aligned(32)));
        sys_rseq(&mine, 32, RSEQ_FLAG_UNREGISTER, RSEQ_SIG);
        if (sys_rseq(&child, 32, 0, RSEQ_SIG + 1) != 0)
            _exit(3);
        struct rseq_cs bad = cs_for(cs_abort);
        cs_loop(&child, &bad);
        _exit(4);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);

    /* membarrier */
    int q = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    CHECK(q > 0);
    CHECK(q & MEMBARRIER_CMD_GLOBAL);
    CHECK(q & MEMBARRIER_CMD_PRIVATE_EXPEDITED);
    CHECK_ERR(syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0), EPERM);
    CHECK(syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0);
    CHECK(syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0);
    CHECK(syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) == 0);
    CHECK_ERR(syscall(SYS_membarrier, 1 << 20, 0, 0), EINVAL);
    CHECK_ERR(syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 1, 0), EINVAL);
    CHECK(syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ, 0, 0) == 0);
    mine.cpu_id_start = 0xffffffff;
    CHECK(syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, 0, 0) == 0);
    CHECK(sys_rseq(&mine, 32, RSEQ_FLAG_UNREGISTER, RSEQ_SIG) == 0);
    ok();
    return 0;
}
