/* ptrace(2) between processes: each sub-test (argv[1]) prints what a tracer
 * observes (no pids or addresses), so native and sandboxed runs must print the
 * same lines; CHECKs stop at the first surprise.  Prints "ok" at the end. */
#define _GNU_SOURCE
#include <elf.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <linux/ptrace.h>
#include "check.h"

#ifndef PTRACE_EVENT_STOP
#define PTRACE_EVENT_STOP 128
#endif

static volatile long global = 7;
static char buffer[64] = "hello from the tracee";

static int wait_stop(pid_t pid, int flags)
{
    int st;
    pid_t r;
    do {
        r = waitpid(pid, &st, flags);
    } while (r < 0 && errno == EINTR);
    CHECK(r == pid);
    return st;
}

static void expect_exit(pid_t pid, int code)
{
    int st = wait_stop(pid, __WALL);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != code)
        fprintf(stderr, "status %#x, expected exit %d\n", st, code);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == code);
}

/* A child that asks to be traced and stops itself. */
static pid_t traced_child(void (*body)(void))
{
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        if (ptrace(PTRACE_TRACEME, 0, 0, 0) != 0)
            _exit(100);
        raise(SIGSTOP);
        body();
        _exit(0);
    }
    int st = wait_stop(pid, 0);
    CHECK(WIFSTOPPED(st) && WSTOPSIG(st) == SIGSTOP);
    return pid;
}

/* -- TRACEME + exec ------------------------------------------------------------------- */

static void t_traceme_exec(void)
{
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        CHECK(ptrace(PTRACE_TRACEME, 0, 0, 0) == 0);
        CHECK_ERR(ptrace(PTRACE_TRACEME, 0, 0, 0), EPERM);   /* already traced */
        execl("/bin/true", "true", (char *)NULL);
        _exit(99);
    }
    int st = wait_stop(pid, 0);
    printf("exec stop: stopped=%d sig=%d event=%d\n", WIFSTOPPED(st), WSTOPSIG(st), st >> 16);
    siginfo_t si;
    CHECK(ptrace(PTRACE_GETSIGINFO, pid, 0, &si) == 0);
    printf("siginfo: signo=%d code=%d\n", si.si_signo, si.si_code);
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    char line[256];
    int tracer = -1;
    char state = '?';
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "TracerPid: %d", &tracer) == 1)
            continue;
        sscanf(line, "State: %c", &state);
    }
    fclose(f);
    printf("status: tracer is me=%d state=%c\n", tracer == getpid(), state);
    CHECK_ERR(ptrace(PTRACE_CONT, pid, 0, 65), EIO);       /* not a signal */
    CHECK_ERR(ptrace(PTRACE_CONT, 1 << 22, 0, 0), ESRCH);
    CHECK(ptrace(PTRACE_CONT, pid, 0, 0) == 0);
    expect_exit(pid, 0);
    printf("exited 0\n");
}

/* -- PEEK/POKE, process_vm_*, /proc/PID/mem ----------------------------------------------- */

static void body_exit_global(void)
{
    _exit((int)global);
}

static int text_function(void)
{
    return 5;
}

