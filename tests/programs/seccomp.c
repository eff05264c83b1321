/* Application seccomp filters: seccomp(2), prctl(PR_SET_SECCOMP), the classic BPF
 * verifier, each action, stacking precedence, inheritance, TSYNC, strict mode and
 * /proc/self/status.  Every filter is installed in a forked child, so the checks
 * are independent.  Self-checking: prints "ok". */
#define _GNU_SOURCE
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <ucontext.h>

#include "check.h"

#define NR_FILTERED SYS_getppid    /* harmless, never called by libc behind our back */
#ifndef SYS_SECCOMP
#define SYS_SECCOMP 1
#endif

static int do_seccomp(unsigned op, unsigned flags, void *args)
{
    return syscall(SYS_seccomp, op, flags, args);
}

/* A filter: arch must be x86-64 (else KILL_PROCESS); `nr` gets `action`; else ALLOW. */
static int install(int nr, uint32_t action, unsigned flags)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, action),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { sizeof(f) / sizeof(f[0]), f };
    return do_seccomp(SECCOMP_SET_MODE_FILTER, flags, &prog);
}

static int install_prog(struct sock_filter *f, unsigned short n)
{
    struct sock_fprog prog = { n, f };
    return do_seccomp(SECCOMP_SET_MODE_FILTER, 0, &prog);
}

/* Runs fn in a child (with no_new_privs and no core dumps); returns its wait status. */
static int in_child(void (*fn)(void))
{
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        CHECK(prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0);
        CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0);
        fn();
        _exit(0);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    return status;
}

static void expect_ok(void (*fn)(void))
{
    int status = in_child(fn);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void expect_signal(void (*fn)(void), int sig)
{
    int status = in_child(fn);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == sig);
}

static void status_line(const char *key, char *out, size_t n)
{
    FILE *fp = fopen("/proc/self/status", "r");
    CHECK(fp != NULL);
    char line[256];
    out[0] = 0;
    while (fgets(line, sizeof line, fp)) {
        size_t k = strlen(key);
        if (strncmp(line, key, k) == 0 && line[k] == ':') {
            snprintf(out, n, "%s", line + k + 1 + strspn(line + k + 1, " \t"));
            out[strcspn(out, "\n")] = 0;
        }
    }
    fclose(fp);
}

/* -- the checks ------------------------------------------------------------------- */

static void t_errno(void)
{
    CHECK(prctl(PR_GET_SECCOMP, 0, 0, 0, 0) == 0);
    CHECK(install(NR_FILTERED, SECCOMP_RET_ERRNO | ENOTNAM, 0) == 0);
    CHECK_ERR(syscall(NR_FILTERED), ENOTNAM);
    CHECK(getpid() > 0);                     /* other calls pass */
    CHECK(prctl(PR_GET_SECCOMP, 0, 0, 0, 0) == 2);
    /* data above MAX_ERRNO is clamped to 4095 */
    CHECK(install(SYS_getuid, SECCOMP_RET_ERRNO | 0xFFFF, 0) == 0);
    errno = 0;
    CHECK(syscall(SYS_getuid) == -1 && errno == 4095);
    /* an unknown number is filtered too (before ENOSYS) */
    CHECK(install(1000, SECCOMP_RET_ERRNO | EDOM, 0) == 0);
    CHECK_ERR(syscall(1000), EDOM);
    CHECK_ERR(syscall(1001), ENOSYS);
    char v[64];
    status_line("Seccomp", v, sizeof v);
    CHECK(strcmp(v, "2") == 0);
    status_line("Seccomp_filters", v, sizeof v);
    CHECK(strcmp(v, "3") == 0);
    status_line("NoNewPrivs", v, sizeof v);
    CHECK(strcmp(v, "1") == 0);
}

static volatile int trap_ok;
static volatile uintptr_t trap_addr;

