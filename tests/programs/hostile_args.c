/* Hostile arguments the syscall fuzzer (tests/fuzz) found to crash the Sentry,
 * each checked against what Linux answers.  Needs a terminal on stdin.
 *
 *   tty ioctl arguments above 2^31          (an OverflowError in the Sentry)
 *   lseek/read/pread past 2^63               (an offset that overflowed os.pread)
 *   rt_sigreturn with FP state the CPU refuses (PTRACE_SETFPREGS EINVAL)
 *   clone(CLONE_SETTLS) and arch_prctl with kernel or non-canonical bases
 *                                            (PTRACE_SETREGS EIO)
 *   utimensat/utimes with tv_nsec/tv_usec out of range (accepted, then every
 *                                            stat of the file killed the sandbox)
 *   clone with an exit signal that is no signal, rt_sigqueueinfo with signal 0
 *                                            (an IndexError/ValueError)
 *   syscall numbers with high bits set       (Linux ignores them)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <termios.h>
#include <ucontext.h>
#include "check.h"

#define ARCH_SET_GS 0x1001
#define ARCH_SET_FS 0x1002
#define KERNEL_ADDR 0xffff800000000000ULL
#define NONCANONICAL 0x0000800000000000ULL

/* clone/fork whose child exits at once (exit code 0) without touching memory. */
static long raw_clone(unsigned long flags, unsigned long tls)
{
    long ret;
    register unsigned long r10 __asm__("r10") = 0;
    register unsigned long r8 __asm__("r8") = tls;
    __asm__ volatile("syscall\n\t"
                     "test %%rax, %%rax\n\t"
                     "jnz 1f\n\t"
                     "mov $60, %%eax\n\t"
                     "xor %%edi, %%edi\n\t"
                     "syscall\n"
                     "1:"
                     : "=a"(ret)
                     : "a"(SYS_clone), "D"(flags), "S"(0UL), "d"(0UL), "r"(r10), "r"(r8)
                     : "rcx", "r11", "memory");
    return ret;
}

static int status_of(pid_t pid)
{
    int st;
    CHECK(waitpid(pid, &st, __WALL) == pid);
    return st;
}

static void tty_ioctls(void)
{
    CHECK(isatty(0));
    CHECK(ioctl(0, TCFLSH, TCIFLUSH) == 0);
    CHECK_ERR(ioctl(0, TCFLSH, 0x80000000UL), EINVAL);
    CHECK_ERR(ioctl(0, TCFLSH, 0x100000000UL), EINVAL);
    CHECK_ERR(ioctl(0, TCXONC, 0xffffffffUL), EINVAL);
    CHECK_ERR(ioctl(0, TCXONC, 0x8000000000000001UL), EINVAL);
    CHECK(ioctl(0, TCSBRK, 0x80000001UL) == 0);      /* non-zero: tcdrain */
    /* The request number is an unsigned int: high bits are ignored. */
    struct termios tio;
    CHECK(syscall(SYS_ioctl, 0, 0x100000000UL | TCGETS, &tio) == 0);
}

/* Offsets near 2^63 on any file: the limits every filesystem shares. */
static void offsets_fd(int fd)
{
    char buf[16];
    CHECK(lseek(fd, 10, SEEK_SET) == 10);
    CHECK_ERR(lseek(fd, LLONG_MAX, SEEK_CUR), EINVAL);      /* past 2^63 - 1 */
    CHECK(lseek(fd, 0, SEEK_CUR) == 10);                    /* unchanged */
    CHECK_ERR(lseek(fd, LLONG_MAX, SEEK_END), EINVAL);
    CHECK_ERR(lseek(fd, LLONG_MIN, SEEK_SET), EINVAL);
    CHECK_ERR(lseek(fd, -11, SEEK_CUR), EINVAL);
    CHECK_ERR(pread(fd, buf, sizeof buf, LLONG_MAX - 4), EINVAL);   /* pos + count overflows */
    CHECK_ERR(pread(fd, buf, sizeof buf, -1), EINVAL);
    CHECK(lseek(fd, 0, SEEK_SET) == 0);
    CHECK(read(fd, buf, 4) == 4);
}

static void offsets(const char *path)
{
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    offsets_fd(fd);
    close(fd);
}