static void t_peekpoke(void)
{
    pid_t pid = traced_child(body_exit_global);
    errno = 0;
    long v = ptrace(PTRACE_PEEKDATA, pid, &global, 0);
    printf("peek global=%ld errno=%d\n", v, errno);
    CHECK(ptrace(PTRACE_POKEDATA, pid, &global, (void *)42L) == 0);
    errno = 0;
    long text = ptrace(PTRACE_PEEKTEXT, pid, (void *)text_function, 0);
    CHECK(errno == 0);
    /* Text is read-only: a tracer writes it anyway (breakpoints). */
    CHECK(ptrace(PTRACE_POKETEXT, pid, (void *)text_function, (void *)text) == 0);
    errno = 0;
    CHECK(ptrace(PTRACE_PEEKDATA, pid, (void *)8, 0) == -1 && errno == EIO);
    CHECK_ERR(ptrace(PTRACE_POKEDATA, pid, (void *)8, 0), EIO);

    char got[64] = {0};
    struct iovec local = {got, sizeof got}, remote = {buffer, sizeof buffer};
    CHECK(process_vm_readv(pid, &local, 1, &remote, 1, 0) == (ssize_t)sizeof buffer);
    printf("process_vm_readv: %s\n", got);
    char msg[] = "written by the tracer";
    struct iovec l2 = {msg, sizeof msg}, r2 = {buffer, sizeof msg};
    CHECK(process_vm_writev(pid, &l2, 1, &r2, 1, 0) == (ssize_t)sizeof msg);
    struct iovec bad = {(void *)8, 16};
    CHECK_ERR(process_vm_readv(pid, &local, 1, &bad, 1, 0), EFAULT);
    CHECK_ERR(process_vm_readv(pid, &local, 1, &remote, 1, 1), EINVAL);
    /* process_vm_writev honours protections (unlike ptrace). */
    struct iovec rt = {(void *)text_function, 1};
    CHECK_ERR(process_vm_writev(pid, &l2, 1, &rt, 1, 0), EFAULT);

    char path[64];
    snprintf(path, sizeof path, "/proc/%d/mem", pid);
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0);
    char viamem[64] = {0};
    CHECK(pread(fd, viamem, sizeof msg, (off_t)(uintptr_t)buffer) == (ssize_t)sizeof msg);
    printf("/proc/PID/mem: %s\n", viamem);
    long g = 0;
    CHECK(pread(fd, &g, sizeof g, (off_t)(uintptr_t)&global) == sizeof g);
    printf("/proc/PID/mem global=%ld\n", g);
    close(fd);

    CHECK(ptrace(PTRACE_CONT, pid, 0, 0) == 0);
    expect_exit(pid, 42);
    printf("child exited with the poked value\n");
}

/* -- registers at syscall stops -------------------------------------------------------- */

static void body_regs(void)
{
    long a = syscall(SYS_getppid);
    long b = syscall(SYS_getuid);
    _exit(a == 12345 && b == 777 ? 0 : 1);
}

/* Runs the tracee to the next syscall stop of `nr` (enter or exit, as `want_exit`). */
static void to_syscall(pid_t pid, long nr, int want_exit, struct user_regs_struct *regs)
{
    for (;;) {
        CHECK(ptrace(PTRACE_SYSCALL, pid, 0, 0) == 0);
        int st = wait_stop(pid, 0);
        CHECK(WIFSTOPPED(st));
        if (WSTOPSIG(st) != (SIGTRAP | 0x80))
            continue;
        struct ptrace_syscall_info info;
        CHECK(ptrace(PTRACE_GET_SYSCALL_INFO, pid, sizeof info, &info) > 0);
        CHECK(ptrace(PTRACE_GETREGS, pid, 0, regs) == 0);
        if ((long)regs->orig_rax == nr &&
            info.op == (want_exit ? PTRACE_SYSCALL_INFO_EXIT : PTRACE_SYSCALL_INFO_ENTRY))
            return;
    }
}