static void on_sigsys(int sig, siginfo_t *si, void *ucv)
{
    ucontext_t *uc = ucv;
    trap_ok = sig == SIGSYS && si->si_signo == SIGSYS && si->si_code == SYS_SECCOMP &&
              si->si_errno == 0x1234 && si->si_syscall == NR_FILTERED &&
              si->si_arch == AUDIT_ARCH_X86_64 &&
              uc->uc_mcontext.gregs[REG_RAX] == NR_FILTERED &&
              (uintptr_t)si->si_call_addr == (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
    trap_addr = (uintptr_t)si->si_call_addr;
}

static void t_trap(void)
{
    struct sigaction sa = { 0 };
    sa.sa_sigaction = on_sigsys;
    sa.sa_flags = SA_SIGINFO;
    CHECK(sigaction(SIGSYS, &sa, NULL) == 0);
    CHECK(install(NR_FILTERED, SECCOMP_RET_TRAP | 0x1234, 0) == 0);
    syscall(NR_FILTERED);
    CHECK(trap_ok);
    /* si_call_addr is the address after the syscall instruction (0f 05) */
    CHECK(((unsigned char *)trap_addr)[-2] == 0x0f && ((unsigned char *)trap_addr)[-1] == 0x05);
    /* blocked SIGSYS is forced: the default action kills */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGSYS);
    CHECK(sigprocmask(SIG_BLOCK, &set, NULL) == 0);
    signal(SIGSYS, SIG_IGN);
    syscall(NR_FILTERED);
    _exit(3);                                /* not reached */
}

static void t_kill_process(void)
{
    CHECK(install(NR_FILTERED, SECCOMP_RET_KILL_PROCESS, 0) == 0);
    syscall(NR_FILTERED);
    _exit(3);
}

static void *kill_thread_body(void *arg)
{
    (void)arg;
    syscall(NR_FILTERED);                    /* this thread dies here, alone */
    return (void *)1;
}

static void t_kill_thread(void)
{
    CHECK(install(NR_FILTERED, SECCOMP_RET_KILL_THREAD, 0) == 0);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, kill_thread_body, NULL) == 0);
    /* glibc's join waits on the thread's tid futex, cleared by the kernel at exit */
    CHECK(pthread_join(th, NULL) == 0);
    syscall(NR_FILTERED);                    /* the last thread: the process dies */
    _exit(3);
}

static void t_trace_and_log(void)
{
    CHECK(install(NR_FILTERED, SECCOMP_RET_TRACE | 7, 0) == 0);
    CHECK_ERR(syscall(NR_FILTERED), ENOSYS);  /* no tracer */
    CHECK(install(SYS_getpid, SECCOMP_RET_LOG, 0) == 0);
    CHECK(syscall(SYS_getpid) == getpid());
}

static void t_precedence(void)
{
    CHECK(install(NR_FILTERED, SECCOMP_RET_ERRNO | 10, 0) == 0);
    CHECK(install(NR_FILTERED, SECCOMP_RET_ERRNO | 20, 0) == 0);
    CHECK_ERR(syscall(NR_FILTERED), 20);     /* equal actions: the newest filter's data */
    CHECK(install(NR_FILTERED, SECCOMP_RET_ALLOW, 0) == 0);
    CHECK_ERR(syscall(NR_FILTERED), 20);     /* ALLOW never overrides */
    CHECK(install(NR_FILTERED, SECCOMP_RET_LOG, 0) == 0);
    CHECK_ERR(syscall(NR_FILTERED), 20);
    CHECK(install(NR_FILTERED, SECCOMP_RET_TRACE, 0) == 0);
    CHECK_ERR(syscall(NR_FILTERED), 20);     /* ERRNO (0x0005....) beats TRACE (0x7ff0....) */
}

static void t_precedence2(void)
{
    /* ERRNO (0x00050000) beats TRACE (0x7ff00000); KILL_PROCESS beats everything */
    CHECK(install(NR_FILTERED, SECCOMP_RET_TRACE, 0) == 0);
    CHECK(install(NR_FILTERED, SECCOMP_RET_ERRNO | 33, 0) == 0);
    CHECK_ERR(syscall(NR_FILTERED), 33);
    CHECK(install(NR_FILTERED, SECCOMP_RET_KILL_PROCESS, 0) == 0);
    CHECK(install(NR_FILTERED, SECCOMP_RET_ALLOW, 0) == 0);
    syscall(NR_FILTERED);
    _exit(3);
}