/* On tmpfs (MAX_LFS_FILESIZE), positions up to 2^63 - 1 are valid. */
static void far_offsets(const char *path)
{
    char buf[16];
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    CHECK(lseek(fd, 1LL << 62, SEEK_SET) == 1LL << 62);
    CHECK_ERR(lseek(fd, 1LL << 62, SEEK_CUR), EINVAL);      /* 2^63 */
    CHECK(lseek(fd, 0, SEEK_CUR) == 1LL << 62);
    CHECK(read(fd, buf, sizeof buf) == 0);                  /* far past the end */
    CHECK(lseek(fd, LLONG_MAX, SEEK_SET) == LLONG_MAX);
    CHECK_ERR(read(fd, buf, sizeof buf), EINVAL);           /* pos + count overflows */
    CHECK(read(fd, buf, 0) == 0);
    CHECK_ERR(lseek(fd, 1, SEEK_CUR), EINVAL);
    CHECK(pread(fd, buf, 1, LLONG_MAX - 1) == 0);
    close(fd);
}

/* FIONREAD on a regular file is an int: truncated, and negative past the end
 * (found by the fuzzer: a size above 2^31 did not fit the Sentry's packing). */
static void fionread(void)
{
    int fd = open("/dev/shm/hostile_args.fionread", O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    unlink("/dev/shm/hostile_args.fionread");
    int n = 0;
    CHECK(ftruncate(fd, 0x80000001LL) == 0);
    CHECK(ioctl(fd, FIONREAD, &n) == 0 && n == -0x7fffffff);
    CHECK(ftruncate(fd, 10) == 0 && lseek(fd, 100, SEEK_SET) == 100);
    CHECK(ioctl(fd, FIONREAD, &n) == 0 && n == -90);
    close(fd);
}

/* ---- rt_sigreturn ---------------------------------------------------------------- */

__attribute__((naked)) static void exit42(void)
{
    __asm__ volatile("mov $231, %eax\n\t"
                     "mov $42, %edi\n\t"
                     "syscall");
}

static void on_segv(int sig)
{
    (void)sig;
    _exit(43);
}

static char frame_mem[16384] __attribute__((aligned(64)));
static char fp_mem[4096] __attribute__((aligned(64)));

/* In a child: rt_sigreturn to exit42 with FP state at fpstate (whose MXCSR is
 * set to mxcsr); returns the child's wait status. */
static int sigreturn_with(void *fpstate, uint32_t mxcsr, int handler)
{
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        if (handler)
            signal(SIGSEGV, on_segv);
        memset(frame_mem, 0, sizeof frame_mem);
        memset(fp_mem, 0, sizeof fp_mem);
        uint16_t fcw = 0x37f;
        memcpy(fp_mem, &fcw, 2);
        if (fpstate && (char *)fpstate >= fp_mem && (char *)fpstate < fp_mem + sizeof fp_mem)
            memcpy((char *)fpstate + 24, &mxcsr, 4);
        ucontext_t *uc = (ucontext_t *)(frame_mem + 8192);
        greg_t *g = uc->uc_mcontext.gregs;
        g[REG_RIP] = (greg_t)exit42;
        g[REG_RSP] = (greg_t)(frame_mem + 4096);
        g[REG_EFL] = 0x202;
        g[REG_CSGSFS] = 0x33 | (0x2bLL << 48);
        uc->uc_mcontext.fpregs = fpstate;
        __asm__ volatile("mov %0, %%rsp\n\t"
                         "mov $15, %%eax\n\t"
                         "syscall\n\t"
                         "ud2"
                         :
                         : "r"(uc)
                         : "memory");
    }
    return status_of(pid);
}

static void sigreturns(void)
{
    int st;
    void *unmapped = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(unmapped != MAP_FAILED);
    /* Good FP state, or none: the frame is restored and the child runs exit42. */
    st = sigreturn_with(fp_mem, 0x1f80, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 42);
    st = sigreturn_with(NULL, 0, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 42);
    /* MXCSR with reserved bits: SIGSEGV, to a handler if there is one. */
    st = sigreturn_with(fp_mem, 0xffffffff, 0);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
    st = sigreturn_with(fp_mem, 0xffffffff, 1);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 43);
    /* FP state unreadable, or not aligned for fxrstor: SIGSEGV. */
    st = sigreturn_with(unmapped, 0, 0);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
    st = sigreturn_with((void *)KERNEL_ADDR, 0, 0);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
    st = sigreturn_with(fp_mem + 8, 0x1f80, 0);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
    munmap(unmapped, 4096);
}