static void t_regs(void)
{
    pid_t pid = traced_child(body_regs);
    CHECK(ptrace(PTRACE_SETOPTIONS, pid, 0, PTRACE_O_TRACESYSGOOD) == 0);
    struct user_regs_struct regs;
    to_syscall(pid, SYS_getppid, 0, &regs);
    printf("getppid entry: rax=%ld\n", (long)regs.rax);
    to_syscall(pid, SYS_getppid, 1, &regs);
    printf("getppid exit: result is my pid=%d\n", (pid_t)regs.rax == getpid());
    regs.rax = 12345;
    CHECK(ptrace(PTRACE_SETREGS, pid, 0, &regs) == 0);
    struct user_regs_struct bad = regs;
    bad.cs = 0;
    CHECK_ERR(ptrace(PTRACE_SETREGS, pid, 0, &bad), EIO);
    /* Skip getuid at its entry stop: orig_rax -1, rax chosen by the tracer. */
    to_syscall(pid, SYS_getuid, 0, &regs);
    regs.orig_rax = -1;
    regs.rax = 777;
    CHECK(ptrace(PTRACE_SETREGS, pid, 0, &regs) == 0);
    CHECK(ptrace(PTRACE_SYSCALL, pid, 0, 0) == 0);
    int st = wait_stop(pid, 0);
    CHECK(WIFSTOPPED(st) && WSTOPSIG(st) == (SIGTRAP | 0x80));
    CHECK(ptrace(PTRACE_GETREGS, pid, 0, &regs) == 0);
    printf("skipped syscall exit: orig_rax=%ld rax=%ld\n", (long)regs.orig_rax, (long)regs.rax);
    /* PEEKUSER reads the same registers by struct user offset. */
    errno = 0;
    long rax = ptrace(PTRACE_PEEKUSER, pid, offsetof(struct user, regs.rax), 0);
    printf("peekuser rax=%ld errno=%d\n", rax, errno);
    CHECK_ERR(ptrace(PTRACE_PEEKUSER, pid, 3, 0), EIO);
    struct iovec iov = {&regs, sizeof regs};
    CHECK(ptrace(PTRACE_GETREGSET, pid, NT_PRSTATUS, &iov) == 0);
    printf("getregset: len=%zu rax=%ld\n", iov.iov_len, (long)regs.rax);
    struct user_fpregs_struct fp;
    CHECK(ptrace(PTRACE_GETFPREGS, pid, 0, &fp) == 0);
    CHECK(ptrace(PTRACE_SETFPREGS, pid, 0, &fp) == 0);
    CHECK(ptrace(PTRACE_CONT, pid, 0, 0) == 0);
    expect_exit(pid, 0);
    printf("child saw the tracer's results\n");
}

/* -- a PTRACE_SYSCALL loop -------------------------------------------------------------- */

static void body_count(void)
{
    for (int i = 0; i < 5; i++)
        syscall(SYS_getpid);
    for (int i = 0; i < 3; i++)
        syscall(SYS_getppid);
    syscall(SYS_exit_group, 3);
}

static void t_count(void)
{
    pid_t pid = traced_child(body_count);
    CHECK(ptrace(PTRACE_SETOPTIONS, pid, 0, PTRACE_O_TRACESYSGOOD) == 0);
    int getpid_n = 0, getppid_n = 0, exit_n = 0, exits = 0, first = 1;
    for (;;) {
        CHECK(ptrace(PTRACE_SYSCALL, pid, 0, 0) == 0);
        int st = wait_stop(pid, 0);
        if (WIFEXITED(st)) {
            printf("exit status %d\n", WEXITSTATUS(st));
            break;
        }
        CHECK(WIFSTOPPED(st) && WSTOPSIG(st) == (SIGTRAP | 0x80));
        struct ptrace_syscall_info info;
        long n = ptrace(PTRACE_GET_SYSCALL_INFO, pid, sizeof info, &info);
        CHECK(n > 0);
        if (first) {
            printf("first stop: op=%d arch=%#x\n", info.op, info.arch);
            first = 0;
        }
        unsigned long msg = 0;
        CHECK(ptrace(PTRACE_GETEVENTMSG, pid, 0, &msg) == 0);
        CHECK(msg == info.op);
        if (info.op == PTRACE_SYSCALL_INFO_EXIT) {
            exits++;
            continue;
        }
        CHECK(info.op == PTRACE_SYSCALL_INFO_ENTRY);
        CHECK(n == offsetof(struct ptrace_syscall_info, entry.args) + 6 * 8);
        if (info.entry.nr == SYS_getpid)
            getpid_n++;
        else if (info.entry.nr == SYS_getppid)
            getppid_n++;
        else if (info.entry.nr == SYS_exit_group) {
            exit_n++;
            printf("exit_group arg=%llu\n", (unsigned long long)info.entry.args[0]);
        }
    }
    printf("getpid=%d getppid=%d exit_group=%d exit stops>=8: %d\n", getpid_n, getppid_n,
           exit_n, exits >= 8);
}

/* -- SEIZE, INTERRUPT, LISTEN, group-stop -------------------------------------------- */