static void t_fork_inherits(void)
{
    CHECK(install(NR_FILTERED, SECCOMP_RET_ERRNO | EXDEV, 0) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        errno = 0;
        _exit(syscall(NR_FILTERED) == -1 && errno == EXDEV &&
              prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1 ? 0 : 1);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void t_args(void)
{
    /* ERRNO only when args[0] == 42 (low word), using the scratch memory and X */
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_dup, 0, 6),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
        BPF_STMT(BPF_ST, 3),
        BPF_STMT(BPF_LDX | BPF_MEM, 3),
        BPF_STMT(BPF_MISC | BPF_TXA, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 42, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EMLINK),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    CHECK(install_prog(f, sizeof(f) / sizeof(f[0])) == 0);
    CHECK_ERR(syscall(SYS_dup, 42), EMLINK);
    CHECK_ERR(syscall(SYS_dup, 43), EBADF);
    CHECK_ERR(syscall(SYS_dup, (42L | (1L << 32))), EMLINK);  /* only the low word read */
}

static void t_verifier(void)
{
    struct sock_filter ret_allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    struct sock_fprog empty = { 0, &ret_allow };
    CHECK_ERR(do_seccomp(SECCOMP_SET_MODE_FILTER, 0, &empty), EINVAL);
    static struct sock_filter big[BPF_MAXINSNS + 1];
    for (int i = 0; i <= BPF_MAXINSNS; i++)
        big[i] = ret_allow;
    CHECK_ERR(install_prog(big, BPF_MAXINSNS + 1), EINVAL);
    CHECK(install_prog(big, BPF_MAXINSNS) == 0);
    CHECK_ERR(do_seccomp(SECCOMP_SET_MODE_FILTER, 0, NULL), EFAULT);
    struct sock_fprog bad_ptr = { 1, (struct sock_filter *)8 };
    CHECK_ERR(do_seccomp(SECCOMP_SET_MODE_FILTER, 0, &bad_ptr), EFAULT);
    struct sock_filter unaligned[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 1), ret_allow };
    CHECK_ERR(install_prog(unaligned, 2), EINVAL);
    struct sock_filter past_end[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 64), ret_allow };
    CHECK_ERR(install_prog(past_end, 2), EINVAL);
    struct sock_filter half[] = {
        BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 0), ret_allow };
    CHECK_ERR(install_prog(half, 2), EINVAL);
    struct sock_filter mod[] = {
        BPF_STMT(BPF_ALU | BPF_MOD | BPF_K, 3), ret_allow };
    CHECK_ERR(install_prog(mod, 2), EINVAL);
    struct sock_filter div0[] = {
        BPF_STMT(BPF_ALU | BPF_DIV | BPF_K, 0), ret_allow };
    CHECK_ERR(install_prog(div0, 2), EINVAL);
    struct sock_filter shift[] = {
        BPF_STMT(BPF_ALU | BPF_LSH | BPF_K, 32), ret_allow };
    CHECK_ERR(install_prog(shift, 2), EINVAL);
    struct sock_filter no_ret[] = { BPF_STMT(BPF_LD | BPF_IMM, 0) };
    CHECK_ERR(install_prog(no_ret, 1), EINVAL);
    struct sock_filter jump_out[] = {
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 0), ret_allow };
    CHECK_ERR(install_prog(jump_out, 2), EINVAL);
    struct sock_filter ja_out[] = { BPF_STMT(BPF_JMP | BPF_JA, 1), ret_allow };
    CHECK_ERR(install_prog(ja_out, 2), EINVAL);
    struct sock_filter mem_unset[] = { BPF_STMT(BPF_LD | BPF_MEM, 2), ret_allow };
    CHECK_ERR(install_prog(mem_unset, 2), EINVAL);
    struct sock_filter mem_bad[] = { BPF_STMT(BPF_ST, 16), ret_allow };
    CHECK_ERR(install_prog(mem_bad, 2), EINVAL);
    /* a store on one path only */
    struct sock_filter mem_path[] = {
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1),
        BPF_STMT(BPF_ST, 1),
        BPF_STMT(BPF_LD | BPF_MEM, 1),
        ret_allow };
    CHECK_ERR(install_prog(mem_path, 4), EINVAL);
    struct sock_filter bogus[] = { BPF_STMT(0xffff, 0), ret_allow };
    CHECK_ERR(install_prog(bogus, 2), EINVAL);
    struct sock_fprog one = { 1, &ret_allow };
    CHECK_ERR(do_seccomp(SECCOMP_SET_MODE_FILTER, 1u << 20, &one), EINVAL);
    CHECK_ERR(do_seccomp(SECCOMP_SET_MODE_FILTER,
                         SECCOMP_FILTER_FLAG_TSYNC | SECCOMP_FILTER_FLAG_NEW_LISTENER, &one),
              EINVAL);
    CHECK_ERR(do_seccomp(SECCOMP_SET_MODE_STRICT, 1, NULL), EINVAL);
    CHECK_ERR(do_seccomp(99, 0, NULL), EINVAL);
    CHECK(do_seccomp(SECCOMP_SET_MODE_FILTER,
                     SECCOMP_FILTER_FLAG_LOG | SECCOMP_FILTER_FLAG_SPEC_ALLOW, &one) == 0);
    CHECK_ERR(prctl(PR_SET_SECCOMP, 7, 0, 0, 0), EINVAL);
    CHECK_ERR(prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT, 0, 0, 0), EINVAL);  /* mode set */
    /* the classic ALU and jumps compute as Linux's interpreter */
    struct sock_filter alu[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NR_FILTERED, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_IMM, 7),
        BPF_STMT(BPF_ALU | BPF_MUL | BPF_K, 6),          /* 42 */
        BPF_STMT(BPF_ALU | BPF_SUB | BPF_K, 50),         /* -8 */
        BPF_STMT(BPF_ALU | BPF_RSH | BPF_K, 28),         /* 0xf */
        BPF_STMT(BPF_MISC | BPF_TAX, 0),
        BPF_STMT(BPF_LD | BPF_IMM, 0x100),
        BPF_STMT(BPF_ALU | BPF_DIV | BPF_X, 0),          /* 0x100 / 15 = 17 */
        BPF_STMT(BPF_ALU | BPF_XOR | BPF_K, 0x3),        /* 18 */
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x10, 0, 2),
        BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, 17, 0, 1),
        BPF_STMT(BPF_ALU | BPF_OR | BPF_K, SECCOMP_RET_ERRNO),
        BPF_STMT(BPF_RET | BPF_A, 0),
    };
    CHECK(install_prog(alu, sizeof(alu) / sizeof(alu[0])) == 0);
    CHECK_ERR(syscall(NR_FILTERED), 18);
}