/* ---- a signal frame that cannot go below the stack pointer -------------------------- */

static void on_usr1(int sig)
{
    (void)sig;
    _exit(44);
}

/* In a child with a SIGUSR1 handler: rsp = sp, then kill(self, SIGUSR1) from a bare
 * syscall instruction; returns the child's wait status. */
static int signal_with_sp(unsigned long sp)
{
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        signal(SIGUSR1, on_usr1);
        long me = getpid();
        __asm__ volatile("mov %0, %%rsp\n\t"
                         "mov %1, %%rdi\n\t"
                         "mov $10, %%esi\n\t"
                         "mov $62, %%eax\n\t"
                         "syscall\n\t"
                         "ud2"
                         :
                         : "r"(sp), "r"(me)
                         : "memory", "rax", "rdi", "rsi", "rcx", "r11");
    }
    return status_of(pid);
}

static void signal_frames(void)
{
    /* The frame (red zone, FP image, rt_sigframe) would start below address 0, in the
     * first page, at or above the kernel's half, or non-canonical: SIGSEGV, no handler. */
    static const unsigned long sps[] = {0, 64, 4096, KERNEL_ADDR, NONCANONICAL + 64,
                                        0xffffffffffffffffUL};
    for (size_t i = 0; i < sizeof sps / sizeof *sps; i++) {
        int st = signal_with_sp(sps[i]);
        CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
    }
    /* An alternate stack whose end wraps past 2^64, for an SA_ONSTACK handler. */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        stack_t ss = {.ss_sp = (void *)0xfffffffffffff000UL, .ss_size = 0x10000};
        CHECK(sigaltstack(&ss, NULL) == 0);
        struct sigaction sa = {.sa_handler = on_usr1, .sa_flags = SA_ONSTACK};
        CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
        raise(SIGUSR1);
        _exit(45);
    }
    int st = status_of(pid);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
}

/* ---- segment bases ----------------------------------------------------------------- */

static void segment_bases(void)
{
    static const unsigned long bad[] = {KERNEL_ADDR, NONCANONICAL, 0xffffffffffffffffUL};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        errno = 0;
        CHECK(raw_clone(CLONE_SETTLS | SIGCHLD, bad[i]) == -EPERM);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            /* Raw calls: were one to succeed, libc could not run on. */
            if (syscall(SYS_arch_prctl, ARCH_SET_FS, bad[i]) != -1 || errno != EPERM)
                _exit(1);
            if (syscall(SYS_arch_prctl, ARCH_SET_GS, bad[i]) != -1 || errno != EPERM)
                _exit(2);
            _exit(0);
        }
        int st = status_of(pid);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    /* A user address is a fine base for a child that never uses it. */
    long pid = raw_clone(CLONE_SETTLS | SIGCHLD, 0x10000);
    CHECK(pid > 0);
    int st = status_of((pid_t)pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* ---- times ------------------------------------------------------------------------- */

static void times(void)
{
    char path[] = "/tmp/hostile_args.XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    struct stat st;
    static const long bad_nsec[] = {1000000000L, -1, 1L << 62, LONG_MIN, UTIME_NOW + 2};
    for (size_t i = 0; i < sizeof bad_nsec / sizeof *bad_nsec; i++) {
        struct timespec ts[2] = {{5, 0}, {7, bad_nsec[i]}};
        CHECK_ERR(utimensat(AT_FDCWD, path, ts, 0), EINVAL);
        CHECK_ERR(futimens(fd, ts), EINVAL);
        CHECK(stat(path, &st) == 0);          /* the file is still fine to stat */
    }
    struct timeval tv[2] = {{5, 0}, {7, 1000000}};
    CHECK_ERR(utimes(path, tv), EINVAL);
    tv[1].tv_usec = -1;
    CHECK_ERR(utimes(path, tv), EINVAL);
    /* Before 1970, and UTIME_OMIT, are fine. */
    struct timespec ok_ts[2] = {{-86400, 5}, {0, UTIME_OMIT}};
    CHECK(utimensat(AT_FDCWD, path, ok_ts, 0) == 0);
    CHECK(fstat(fd, &st) == 0 && st.st_atim.tv_sec == -86400 && st.st_atim.tv_nsec == 5);
    /* Both omitted: nothing is done, not even the lookup. */
    struct timespec omit[2] = {{0, UTIME_OMIT}, {0, UTIME_OMIT}};
    CHECK(utimensat(AT_FDCWD, "/nonexistent/x", omit, 0) == 0);
    close(fd);
    unlink(path);
}

/* ---- signal numbers ---------------------------------------------------------------- */

static void signal_numbers(void)
{
    /* An exit signal that is no signal: the child runs and is reaped; nothing is sent. */
    long pid = raw_clone(100, 0);
    CHECK(pid > 0);
    int st = status_of((pid_t)pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    siginfo_t si;
    memset(&si, 0, sizeof si);
    si.si_code = SI_QUEUE;
    CHECK(syscall(SYS_rt_sigqueueinfo, getpid(), 0, &si) == 0);     /* a probe */
    CHECK_ERR(syscall(SYS_rt_sigqueueinfo, getpid(), 65, &si), EINVAL);
    CHECK_ERR(syscall(SYS_rt_sigqueueinfo, getpid(), -1, &si), EINVAL);
    /* A 64-bit sigval and an unsigned uid beyond 2^31 are delivered as given. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    CHECK(sigprocmask(SIG_BLOCK, &set, NULL) == 0);
    si.si_value.sival_ptr = (void *)0xfedcba9876543210UL;
    si.si_uid = 0xfffffff0U;
    CHECK(syscall(SYS_rt_sigqueueinfo, getpid(), SIGUSR1, &si) == 0);
    siginfo_t got;
    CHECK(sigwaitinfo(&set, &got) == SIGUSR1);
    CHECK(got.si_value.sival_ptr == (void *)0xfedcba9876543210UL);
    CHECK(got.si_uid == 0xfffffff0U && got.si_code == SI_QUEUE);
    /* Only the kernel or a task signalling itself may claim si_code >= 0. */
    si.si_code = SI_USER;
    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        pause();
        _exit(0);
    }
    CHECK_ERR(syscall(SYS_rt_sigqueueinfo, child, SIGUSR1, &si), EPERM);
    kill(child, SIGKILL);
    status_of(child);
}

/* ---- syscall numbers ---------------------------------------------------------------- */

static long raw0(long nr)
{
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(nr) : "rcx", "r11", "memory");
    return ret;
}