static void t_seize(void)
{
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        for (;;)
            pause();
    }
    CHECK_ERR(ptrace(PTRACE_SEIZE, pid, 0, 1 << 30), EIO);
    CHECK(ptrace(PTRACE_SEIZE, pid, 0, PTRACE_O_TRACESYSGOOD) == 0);
    CHECK_ERR(ptrace(PTRACE_SEIZE, pid, 0, 0), EPERM);      /* already traced */
    CHECK_ERR(ptrace(PTRACE_CONT, pid, 0, 0), ESRCH);       /* running */
    CHECK(ptrace(PTRACE_INTERRUPT, pid, 0, 0) == 0);
    int st = wait_stop(pid, 0);
    printf("interrupt: sig=%d event=%d\n", WSTOPSIG(st), st >> 16);
    siginfo_t si;
    CHECK(ptrace(PTRACE_GETSIGINFO, pid, 0, &si) == 0);
    printf("interrupt siginfo: signo=%d code>>8=%d\n", si.si_signo, si.si_code >> 8);
    CHECK(ptrace(PTRACE_CONT, pid, 0, 0) == 0);
    CHECK(kill(pid, SIGSTOP) == 0);
    st = wait_stop(pid, 0);
    printf("signal-delivery stop: sig=%d event=%d\n", WSTOPSIG(st), st >> 16);
    CHECK(ptrace(PTRACE_CONT, pid, 0, SIGSTOP) == 0);
    st = wait_stop(pid, 0);
    printf("group-stop: sig=%d event=%d\n", WSTOPSIG(st), st >> 16);
    CHECK(ptrace(PTRACE_GETSIGINFO, pid, 0, &si) == 0);
    printf("group-stop siginfo: signo=%d code>>8=%d\n", si.si_signo, si.si_code >> 8);
    CHECK(ptrace(PTRACE_LISTEN, pid, 0, 0) == 0);
    CHECK(waitpid(pid, &st, WNOHANG) == 0);
    printf("listening, nothing to wait for\n");
    CHECK(kill(pid, SIGCONT) == 0);
    st = wait_stop(pid, 0);
    printf("after SIGCONT: sig=%d event=%d\n", WSTOPSIG(st), st >> 16);
    CHECK(ptrace(PTRACE_CONT, pid, 0, 0) == 0);
    st = wait_stop(pid, 0);
    printf("then: sig=%d event=%d\n", WSTOPSIG(st), st >> 16);
    CHECK(ptrace(PTRACE_DETACH, pid, 0, 0) == 0);
    CHECK(kill(pid, SIGKILL) == 0);
    st = wait_stop(pid, 0);
    printf("killed: signaled=%d sig=%d\n", WIFSIGNALED(st), WTERMSIG(st));
}

/* -- fork and clone events -------------------------------------------------------------- */

static void *thread_body(void *arg)
{
    (void)arg;
    return NULL;
}

static void body_fork(void)
{
    pid_t c = fork();
    if (c == 0)
        _exit(7);
    int st;
    if (waitpid(c, &st, 0) != c || !WIFEXITED(st) || WEXITSTATUS(st) != 7)
        _exit(1);
    pthread_t th;
    if (pthread_create(&th, NULL, thread_body, NULL) != 0)
        _exit(2);
    pthread_join(th, NULL);
    _exit(0);
}

/* The next event stop of `pid`, passing its signals (SIGCHLD) through. */
static int wait_event(pid_t pid)
{
    for (;;) {
        int st = wait_stop(pid, __WALL);
        CHECK(WIFSTOPPED(st));
        if (st >> 16)
            return st;
        CHECK(ptrace(PTRACE_CONT, pid, 0, WSTOPSIG(st)) == 0);
    }
}