static void t_div_by_x_zero(void)
{
    /* A / X with X == 0 ends the program with 0: SECCOMP_RET_KILL_THREAD */
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NR_FILTERED, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LDX | BPF_IMM, 0),
        BPF_STMT(BPF_ALU | BPF_DIV | BPF_X, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    CHECK(install_prog(f, sizeof(f) / sizeof(f[0])) == 0);
    syscall(NR_FILTERED);
    _exit(3);
}

static void t_strict(void)
{
    static const char msg[] = "x";
    CHECK(prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT, 0, 0, 0) == 0);
    if (syscall(SYS_write, 1, msg, 0) != 0)      /* write is allowed */
        syscall(SYS_exit, 4);
    syscall(SYS_getppid);                     /* anything else: SIGKILL */
    syscall(SYS_exit, 3);
}

static void t_strict_exit(void)
{
    CHECK(prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT, 0, 0, 0) == 0);
    syscall(SYS_exit, 0);                     /* exit (not exit_group) is allowed */
}

static pthread_barrier_t barrier;
static volatile int thread_errno;

static void *tsync_body(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&barrier);           /* main installs */
    pthread_barrier_wait(&barrier);
    errno = 0;
    syscall(NR_FILTERED);
    thread_errno = errno;
    return NULL;
}

static void t_tsync(void)
{
    pthread_t th;
    CHECK(pthread_barrier_init(&barrier, NULL, 2) == 0);
    CHECK(pthread_create(&th, NULL, tsync_body, NULL) == 0);
    pthread_barrier_wait(&barrier);
    CHECK(install(NR_FILTERED, SECCOMP_RET_ERRNO | ETXTBSY, SECCOMP_FILTER_FLAG_TSYNC) == 0);
    pthread_barrier_wait(&barrier);
    CHECK(pthread_join(th, NULL) == 0);
    CHECK(thread_errno == ETXTBSY);
}

static volatile pid_t other_tid;

static void *diverge_body(void *arg)
{
    (void)arg;
    other_tid = gettid();
    CHECK(install(SYS_getuid, SECCOMP_RET_ERRNO | EIO, 0) == 0);  /* its own filter */
    pthread_barrier_wait(&barrier);
    pthread_barrier_wait(&barrier);
    return NULL;
}

static void t_tsync_fails(void)
{
    pthread_t th;
    CHECK(install(NR_FILTERED, SECCOMP_RET_ERRNO | EROFS, 0) == 0);  /* shared ancestor */
    CHECK(pthread_barrier_init(&barrier, NULL, 2) == 0);
    CHECK(pthread_create(&th, NULL, diverge_body, NULL) == 0);
    pthread_barrier_wait(&barrier);
    /* the sibling's filters are not an ancestor of ours: its tid comes back */
    CHECK(install(SYS_getgid, SECCOMP_RET_ERRNO | EIO, SECCOMP_FILTER_FLAG_TSYNC) == other_tid);
    CHECK_ERR(install(SYS_getgid, SECCOMP_RET_ERRNO | EIO,
                      SECCOMP_FILTER_FLAG_TSYNC | SECCOMP_FILTER_FLAG_TSYNC_ESRCH), ESRCH);
    CHECK(syscall(SYS_getgid) >= 0);          /* nothing installed */
    pthread_barrier_wait(&barrier);
    CHECK(pthread_join(th, NULL) == 0);
}