static void syscall_numbers(void)
{
    /* The number is the low 32 bits of rax (do_syscall_64 takes an int). */
    CHECK(raw0(0x100000000L | SYS_getpid) == getpid());
    CHECK(raw0(-1) == -ENOSYS);
    CHECK(raw0(0x7fffffff) == -ENOSYS);
    CHECK(raw0(0xffffffffL) == -ENOSYS);
    CHECK(raw0(1000) == -ENOSYS);
}

/* Timestamps far outside what a filesystem stores: clamped to its range
 * (timestamp_truncate), never an error, and the file still stats. */
static void far_times(const char *dir)
{
    char path[256];
    snprintf(path, sizeof path, "%s/far_times", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    static const long secs[] = {1L << 62, -(1L << 62), LONG_MAX, LONG_MIN};
    for (size_t i = 0; i < sizeof secs / sizeof *secs; i++) {
        struct timespec ts[2] = {{secs[i], 999999999}, {secs[i], 0}};
        CHECK(utimensat(AT_FDCWD, path, ts, 0) == 0);
        CHECK(futimens(fd, ts) == 0);
        struct stat st;
        CHECK(stat(path, &st) == 0);
        CHECK(secs[i] > 0 ? st.st_mtime > 0 : st.st_mtime < 0);
    }
    struct timeval tv[2] = {{1L << 62, 0}, {-(1L << 62), 999999}};
    CHECK(utimes(path, tv) == 0);
    close(fd);
    unlink(path);
}

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[1], "far-times") == 0) {
        far_times(argv[2]);
        ok();
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "stdin-file") == 0) {
        offsets_fd(0);                /* a host file the sandbox was given */
        ok();
        return 0;
    }
    tty_ioctls();
    offsets(argv[0]);                 /* the host root, through the Gofer */
    int fd = open("/dev/shm/hostile_args", O_RDWR | O_CREAT | O_TRUNC, 0600);   /* tmpfs */
    CHECK(fd >= 0 && write(fd, "data", 4) == 4);
    close(fd);
    offsets("/dev/shm/hostile_args");
    far_offsets("/dev/shm/hostile_args");
    fionread();
    unlink("/dev/shm/hostile_args");
    sigreturns();
    signal_frames();
    segment_bases();
    times();
    signal_numbers();
    syscall_numbers();
    ok();
    return 0;
}