static void t_events(void)
{
    pid_t pid = traced_child(body_fork);
    CHECK(ptrace(PTRACE_SETOPTIONS, pid, 0, PTRACE_O_TRACEFORK | PTRACE_O_TRACECLONE) == 0);
    CHECK(ptrace(PTRACE_CONT, pid, 0, 0) == 0);
    int st = wait_event(pid);
    printf("parent: sig=%d event=%d\n", WSTOPSIG(st), st >> 16);
    unsigned long msg = 0;
    CHECK(ptrace(PTRACE_GETEVENTMSG, pid, 0, &msg) == 0);
    pid_t gc = (pid_t)msg;
    st = wait_stop(gc, __WALL);
    printf("new child: sig=%d event=%d\n", WSTOPSIG(st), st >> 16);
    CHECK(ptrace(PTRACE_CONT, gc, 0, 0) == 0);
    expect_exit(gc, 7);
    printf("tracer saw the new child exit 7\n");
    CHECK(ptrace(PTRACE_CONT, pid, 0, 0) == 0);
    st = wait_event(pid);
    printf("parent: sig=%d event=%d\n", WSTOPSIG(st), st >> 16);
    CHECK(ptrace(PTRACE_GETEVENTMSG, pid, 0, &msg) == 0);
    pid_t tid = (pid_t)msg;
    printf("thread is a new tid: %d\n", tid != pid && tid != gc);
    st = wait_stop(tid, __WALL);
    printf("new thread: sig=%d event=%d\n", WSTOPSIG(st), st >> 16);
    CHECK(ptrace(PTRACE_CONT, tid, 0, 0) == 0);
    CHECK(ptrace(PTRACE_CONT, pid, 0, 0) == 0);
    expect_exit(tid, 0);
    printf("thread exit reported\n");
    for (;;) {      /* the parent's own exit, passing its signals through */
        st = wait_stop(pid, __WALL);
        if (!WIFSTOPPED(st))
            break;
        CHECK(ptrace(PTRACE_CONT, pid, 0, st >> 16 ? 0 : WSTOPSIG(st)) == 0);
    }
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    printf("parent exited 0\n");
}

/* -- signals: suppress, change, inject --------------------------------------------------- */

static volatile int usr1_count;
static volatile int usr1_from_tracer;

static void on_usr1(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    usr1_count++;
    if (si->si_code == SI_USER && si->si_pid == getppid())
        usr1_from_tracer = 1;
}

static void body_signals(void)
{
    struct sigaction sa = {0};
    sa.sa_sigaction = on_usr1;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGUSR2, SIG_IGN);
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    sigprocmask(SIG_BLOCK, &term, NULL);
    raise(SIGTERM);     /* stays pending: the tracer peeks at it */
    raise(SIGUSR1);     /* suppressed by the tracer */
    int a = usr1_count;
    raise(SIGUSR2);     /* ignored, but the tracer sees it and makes it SIGUSR1 */
    int b = usr1_count;
    _exit(a * 10 + b + (usr1_from_tracer ? 100 : 0));
}

static void t_signals(void)
{
    pid_t pid = traced_child(body_signals);
    CHECK(ptrace(PTRACE_CONT, pid, 0, 0) == 0);
    int st = wait_stop(pid, 0);
    printf("stop: sig=%d\n", WSTOPSIG(st));
    siginfo_t si;
    CHECK(ptrace(PTRACE_GETSIGINFO, pid, 0, &si) == 0);
    printf("siginfo: signo=%d code=%d\n", si.si_signo, si.si_code);
    struct ptrace_peeksiginfo_args pa = {0, 0, 4};
    siginfo_t q[4];
    long n = ptrace(PTRACE_PEEKSIGINFO, pid, &pa, q);
    printf("peeksiginfo: %ld queued, first signo=%d\n", n, n > 0 ? q[0].si_signo : 0);
    pa.flags = PTRACE_PEEKSIGINFO_SHARED;
    printf("peeksiginfo shared: %ld\n", ptrace(PTRACE_PEEKSIGINFO, pid, &pa, q));
    unsigned long mask = 0;
    CHECK(ptrace(PTRACE_GETSIGMASK, pid, sizeof mask, &mask) == 0);
    printf("sigmask has SIGTERM=%d\n", !!(mask & (1UL << (SIGTERM - 1))));
    CHECK_ERR(ptrace(PTRACE_GETSIGMASK, pid, 4, &mask), EINVAL);
    CHECK(ptrace(PTRACE_CONT, pid, 0, 0) == 0);              /* suppress */
    st = wait_stop(pid, 0);
    printf("stop: sig=%d\n", WSTOPSIG(st));
    CHECK(ptrace(PTRACE_CONT, pid, 0, SIGUSR1) == 0);        /* change */
    expect_exit(pid, 101);
    printf("handler ran once, with the tracer's siginfo\n");
}