static void t_action_avail(void)
{
    uint32_t actions[] = { SECCOMP_RET_KILL_PROCESS, SECCOMP_RET_KILL_THREAD,
                           SECCOMP_RET_TRAP, SECCOMP_RET_ERRNO, SECCOMP_RET_TRACE,
                           SECCOMP_RET_LOG, SECCOMP_RET_ALLOW };
    for (unsigned i = 0; i < sizeof(actions) / sizeof(actions[0]); i++)
        CHECK(do_seccomp(SECCOMP_GET_ACTION_AVAIL, 0, &actions[i]) == 0);
    uint32_t bogus = 0x12340000;
    CHECK_ERR(do_seccomp(SECCOMP_GET_ACTION_AVAIL, 0, &bogus), EOPNOTSUPP);
    CHECK_ERR(do_seccomp(SECCOMP_GET_ACTION_AVAIL, 1, &actions[0]), EINVAL);
    CHECK_ERR(do_seccomp(SECCOMP_GET_ACTION_AVAIL, 0, NULL), EFAULT);
}

static void t_no_new_privs(void)
{
    CHECK(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1);
    CHECK_ERR(prctl(PR_SET_NO_NEW_PRIVS, 0, 0, 0, 0), EINVAL);  /* one way */
    CHECK_ERR(prctl(PR_SET_NO_NEW_PRIVS, 1, 1, 0, 0), EINVAL);
}

static void t_needs_nnp(void)
{
    /* Run without no_new_privs and (if root) as an unprivileged user. */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        if (geteuid() == 0 && setresuid(65534, 65534, 65534) != 0)
            _exit(5);
        if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 0)
            _exit(6);
        errno = 0;
        if (install(NR_FILTERED, SECCOMP_RET_ERRNO | 1, 0) != -1 || errno != EACCES)
            _exit(7);
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
            _exit(8);
        if (install(NR_FILTERED, SECCOMP_RET_ERRNO | 1, 0) != 0)
            _exit(9);
        _exit(0);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void t_needs_cap_sys_admin(void)
{
    /* Root without CAP_SYS_ADMIN in its effective set (capset) needs no_new_privs too. */
    if (geteuid() != 0)
        return;
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
        struct __user_cap_data_struct data[2];
        if (syscall(SYS_capget, &hdr, data) != 0 || !(data[0].effective & (1u << CAP_SYS_ADMIN)))
            _exit(5);
        data[0].effective &= ~(1u << CAP_SYS_ADMIN);
        if (syscall(SYS_capset, &hdr, data) != 0)
            _exit(6);
        struct __user_cap_data_struct back[2];
        if (syscall(SYS_capget, &hdr, back) != 0 || back[0].effective & (1u << CAP_SYS_ADMIN) ||
            !(back[0].permitted & (1u << CAP_SYS_ADMIN)))
            _exit(7);
        errno = 0;
        if (install(NR_FILTERED, SECCOMP_RET_ERRNO | 1, 0) != -1 || errno != EACCES)
            _exit(8);
        data[0].effective |= 1u << CAP_SYS_ADMIN;       /* still permitted: raise it back */
        if (syscall(SYS_capset, &hdr, data) != 0)
            _exit(9);
        if (install(NR_FILTERED, SECCOMP_RET_ERRNO | 1, 0) != 0)
            _exit(10);
        if (prctl(PR_GET_SECCOMP, 0, 0, 0, 0) != 2)
            _exit(11);
        _exit(0);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

int main(void)
{
    CHECK(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 0);
    expect_ok(t_errno);
    expect_signal(t_trap, SIGSYS);           /* the second, forced SIGSYS kills */
    expect_signal(t_kill_process, SIGSYS);
    expect_signal(t_kill_thread, SIGSYS);
    expect_ok(t_trace_and_log);
    expect_ok(t_precedence);
    expect_signal(t_precedence2, SIGSYS);
    expect_ok(t_fork_inherits);
    expect_ok(t_args);
    expect_ok(t_verifier);
    expect_signal(t_div_by_x_zero, SIGSYS);
    expect_signal(t_strict, SIGKILL);
    expect_ok(t_strict_exit);
    expect_ok(t_tsync);
    expect_ok(t_tsync_fails);
    expect_ok(t_action_avail);
    expect_ok(t_no_new_privs);
    t_needs_nnp();
    t_needs_cap_sys_admin();
    ok();
    return 0;
}