/* -- int3 breakpoints and single-stepping ----------------------------------------------- */

static int __attribute__((noinline)) breakpoint_target(int x)
{
    return x * 3;
}

static void body_step(void)
{
    long v;
    __asm__ volatile(
        "int3\n\t"
        "mov $1, %%rax\n\t"
        "add $2, %%rax\n\t"
        "add $3, %%rax\n\t"
        "mov %%rax, %0\n\t"
        : "=r"(v) : : "rax");
    int w = breakpoint_target((int)v);
    _exit(w);
}

static void t_step(void)
{
    pid_t pid = traced_child(body_step);
    CHECK(ptrace(PTRACE_CONT, pid, 0, 0) == 0);
    int st = wait_stop(pid, 0);
    siginfo_t si;
    CHECK(ptrace(PTRACE_GETSIGINFO, pid, 0, &si) == 0);
    printf("int3: sig=%d code=%#x\n", WSTOPSIG(st), si.si_code);
    for (int i = 0; i < 3; i++) {
        CHECK(ptrace(PTRACE_SINGLESTEP, pid, 0, 0) == 0);
        st = wait_stop(pid, 0);
        struct user_regs_struct regs;
        CHECK(ptrace(PTRACE_GETREGS, pid, 0, &regs) == 0);
        printf("step %d: sig=%d rax=%ld tf=%d\n", i, WSTOPSIG(st), (long)regs.rax,
               !!(regs.eflags & 0x100));
    }
    /* A breakpoint as a debugger sets one: int3 over the first byte of a function. */
    errno = 0;
    long orig = ptrace(PTRACE_PEEKTEXT, pid, (void *)breakpoint_target, 0);
    CHECK(errno == 0);
    long patched = (orig & ~0xFFL) | 0xCC;
    CHECK(ptrace(PTRACE_POKETEXT, pid, (void *)breakpoint_target, (void *)patched) == 0);
    CHECK(ptrace(PTRACE_CONT, pid, 0, 0) == 0);
    st = wait_stop(pid, 0);
    struct user_regs_struct regs;
    CHECK(ptrace(PTRACE_GETREGS, pid, 0, &regs) == 0);
    printf("breakpoint: sig=%d at function+1=%d arg=%ld\n", WSTOPSIG(st),
           regs.rip == (uintptr_t)breakpoint_target + 1, (long)regs.rdi);
    CHECK(ptrace(PTRACE_POKETEXT, pid, (void *)breakpoint_target, (void *)orig) == 0);
    regs.rip -= 1;
    CHECK(ptrace(PTRACE_SETREGS, pid, 0, &regs) == 0);
    CHECK(ptrace(PTRACE_CONT, pid, 0, 0) == 0);
    expect_exit(pid, 18);
    printf("function ran after the breakpoint\n");
}

/* -- PTRACE_EVENT_EXIT ---------------------------------------------------------------------- */

static void body_exit5(void)
{
    exit(5);
}

static void body_pause(void)
{
    for (;;)
        pause();
}

static void t_exit_event(void)
{
    pid_t pid = traced_child(body_exit5);
    CHECK(ptrace(PTRACE_SETOPTIONS, pid, 0, PTRACE_O_TRACEEXIT) == 0);
    CHECK(ptrace(PTRACE_CONT, pid, 0, 0) == 0);
    int st = wait_stop(pid, 0);
    unsigned long msg = 0;
    CHECK(ptrace(PTRACE_GETEVENTMSG, pid, 0, &msg) == 0);
    printf("exit(5): sig=%d event=%d msg exited=%d code=%d\n", WSTOPSIG(st), st >> 16,
           WIFEXITED((int)msg), WEXITSTATUS((int)msg));
    CHECK(ptrace(PTRACE_CONT, pid, 0, 0) == 0);
    expect_exit(pid, 5);

    pid = traced_child(body_pause);
    CHECK(ptrace(PTRACE_SETOPTIONS, pid, 0, PTRACE_O_TRACEEXIT) == 0);
    CHECK(ptrace(PTRACE_CONT, pid, 0, 0) == 0);
    CHECK(kill(pid, SIGKILL) == 0);
    st = wait_stop(pid, 0);
    CHECK(ptrace(PTRACE_GETEVENTMSG, pid, 0, &msg) == 0);
    printf("SIGKILL: sig=%d event=%d msg signaled=%d sig=%d\n", WSTOPSIG(st), st >> 16,
           WIFSIGNALED((int)msg), WTERMSIG((int)msg));
    CHECK(ptrace(PTRACE_CONT, pid, 0, 0) == 0);
    st = wait_stop(pid, 0);
    printf("then: signaled=%d sig=%d\n", WIFSIGNALED(st), WTERMSIG(st));
}

/* -- exec from a non-leader thread (de_thread; traced or not) ------------------------------ */

static char self_path[4096];

static void *exec_from_thread(void *arg)
{
    (void)arg;
    execl(self_path, self_path, "tidcheck", (char *)NULL);
    _exit(99);
}

static void t_exec_thread(void)
{
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        pthread_t th;
        if (pthread_create(&th, NULL, exec_from_thread, NULL) != 0)
            _exit(98);
        for (;;)
            pause();        /* killed by the exec */
    }
    int st = wait_stop(pid, 0);
    printf("exec from a thread: exited=%d code=%d\n", WIFEXITED(st), WEXITSTATUS(st));
}

/* -- permissions ---------------------------------------------------------------------------- */

static void t_perm(void)
{
    CHECK_ERR(ptrace(PTRACE_ATTACH, getpid(), 0, 0), EPERM);       /* own thread group */
    CHECK_ERR(ptrace(PTRACE_ATTACH, 1 << 22, 0, 0), ESRCH);
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        char c;
        close(p[1]);
        read(p[0], &c, 1);
        _exit(0);
    }
    CHECK(ptrace(PTRACE_ATTACH, pid, 0, 0) == 0);
    int st = wait_stop(pid, 0);
    printf("attach: stopped sig=%d\n", WSTOPSIG(st));
    CHECK(ptrace(PTRACE_DETACH, pid, 0, 0) == 0);
    pid_t other = fork();
    CHECK(other >= 0);
    if (other == 0) {
        /* A process of another uid may not trace us. */
        if (setuid(1000) != 0)
            _exit(3);
        errno = 0;
        long r = ptrace(PTRACE_ATTACH, pid, 0, 0);
        _exit(r == -1 && errno == EPERM ? 0 : 4);
    }
    expect_exit(other, 0);
    printf("other uid refused\n");
    close(p[1]);
    expect_exit(pid, 0);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    ssize_t n = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
    CHECK(n > 0);
    const char *t = argc > 1 ? argv[1] : "";
    if (!strcmp(t, "traceme_exec")) t_traceme_exec();
    else if (!strcmp(t, "peekpoke")) t_peekpoke();
    else if (!strcmp(t, "regs")) t_regs();
    else if (!strcmp(t, "count")) t_count();
    else if (!strcmp(t, "seize")) t_seize();
    else if (!strcmp(t, "events")) t_events();
    else if (!strcmp(t, "signals")) t_signals();
    else if (!strcmp(t, "step")) t_step();
    else if (!strcmp(t, "perm")) t_perm();
    else if (!strcmp(t, "exit_event")) t_exit_event();
    else if (!strcmp(t, "exec_thread")) t_exec_thread();
    else if (!strcmp(t, "tidcheck"))
        return getpid() == (pid_t)syscall(SYS_gettid) ? 0 : 7;
    else {
        fprintf(stderr, "usage: %s TEST\n", argv[0]);
        return 2;
    }
    ok();
    return 0;
}
