/* sysfuzz: a syscall fuzzer for pyvisor, in the spirit of trinity and syzkaller.
 *
 * RUN IT ONLY INSIDE A SANDBOX.  As root on a real kernel it would change the
 * host (its clock, mounts, hostname, swap, modules, kernel log, ...).
 *
 * Usage: sysfuzz SEED SECONDS [WORKERS [THREADS [DIR]]]
 *
 * A supervisor (PID 1 of the sandbox) forks WORKERS worker processes; each runs
 * THREADS threads that call syscall numbers 0..NR_TOP plus unknown ones, with
 * random, boundary and hostile arguments: 0, -1, 2^31, 2^31-1, 2^63, 2^64-1,
 * NULL, unmapped, kernel, non-canonical and misaligned pointers, pointers to the
 * end of a mapping and into read-only memory, huge lengths, random flags, structs
 * full of boundary values, and file descriptors of every kind the worker opened
 * first (pipes, FIFOs, eventfd, epoll, unix sockets, files on tmpfs and on the
 * gofer root, /proc files, /dev files, directories, pidfds, the stdio/tty).
 * Each worker works in a directory of its own under DIR (default /tmp; a bind
 * mount makes the Gofer serve its file calls).
 * Signals fly: every worker has handlers and a SIGALRM interval timer (so a
 * blocking call is interrupted), workers kill each other, and calls like
 * kill(-1) and kill(0) reach whatever they reach.  Workers live for a random
 * number of calls; dead or stuck ones are replaced until SECONDS have passed.
 * Then the supervisor kills everything, reaps it, checks that no process is left
 * in the sandbox and prints `sysfuzz: key=value` lines ending in `sysfuzz: done=1`.
 *
 * The SEED fixes every random choice of every worker (worker k of generation g
 * draws from seed, k, g); timing makes runs differ, so a Sentry crash is best
 * reproduced from the syscall and arguments the Sentry logs.
 *
 * What is kept from the calls, and why (the only deny list):
 *   - exit, exit_group, execve, execveat, rt_sigreturn, and arch_prctl's SET_FS
 *     and SET_GS run only in a throwaway child (they end or wreck the calling
 *     thread); the child makes the call and exits with raw syscalls, never
 *     touching libc again.
 *   - clone, clone3, fork and vfork run directly, but through a wrapper whose
 *     child side exits at once in assembly (a child on a random stack, or a
 *     second copy of the fuzzer, would otherwise run fuzzer code).
 *   - Memory-changing calls (munmap, mprotect, pkey_mprotect, madvise, mremap,
 *     remap_file_pages, mmap/shmat at a fixed address, brk below the current
 *     break) are kept to the worker's arena or to addresses outside user
 *     space, so they cannot unmap the fuzzer's own code, stack or heap; one
 *     time in four they run unshaped in a throwaway child instead.
 *   - prlimit64 and process_vm_writev aimed at PID 1 (the supervisor) are aimed
 *     at the worker itself: they would stop the supervisor re-forking or write
 *     into its memory, which Linux allows too.  Signals to PID 1 are kept: init
 *     ignores signals it has no handler for, on Linux and in pyvisor.
 *   - mmap and fallocate lengths are capped at 1 GiB (or stay outside user
 *     space), so the fuzzer tests the Sentry, not the memory limit: both can
 *     make memory resident (MAP_POPULATE, fallocate on tmpfs).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#define NR_TOP 463          /* 0..462: every amd64 number up to mseal */
#define NR_SLOTS 512        /* statistics: [0, NR_TOP) and one slot for the unknown */
#define NR_UNKNOWN_SLOT 511
#define MAX_WORKERS 16
#define MAX_THREADS 8
#define PAGE 4096UL
#define SCRATCH (64 * 1024UL)
#define ARENA (4 * 1024 * 1024UL)
#define SLOT 512UL           /* the hostile page holds 8 structs of up to SLOT bytes */
#define STALL_SECONDS 2.0   /* a thread making no progress this long: its worker is replaced */

/* ---- shared between the supervisor and the workers (MAP_SHARED) ----------------
 *
 * Placed at SHARED_AT, far from every other mapping, with nothing mapped on either
 * side.  A worker may write its own memory through /proc/self/mem (one of the paths),
 * and such a write, as a tracer's (FOLL_FORCE), goes on through PROT_NONE guard pages
 * into whatever is mapped next, as on Linux (tests/programs/proc_mem_guard.c).  Mapped
 * by the kernel's top-down choice, this region sat right above a worker's scratch
 * area and its upper guard page: a long write starting in scratch overwrote all of
 * it, the statistics and the workers' pids (seen as negative call counts, with seed
 * 243805 in about half the runs).  An unmapped hole stops such a write. */
#define SHARED_AT 0x2a5000000000UL

struct thread_slot {
    atomic_int tid;
    atomic_long calls;
    atomic_long nr;             /* the call in progress, -1 between calls */
};

struct worker_slot {
    atomic_int pid;
    struct thread_slot t[MAX_THREADS];
};

struct shared {
    atomic_int stop;
    struct worker_slot w[MAX_WORKERS];
    atomic_long calls[NR_SLOTS];    /* per syscall number: calls made */
    atomic_long oks[NR_SLOTS];      /* ... and calls that did not fail */
    atomic_long children;           /* throwaway children run */
    atomic_long signals;            /* signals our handlers saw */
};

static struct shared *sh;

/* ---- per-worker state ---------------------------------------------------------- */

static int worker_index, nthreads;
static const char *workdir = "/tmp";
static long life;                   /* calls this worker makes before it exits */
static atomic_long worker_calls;
static char *scratch;               /* SCRATCH random bytes between two PROT_NONE pages */
static char *hostile;               /* a page of boundary values: any struct read from it */
static char *iovs;                  /* a page of {pointer, length} pairs */
static char *ro;                    /* a read-only page of path strings */
static char *arena;                 /* ARENA bytes the memory calls may wreck */
static char *unmapped;              /* an address with nothing mapped */
static uintptr_t brk_floor;
static const char *paths[64];
static int npaths;
static int fds[64];
static int nfds;

static __thread uint64_t rng;
static __thread pid_t mytid;
static pid_t mypid;

static uint64_t rnd(void)
{
    /* xorshift64*: small, fast and good enough to pick arguments. */
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 2685821657736338717ULL;
}

static uint64_t mix(uint64_t a, uint64_t b)
{
    uint64_t z = a * 0x9E3779B97F4A7C15ULL ^ (b + 0x632BE59BD9B4E019ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return (z ^ (z >> 31)) | 1;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

/* ---- raw syscalls ---------------------------------------------------------------- */

static long sc6(long nr, uint64_t a, uint64_t b, uint64_t c, uint64_t d, uint64_t e, uint64_t f)
{
    long ret;
    register uint64_t r10 __asm__("r10") = d;
    register uint64_t r8 __asm__("r8") = e;
    register uint64_t r9 __asm__("r9") = f;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}

/* For clone, clone3, fork and vfork: the child (return value 0) exits at once,
 * without touching its stack, which may be anything. */
static long sc6_fork(long nr, uint64_t a, uint64_t b, uint64_t c, uint64_t d, uint64_t e,
                     uint64_t f)
{
    long ret;
    register uint64_t r10 __asm__("r10") = d;
    register uint64_t r8 __asm__("r8") = e;
    register uint64_t r9 __asm__("r9") = f;
    __asm__ volatile("syscall\n\t"
                     "test %%rax, %%rax\n\t"
                     "jnz 1f\n\t"
                     "mov $60, %%eax\n\t"
                     "xor %%edi, %%edi\n\t"
                     "syscall\n\t"
                     "ud2\n"
                     "1:"
                     : "=a"(ret)
                     : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}

/* In a throwaway child: the call, then exit_group(its result), with no libc. */
static __attribute__((noreturn)) void sc6_then_exit(long nr, uint64_t a, uint64_t b, uint64_t c,
                                                    uint64_t d, uint64_t e, uint64_t f)
{
    register uint64_t r10 __asm__("r10") = d;
    register uint64_t r8 __asm__("r8") = e;
    register uint64_t r9 __asm__("r9") = f;
    __asm__ volatile("syscall\n\t"
                     "mov %%eax, %%edi\n\t"
                     "mov $231, %%eax\n\t"
                     "syscall\n\t"
                     "ud2"
                     :
                     : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    __builtin_unreachable();
}

/* Where a successful hostile rt_sigreturn may land: exit_group(42). */
__attribute__((naked)) static void exit42(void)
{
    __asm__ volatile("mov $231, %eax\n\t"
                     "mov $42, %edi\n\t"
                     "syscall\n\t"
                     "ud2");
}

/* ---- argument pools ---------------------------------------------------------------- */

static const uint64_t boundary[] = {
    0, 1, 2, 3, 7, 8, 16, 63, 64, 255, 256, 4095, 4096, 4097, 65535, 65536,
    0x7fffffffULL, 0x80000000ULL, 0x80000001ULL, 0xffffffffULL, 0x100000000ULL,
    0x7fffffffffffffffULL, 0x8000000000000000ULL, 0xffffffffffffffffULL,
    0xfffffffffffffffeULL, 0xffffffff80000000ULL, 0xffffffff7fffffffULL,
    0x7ffffffff000ULL, 0x800000000000ULL, 0xffff800000000000ULL, 0x7ffff000ULL,
    1ULL << 40, 1ULL << 47, 1ULL << 48, 1ULL << 52, 1000000000ULL, 999999999ULL,
    0xfffffffffffff000ULL, 0x4000000000000000ULL, 0x00000000ffff0000ULL,
};
#define NBOUNDARY (sizeof boundary / sizeof *boundary)

static uint64_t bad_pointer(void)
{
    switch (rnd() % 11) {
    case 0: return 0;
    case 1: return (uint64_t)unmapped + rnd() % PAGE;
    case 2: return 0xffff800000000000ULL;              /* kernel */
    case 3: return 0xffffffffff600000ULL;              /* vsyscall page */
    case 4: return 0x0000800000000000ULL;              /* non-canonical */
    case 5: return 0x00007ffffffff000ULL + rnd() % PAGE;   /* top of user space */
    case 6: return (uint64_t)scratch - 1 - rnd() % 64;     /* the guard page before */
    case 7: return (uint64_t)scratch + SCRATCH + rnd() % PAGE; /* the guard after */
    case 8: return 0xffffffffffffffffULL - rnd() % 64;
    case 9: return 0x1000 + rnd() % 0x10000;
    default: return (uint64_t)ro + rnd() % PAGE;          /* read-only */
    }
}

static uint64_t good_pointer(void)
{
    switch (rnd() % 6) {
    case 0: return (uint64_t)scratch + (rnd() % SCRATCH & ~7UL);
    case 1: return (uint64_t)scratch + rnd() % SCRATCH;             /* misaligned */
    case 2: return (uint64_t)scratch + SCRATCH - rnd() % 33;        /* end of mapping */
    case 3: return (uint64_t)hostile + (rnd() % PAGE & ~7UL);
    case 4: return (uint64_t)iovs + (rnd() % PAGE & ~15UL);
    default: return (uint64_t)scratch;
    }
}

static uint64_t pid_value(void)
{
    switch (rnd() % 8) {
    case 0: return 0;
    case 1: return (uint64_t)-1;
    case 2: return 1;
    case 3: return (uint64_t)mypid;
    case 4: return (uint64_t)mytid;
    case 5: return (uint64_t)(-(int64_t)mypid);
    case 6: return rnd() % 64;
    default: return (uint64_t)atomic_load(&sh->w[rnd() % MAX_WORKERS].pid);
    }
}

static uint64_t size_value(void)
{
    switch (rnd() % 5) {
    case 0: return rnd() % 128;
    case 1: return rnd() % 8193;
    case 2: return (1ULL << (rnd() % 64)) - (rnd() % 2);
    case 3: return SCRATCH - rnd() % 4096;
    default: return boundary[rnd() % NBOUNDARY];
    }
}

static uint64_t flags_value(void)
{
    uint64_t v = 0;
    int n = (int)(rnd() % 4);
    for (int i = 0; i <= n; i++)
        v |= 1ULL << (rnd() % (rnd() % 4 ? 24 : 64));
    return rnd() % 4 ? v : v | (rnd() & 0xff);
}

static uint64_t fd_value(void)
{
    static const int64_t odd[] = {-1, -100 /* AT_FDCWD */, 1023, 1024, 65536, 0x7fffffff,
                                  -0x80000000LL, 0x100000000LL};
    if (rnd() % 8 == 0)
        return (uint64_t)odd[rnd() % (sizeof odd / sizeof *odd)];
    return (uint64_t)fds[rnd() % nfds];
}

static uint64_t any_value(void)
{
    switch (rnd() % 16) {
    case 0: return rnd() % 17;
    case 1: case 2: return boundary[rnd() % NBOUNDARY];
    case 3: case 4: return fd_value();
    case 5: case 6: return good_pointer();
    case 7: return bad_pointer();
    case 8: return (uint64_t)paths[rnd() % npaths];
    case 9: return rnd();
    case 10: return rnd() & 0xffffffffULL;
    case 11: return flags_value();
    case 12: return size_value();
    case 13: return pid_value();
    case 14: return (uint64_t)(int64_t)(int32_t)(rnd() & 0xffffffff);  /* a negative int */
    default: return 1ULL << (rnd() % 64);
    }
}

static void on_signal_entry(int sig, siginfo_t *si, void *uc);
static void restorer_entry(void);

/* ---- argument types ------------------------------------------------------------------ */

/* What each argument of a syscall is, one letter per argument (trinity's idea):
 * an argument of a known type is drawn from its own pool 3 times in 4 and from
 * any pool otherwise, so calls get past their first check.  Numbers without an
 * entry get anything.
 *   f fd        p path       b buffer    l length    n count     i small int
 *   F flags     P pid        s struct    v iovecs    o offset    m mode
 *   u uid/gid   S signal     a arena     c clock     w whence    I ioctl request
 *   x anything */
static const char *const sig[NR_TOP] = {
    [SYS_read] = "fbl", [SYS_write] = "fbl", [SYS_open] = "pFm", [SYS_close] = "f",
    [SYS_stat] = "pb", [SYS_fstat] = "fb", [SYS_lstat] = "pb", [SYS_poll] = "sni",
    [SYS_lseek] = "fow", [SYS_mmap] = "alFFfo", [SYS_mprotect] = "alF", [SYS_munmap] = "al",
    [SYS_brk] = "a", [SYS_rt_sigaction] = "Sssl", [SYS_rt_sigprocmask] = "issl",
    [SYS_ioctl] = "fIx", [SYS_pread64] = "fblo", [SYS_pwrite64] = "fblo", [SYS_readv] = "fvn",
    [SYS_writev] = "fvn", [SYS_access] = "pi", [SYS_pipe] = "b", [SYS_select] = "nssss",
    [SYS_mremap] = "allFa", [SYS_msync] = "alF", [SYS_mincore] = "alb", [SYS_madvise] = "ali",
    [SYS_dup] = "f", [SYS_dup2] = "ff", [SYS_nanosleep] = "ss", [SYS_getitimer] = "ib",
    [SYS_alarm] = "i", [SYS_setitimer] = "iss", [SYS_sendfile] = "ffsl", [SYS_socket] = "iFi",
    [SYS_connect] = "fsl", [SYS_accept] = "fss", [SYS_sendto] = "fblFsl",
    [SYS_recvfrom] = "fblFss", [SYS_sendmsg] = "fsF", [SYS_recvmsg] = "fsF",
    [SYS_shutdown] = "fi", [SYS_bind] = "fsl", [SYS_listen] = "fi", [SYS_getsockname] = "fss",
    [SYS_getpeername] = "fss", [SYS_socketpair] = "iFib", [SYS_setsockopt] = "fiisl",
    [SYS_getsockopt] = "fiiss", [SYS_clone] = "Fasss", [SYS_wait4] = "PsFs", [SYS_kill] = "PS",
    [SYS_uname] = "b", [SYS_fcntl] = "fix", [SYS_flock] = "fi", [SYS_fsync] = "f",
    [SYS_fdatasync] = "f", [SYS_truncate] = "po", [SYS_ftruncate] = "fo",
    [SYS_getdents] = "fbl", [SYS_getcwd] = "bl", [SYS_chdir] = "p", [SYS_fchdir] = "f",
    [SYS_rename] = "pp", [SYS_mkdir] = "pm", [SYS_rmdir] = "p", [SYS_creat] = "pm",
    [SYS_link] = "pp", [SYS_unlink] = "p", [SYS_symlink] = "pp", [SYS_readlink] = "pbl",
    [SYS_chmod] = "pm", [SYS_fchmod] = "fm", [SYS_chown] = "puu", [SYS_fchown] = "fuu",
    [SYS_lchown] = "puu", [SYS_umask] = "m", [SYS_gettimeofday] = "ss", [SYS_getrlimit] = "ib",
    [SYS_getrusage] = "ib", [SYS_sysinfo] = "b", [SYS_times] = "b", [SYS_setuid] = "u",
    [SYS_setgid] = "u", [SYS_setpgid] = "PP", [SYS_setreuid] = "uu", [SYS_setregid] = "uu",
    [SYS_getgroups] = "nb", [SYS_setgroups] = "ns", [SYS_setresuid] = "uuu",
    [SYS_getresuid] = "bbb", [SYS_setresgid] = "uuu", [SYS_getresgid] = "bbb",
    [SYS_getpgid] = "P", [SYS_setfsuid] = "u", [SYS_setfsgid] = "u", [SYS_getsid] = "P",
    [SYS_capget] = "ss", [SYS_capset] = "ss", [SYS_rt_sigpending] = "bl",
    [SYS_rt_sigtimedwait] = "sssl", [SYS_rt_sigqueueinfo] = "PSs", [SYS_rt_sigsuspend] = "sl",
    [SYS_sigaltstack] = "ss", [SYS_utime] = "ps", [SYS_mknod] = "pmx", [SYS_statfs] = "pb",
    [SYS_fstatfs] = "fb", [SYS_getpriority] = "iP", [SYS_setpriority] = "iPi",
    [SYS_sched_setparam] = "Ps", [SYS_sched_getparam] = "Pb", [SYS_sched_setscheduler] = "Pis",
    [SYS_sched_getscheduler] = "P", [SYS_sched_rr_get_interval] = "Pb", [SYS_mlock] = "al",
    [SYS_munlock] = "al", [SYS_mlockall] = "F", [SYS_prctl] = "ixxxx", [SYS_arch_prctl] = "ia",
    [SYS_setrlimit] = "is", [SYS_chroot] = "p", [SYS_sethostname] = "bl",
    [SYS_setdomainname] = "bl", [SYS_getxattr] = "ppbl", [SYS_lgetxattr] = "ppbl",
    [SYS_fgetxattr] = "fpbl", [SYS_setxattr] = "ppblF", [SYS_fsetxattr] = "fpblF",
    [SYS_listxattr] = "pbl", [SYS_flistxattr] = "fbl", [SYS_removexattr] = "pp",
    [SYS_tkill] = "PS", [SYS_time] = "b", [SYS_futex] = "bixsbi",
    [SYS_sched_setaffinity] = "Plb", [SYS_sched_getaffinity] = "Plb", [SYS_epoll_create] = "i",
    [SYS_getdents64] = "fbl", [SYS_set_tid_address] = "b", [SYS_fadvise64] = "foli",
    [SYS_timer_create] = "csb", [SYS_timer_settime] = "iFss", [SYS_timer_gettime] = "ib",
    [SYS_timer_delete] = "i", [SYS_clock_settime] = "cs", [SYS_clock_gettime] = "cb",
    [SYS_clock_getres] = "cb", [SYS_clock_nanosleep] = "cFss", [SYS_epoll_wait] = "fbni",
    [SYS_epoll_ctl] = "fifs", [SYS_tgkill] = "PPS", [SYS_utimes] = "ps",
    [SYS_waitid] = "iPsFs", [SYS_inotify_add_watch] = "fpF", [SYS_openat] = "fpFm",
    [SYS_mkdirat] = "fpm", [SYS_mknodat] = "fpmx", [SYS_fchownat] = "fpuuF",
    [SYS_futimesat] = "fps", [SYS_newfstatat] = "fpbF", [SYS_unlinkat] = "fpF",
    [SYS_renameat] = "fpfp", [SYS_linkat] = "fpfpF", [SYS_symlinkat] = "pfp",
    [SYS_readlinkat] = "fpbl", [SYS_fchmodat] = "fpmF", [SYS_faccessat] = "fpi",
    [SYS_pselect6] = "nssss", [SYS_ppoll] = "snssl", [SYS_splice] = "fsfslF",
    [SYS_tee] = "fflF", [SYS_vmsplice] = "fvnF", [SYS_utimensat] = "fpsF",
    [SYS_epoll_pwait] = "fbnisl", [SYS_signalfd] = "fsl", [SYS_timerfd_create] = "cF",
    [SYS_eventfd] = "i", [SYS_fallocate] = "fFoo", [SYS_timerfd_settime] = "fFss",
    [SYS_timerfd_gettime] = "fb", [SYS_accept4] = "fssF", [SYS_signalfd4] = "fslF",
    [SYS_eventfd2] = "iF", [SYS_epoll_create1] = "F", [SYS_dup3] = "ffF", [SYS_pipe2] = "bF",
    [SYS_inotify_init1] = "F", [SYS_preadv] = "fvno", [SYS_pwritev] = "fvno",
    [SYS_rt_tgsigqueueinfo] = "PPSs", [SYS_recvmmsg] = "fsnFs", [SYS_prlimit64] = "Piss",
    [SYS_syncfs] = "f", [SYS_sendmmsg] = "fsnF", [SYS_getcpu] = "bbs",
    [SYS_process_vm_readv] = "PvnvnF", [SYS_process_vm_writev] = "PvnvnF",
    [SYS_renameat2] = "fpfpF", [SYS_getrandom] = "blF", [SYS_memfd_create] = "pF",
    [SYS_execveat] = "fpssF", [SYS_copy_file_range] = "fsfslF", [SYS_preadv2] = "fvnoF",
    [SYS_pwritev2] = "fvnoF", [SYS_statx] = "fpFib", [SYS_pidfd_send_signal] = "fSsF",
    [SYS_pidfd_open] = "PF", [SYS_clone3] = "sl", [SYS_close_range] = "ffF",
    [SYS_openat2] = "fpsl", [SYS_pidfd_getfd] = "ffF", [SYS_faccessat2] = "fpiF",
    [SYS_epoll_pwait2] = "fbnssl", [SYS_execve] = "pss", [SYS_exit] = "i",
    [SYS_exit_group] = "i", [SYS_name_to_handle_at] = "fpssF"
};

static const uint32_t ioctls[] = {
    0x5401, 0x5402, 0x5403, 0x5404, 0x5409, 0x540A, 0x540B, 0x540C, 0x540D, 0x540E,
    0x540F, 0x5410, 0x5411, 0x5412, 0x5413, 0x5414, 0x5415, 0x541B, 0x5421, 0x5422,
    0x5423, 0x5424, 0x5429, 0x5450, 0x5451, 0x5452, 0x80045430, 0x40045431, 0x802c542a,
    0x402c542b, 0x80086601, 0x40086602, 0x8008ae9a, 0xc0185879,
};

static uint64_t typed_value(char k)
{
    switch (k) {
    case 'f': return fd_value();
    case 'p': return (uint64_t)paths[rnd() % npaths];
    case 'b': return good_pointer();
    case 'l': return size_value();
    case 'n': return rnd() % 4 ? rnd() % 9 : rnd() % 1100;
    case 'i': return rnd() % 4 ? rnd() % 17 : boundary[rnd() % NBOUNDARY];
    case 'F': return flags_value();
    case 'P': return pid_value();
    case 's':
        if (rnd() % 8 == 0)
            return bad_pointer();
        return (uint64_t)hostile + (rnd() % 2 ? (rnd() % (PAGE / SLOT)) * SLOT : rnd() % PAGE & ~7UL);
    case 'v': return rnd() % 8 ? (uint64_t)iovs + (rnd() % PAGE & ~15UL) : bad_pointer();
    case 'o': return rnd() % 2 ? rnd() % 70000 : boundary[rnd() % NBOUNDARY];
    case 'm': return rnd() % 4 ? rnd() % 010000 : rnd();
    case 'u': {
        static const uint64_t ids[] = {0, 1, 1000, 65534, 65535, 0xffffffff, 0x7fffffff,
                                       0x80000000, 0xfffffffe, 0x100000000ULL};
        return ids[rnd() % (sizeof ids / sizeof *ids)];
    }
    case 'S': return rnd() % 8 ? rnd() % 66 : boundary[rnd() % NBOUNDARY];
    case 'a': return (uint64_t)arena + (rnd() % (ARENA / PAGE)) * PAGE;
    case 'c': return rnd() % 4 ? rnd() % 12 : (uint64_t)(int64_t)(int32_t)(rnd() & 0xffffffff);
    case 'w': return rnd() % 8 ? rnd() % 5 : rnd();
    case 'I': {
        uint64_t v = ioctls[rnd() % (sizeof ioctls / sizeof *ioctls)];
        return rnd() % 4 ? v : v | (rnd() << 32);
    }
    default: return any_value();
    }
}

/* Rewrites the hostile page and the iovec page: any struct the kernel reads
 * from them holds boundary values, pointers, fds and lengths. */

/* One well-formed struct at p (SLOT bytes): what a call expects, holding our fds,
 * pointers and lengths, so calls get past their first checks; its fields are
 * still drawn from the boundary pools now and then. */
static void well_formed(char *p)
{
    uint64_t *q = (uint64_t *)p;
    int32_t *d = (int32_t *)p;
    switch (rnd() % 10) {
    case 0:                                   /* struct pollfd[] */
        for (size_t i = 0; i < SLOT / 8; i++) {
            d[2 * i] = rnd() % 8 ? fds[rnd() % nfds] : (int32_t)rnd();
            d[2 * i + 1] = (int32_t)(rnd() % 4 ? (rnd() & 0x3ff) : rnd());
        }
        break;
    case 1: {                                 /* struct msghdr + iovecs + SCM_RIGHTS */
        char *name = p + 64, *iov = p + 192, *ctl = p + 256;
        struct sockaddr_un *sun = (struct sockaddr_un *)name;
        sun->sun_family = AF_UNIX;
        snprintf(sun->sun_path + 1, 100, "sysfuzz-%d", atomic_load(&sh->w[rnd() % MAX_WORKERS].pid));
        q[0] = rnd() % 2 ? (uint64_t)name : 0;
        q[1] = rnd() % 4 ? 3 + strlen(sun->sun_path + 1) : size_value();
        q[2] = (uint64_t)iov;
        q[3] = rnd() % 4 ? 1 + rnd() % 4 : size_value();
        q[4] = rnd() % 2 ? (uint64_t)ctl : 0;
        q[5] = rnd() % 4 ? 16 + 4 * (rnd() % 8) : size_value();
        q[6] = rnd() % 4 ? 0 : flags_value();
        uint64_t *v = (uint64_t *)iov;
        for (int i = 0; i < 4; i++) {
            v[2 * i] = good_pointer();
            v[2 * i + 1] = rnd() % 4 ? rnd() % 2000 : size_value();
        }
        uint64_t *c = (uint64_t *)ctl;
        c[0] = rnd() % 4 ? q[5] : size_value();           /* cmsg_len */
        ((int32_t *)ctl)[2] = rnd() % 4 ? SOL_SOCKET : (int32_t)rnd();
        ((int32_t *)ctl)[3] = rnd() % 2 ? SCM_RIGHTS : rnd() % 4;   /* or SCM_CREDENTIALS */
        for (int i = 0; i < 60; i++)
            ((int32_t *)ctl)[4 + i] = rnd() % 4 ? fds[rnd() % nfds] : (int32_t)rnd();
        break;
    }
    case 2:                                   /* struct timespec / timeval pairs */
        for (size_t i = 0; i < SLOT / 16; i++) {
            q[2 * i] = rnd() % 4 ? rnd() % 3 : boundary[rnd() % NBOUNDARY];
            q[2 * i + 1] = rnd() % 4 ? rnd() % 1000000 : boundary[rnd() % NBOUNDARY];
            if (rnd() % 8 == 0)
                q[2 * i + 1] = (1 << 30) - 1 - rnd() % 2;       /* UTIME_NOW, UTIME_OMIT */
        }
        break;
    case 3: {                                 /* struct sigaction (kernel layout) */
        static void *handlers[] = {(void *)SIG_DFL, (void *)SIG_IGN, (void *)on_signal_entry};
        q[0] = (uint64_t)handlers[rnd() % 3];
        q[1] = rnd() % 4 ? 0x04000000 | (rnd() & 0x5c000004) : rnd();   /* SA_RESTORER | ... */
        q[2] = (uint64_t)restorer_entry;
        q[3] = rnd() % 2 ? 0 : rnd();
        break;
    }
    case 4: {                                 /* struct clone_args (clone3) */
        q[0] = rnd() % 2 ? flags_value() & 0xffffffffULL : rnd();
        q[1] = 0;                             /* pidfd */
        q[2] = rnd() % 2 ? 0 : good_pointer();
        q[3] = rnd() % 2 ? 0 : good_pointer();
        q[4] = rnd() % 4 ? SIGCHLD : rnd() % 256;
        q[5] = rnd() % 2 ? 0 : good_pointer();
        q[6] = rnd() % 2 ? 0 : size_value();
        q[7] = rnd() % 2 ? 0 : rnd() % 2 ? 0x10000 : boundary[rnd() % NBOUNDARY];
        q[8] = rnd() % 2 ? 0 : good_pointer();
        q[9] = rnd() % 4;
        q[10] = rnd() % 2 ? 0 : fds[rnd() % nfds];
        break;
    }
    case 5:                                   /* struct epoll_event[] */
        for (size_t i = 0; i < SLOT / 12; i++) {
            d[3 * i] = (int32_t)(rnd() % 4 ? (rnd() & 0x8000201f) : rnd());
            memcpy(&d[3 * i + 1], &(uint64_t){rnd()}, 8);
        }
        break;
    case 6:                                   /* struct iovec[] into scratch */
        for (size_t i = 0; i < SLOT / 16; i++) {
            q[2 * i] = good_pointer();
            q[2 * i + 1] = rnd() % 8 ? rnd() % 4096 : size_value();
        }
        break;
    case 7:                                   /* struct sockaddr_un, both kinds */
        memset(p, 0, SLOT);
        ((struct sockaddr_un *)p)->sun_family = rnd() % 8 ? AF_UNIX : rnd() % 64;
        snprintf(((struct sockaddr_un *)p)->sun_path + (rnd() % 2), 100,
                 rnd() % 2 ? "./sock%d" : "sysfuzz-%d", mypid);
        break;
    case 8:                                   /* a sigset, open_how, rlimit: small words */
        for (size_t i = 0; i < SLOT / 8; i++)
            q[i] = rnd() % 2 ? rnd() % 64 : flags_value();
        break;
    default:                                  /* pure boundary values */
        for (size_t i = 0; i < SLOT / 8; i++)
            q[i] = boundary[rnd() % NBOUNDARY];
        break;
    }
}

/* Rewrites the hostile page and the iovec page: any struct the kernel reads
 * from them holds boundary values, pointers, fds and lengths, or is a
 * well-formed struct of some kind at the start of one of the page's slots. */
static void refill(void)
{
    uint64_t *h = (uint64_t *)hostile;
    for (size_t i = 0; i < PAGE / 8; i++) {
        switch (rnd() % 6) {
        case 0: h[i] = boundary[rnd() % NBOUNDARY]; break;
        case 1: h[i] = good_pointer(); break;
        case 2: h[i] = bad_pointer(); break;
        case 3: h[i] = rnd() % 4 ? (uint64_t)fds[rnd() % nfds] : rnd() % 32; break;
        case 4: h[i] = (uint64_t)paths[rnd() % npaths]; break;
        default: h[i] = rnd(); break;
        }
    }
    for (size_t i = 0; i < PAGE / SLOT; i++)
        if (rnd() % 3)
            well_formed(hostile + i * SLOT);
    uint64_t *v = (uint64_t *)iovs;
    for (size_t i = 0; i < PAGE / 16; i++) {
        v[2 * i] = rnd() % 4 ? good_pointer() : bad_pointer();
        v[2 * i + 1] = rnd() % 4 ? rnd() % 512 : size_value();
    }
    for (int i = 0; i < 8; i++) {
        size_t off = rnd() % (SCRATCH / 8);
        ((uint64_t *)scratch)[off] = any_value();
    }
}

/* ---- signals ------------------------------------------------------------------------ */

static void on_signal(int sig, siginfo_t *si, void *uc)
{
    (void)si;
    (void)uc;
    atomic_fetch_add(&sh->signals, 1);
    if (sig == SIGUSR2)
        sc6(SYS_getpid, 0, 0, 0, 0, 0, 0);     /* a syscall inside a handler */
}

static void on_signal_entry(int sig, siginfo_t *si, void *uc)
{
    on_signal(sig, si, uc);
}

/* The sigreturn trampoline a raw rt_sigaction needs (glibc's is private). */
__attribute__((naked)) static void restorer_entry(void)
{
    __asm__ volatile("mov $15, %eax\n\t"
                     "syscall");
}

/* Handlers for every catchable signal except the faults (a worker that
 * faults dies and is replaced), half of them SA_RESTART; nothing blocked;
 * SIGALRM every few ms, so blocking calls end in EINTR or restart. */
static void arm_signals(int timer)
{
    for (int s = 1; s < 65; s++) {
        if (s == SIGKILL || s == SIGSTOP || s == SIGSEGV || s == SIGBUS || s == SIGILL ||
            s == SIGFPE || s == SIGTRAP || s == SIGSYS || s == SIGABRT || s == 32 || s == 33)
            continue;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_signal;
        sa.sa_flags = SA_SIGINFO | (s % 2 ? SA_RESTART : 0) | (s == SIGUSR1 ? SA_NODEFER : 0);
        sigaction(s, &sa, NULL);
    }
    signal(SIGSEGV, SIG_DFL);
    signal(SIGBUS, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, NULL);
    stack_t ss = {.ss_flags = SS_DISABLE};
    sigaltstack(&ss, NULL);
    if (timer) {
        long us = 2000 + (long)(rnd() % 18000);
        struct itimerval it = {{0, us}, {0, us}};
        setitimer(ITIMER_REAL, &it, NULL);
    }
}

/* Calls after which our signal set-up may be gone. */
static int resets_signals(long nr)
{
    switch (nr) {
    case SYS_rt_sigaction: case SYS_rt_sigprocmask: case SYS_sigaltstack:
    case SYS_setitimer: case SYS_alarm: case SYS_rt_sigsuspend: case SYS_signalfd:
    case SYS_signalfd4: case SYS_timer_settime: case SYS_timer_delete: case SYS_personality:
        return 1;
    }
    return 0;
}

/* ---- set-up ------------------------------------------------------------------------- */

static void add_fd(int fd)
{
    if (fd >= 0 && nfds < (int)(sizeof fds / sizeof *fds))
        fds[nfds++] = fd;
}

static void open_fds(const char *dir)
{
    char p[300];
    int pp[2], sv[2];
    add_fd(0);
    add_fd(dup(1));
    add_fd(dup(2));
    if (pipe(pp) == 0) { add_fd(pp[0]); add_fd(pp[1]); }
    if (pipe2(pp, O_NONBLOCK) == 0) {
        add_fd(pp[0]);
        add_fd(pp[1]);
        char junk[1000];
        memset(junk, 'x', sizeof junk);
        (void)!write(pp[1], junk, sizeof junk);     /* a pipe partly full */
    }
    add_fd(eventfd(0, 0));
    add_fd(eventfd(3, EFD_NONBLOCK | EFD_SEMAPHORE));
    int ep = epoll_create1(0);
    for (int i = 0; i < nfds; i++) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u64 = (uint64_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
    }
    add_fd(ep);
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0) { add_fd(sv[0]); add_fd(sv[1]); }
    if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0, sv) == 0) { add_fd(sv[0]); add_fd(sv[1]); }
    if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0) { add_fd(sv[0]); add_fd(sv[1]); }
    int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (ls >= 0) {
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        snprintf(a.sun_path + 1, sizeof a.sun_path - 1, "sysfuzz-%d", getpid());
        bind(ls, (struct sockaddr *)&a, sizeof a);
        listen(ls, 4);
        add_fd(ls);
    }
    add_fd(socket(AF_UNIX, SOCK_DGRAM, 0));
    snprintf(p, sizeof p, "%s/f", dir);
    add_fd(open(p, O_RDWR | O_CREAT, 0644));                  /* overlay upper (tmpfs) */
    snprintf(p, sizeof p, "/dev/shm/sysfuzz-%d", getpid());
    add_fd(open(p, O_RDWR | O_CREAT | O_APPEND, 0600));       /* tmpfs */
    add_fd(open("/etc/passwd", O_RDONLY));                    /* gofer root */
    add_fd(open("/etc/hostname", O_RDWR));                    /* gofer, copied up */
    add_fd(open("/usr", O_RDONLY | O_DIRECTORY));             /* gofer directory */
    add_fd(open("/proc/self/status", O_RDONLY));
    add_fd(open("/proc/self/maps", O_RDONLY));
    add_fd(open("/proc/1/status", O_RDONLY));      /* another process's, maybe gone later */
    add_fd(open("/proc/self/mem", O_RDWR));
    add_fd(open("/proc", O_RDONLY | O_DIRECTORY));
    add_fd(open("/dev/null", O_RDWR));
    add_fd(open("/dev/zero", O_RDWR));
    add_fd(open("/dev/full", O_RDWR));
    add_fd(open("/dev/urandom", O_RDONLY));
    add_fd(open("/dev/tty", O_RDWR | O_NONBLOCK));
    add_fd(open(dir, O_RDONLY | O_DIRECTORY));
    add_fd(open("/tmp", O_PATH));
    add_fd(memfd_create("sysfuzz", MFD_CLOEXEC));
    add_fd((int)syscall(SYS_pidfd_open, getpid(), 0));
    snprintf(p, sizeof p, "%s/fifo", dir);
    mkfifo(p, 0600);
    add_fd(open(p, O_RDWR | O_NONBLOCK));
    add_fd(socket(AF_INET, SOCK_STREAM, 0));
}

static void make_paths(const char *dir)
{
    static const char *fixed[] = {
        "/", ".", "..", "", "/tmp", "/etc/passwd", "/etc", "/usr/bin", "/bin/true",
        "/proc/self/fd/0", "/proc/self/status", "/proc/1/status", "/proc/self/exe",
        "/dev/null", "/dev/zero", "/dev/tty", "/dev/shm", "/sys/devices/system/cpu/online",
        "f", "d", "l", "fifo", "./f", "d/../f", "/proc/self/root/etc/hostname",
        "/nonexistent/x", "f/", "/dev/shm/x", "//./..//tmp", "/proc/1/maps",
        "/proc/1/fd", "/proc/self/mem", "/proc/self/fdinfo/0", "/proc/thread-self/stat",
        "/proc/sys/kernel/hostname", "/proc/self/task", "/dev/fd/1", "/proc/self/cwd/f",
        "/proc/2/cmdline", "/sys", "/dev/ptmx",
    };
    char *s = ro;
    char *end = ro + PAGE;
    npaths = 0;
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++) {
        size_t n = strlen(fixed[i]) + 1;
        memcpy(s, fixed[i], n);
        paths[npaths++] = s;
        s += n;
    }
    int n = snprintf(s, (size_t)(end - s), "%s/f", dir);
    paths[npaths++] = s;
    s += n + 1;
    /* A name of 300 bytes, and a path of 300 components. */
    paths[npaths++] = s;
    memset(s, 'n', 300);
    s[300] = 0;
    s += 301;
    paths[npaths++] = s;
    for (int i = 0; i < 300; i++) {
        s[2 * i] = 'd';
        s[2 * i + 1] = '/';
    }
    s[600] = 0;
    s += 601;
    /* A string that runs into the guard page: no NUL before the end of scratch. */
    memset(scratch + SCRATCH - 64, 'z', 64);
    paths[npaths++] = scratch + SCRATCH - 64;
}

static void *map(size_t n, int prot)
{
    void *p = mmap(NULL, n, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("sysfuzz: mmap");
        _exit(2);
    }
    return p;
}

static void setup_worker(void)
{
    char dir[200];
    snprintf(dir, sizeof dir, "%s/sysfuzz.%d", workdir, getpid());
    mkdir(dir, 0755);
    if (chdir(dir) != 0)
        _exit(2);
    mkdir("d", 0755);
    symlink("f", "l");
    char *g = map(SCRATCH + 2 * PAGE, PROT_READ | PROT_WRITE);
    mprotect(g, PAGE, PROT_NONE);
    mprotect(g + PAGE + SCRATCH, PAGE, PROT_NONE);
    scratch = g + PAGE;
    for (size_t i = 0; i < SCRATCH / 8; i++)
        ((uint64_t *)scratch)[i] = rnd();
    hostile = map(PAGE, PROT_READ | PROT_WRITE);
    iovs = map(PAGE, PROT_READ | PROT_WRITE);
    ro = map(PAGE, PROT_READ | PROT_WRITE);
    arena = map(ARENA, PROT_READ | PROT_WRITE);
    unmapped = map(PAGE, PROT_READ);
    munmap(unmapped, PAGE);
    brk_floor = (uintptr_t)sbrk(0);
    make_paths(dir);
    mprotect(ro, PAGE, PROT_READ);
    open_fds(dir);
    refill();
}

/* ---- one call ---------------------------------------------------------------------- */

static long pick_nr(void)
{
    if (rnd() % 32)
        return (long)(rnd() % NR_TOP);
    /* Numbers no table has: just past the end, the x32 range, the x32 bit,
     * huge, negative, and a known number with high bits set. */
    switch (rnd() % 6) {
    case 0: return NR_TOP + (long)(rnd() % 64);
    case 1: return 512 + (long)(rnd() % 36);
    case 2: return 0x40000000L + (long)(rnd() % NR_TOP);
    case 3: return (long)(rnd() | 0x100000000ULL);
    case 4: return -1 - (long)(rnd() % 4);
    default: return (long)((1ULL << 32) + rnd() % NR_TOP);
    }
}

/* Keeps an address range inside the arena, or outside user space. */
static void in_arena(uint64_t *addr, uint64_t *len)
{
    uint64_t a = (uint64_t)arena, e = a + ARENA;
    if (*addr >= (1ULL << 47) && rnd() % 2)
        return;                                  /* kernel or non-canonical: must fail */
    if (*addr < a || *addr >= e)
        *addr = a + (rnd() % (ARENA / PAGE)) * PAGE + (rnd() % 8 ? 0 : rnd() % PAGE);
    if (*len > e - *addr)
        *len = rnd() % 2 ? e - *addr : (e - *addr) & ~(PAGE - 1);
}

enum how { DIRECT, FORKING, IN_CHILD, SIGRETURN };

/* The calls shape() keeps to the arena.  Now and then they run unshaped in a
 * throwaway child instead: munmap of all of user space, mremap of the stack,
 * brk to anywhere, MAP_FIXED over the program's own text. */
static int wrecks_memory(long nr)
{
    switch (nr) {
    case SYS_mmap: case SYS_munmap: case SYS_mprotect: case SYS_pkey_mprotect:
    case SYS_madvise: case SYS_remap_file_pages: case SYS_mremap: case SYS_shmat:
    case SYS_brk:
        return 1;
    }
    return 0;
}

static enum how shape(long nr, uint64_t *a)
{
    switch (nr) {
    case SYS_exit: case SYS_exit_group: case SYS_execve: case SYS_execveat:
        return IN_CHILD;
    case SYS_rt_sigreturn:
        return SIGRETURN;
    case SYS_arch_prctl:
        if (rnd() % 2)
            a[0] = 0x1001 + rnd() % 4;           /* ARCH_SET_GS, SET_FS, GET_FS, GET_GS */
        return (a[0] == 0x1001 || a[0] == 0x1002) ? IN_CHILD : DIRECT;
    case SYS_clone: case SYS_clone3: case SYS_fork: case SYS_vfork:
        return FORKING;
    case SYS_mmap:
        if (a[3] & (MAP_FIXED | 0x100000 /* MAP_FIXED_NOREPLACE */))
            in_arena(&a[0], &a[1]);
        else if (a[1] > (1ULL << 30) && a[1] < (1ULL << 47))
            a[1] &= (1ULL << 30) - 1;
        return DIRECT;
    case SYS_munmap: case SYS_mprotect: case SYS_pkey_mprotect: case SYS_madvise:
    case SYS_remap_file_pages:
        in_arena(&a[0], &a[1]);
        return DIRECT;
    case SYS_mremap:
        in_arena(&a[0], &a[1]);
        if (a[3] & 2 /* MREMAP_FIXED */)
            in_arena(&a[4], &a[2]);
        else if (a[2] > (1ULL << 30) && a[2] < (1ULL << 47))
            a[2] &= (1ULL << 30) - 1;
        return DIRECT;
    case SYS_shmat:
        if (a[2] & 040000 /* SHM_REMAP */) {
            uint64_t len = PAGE;
            in_arena(&a[1], &len);
        }
        return DIRECT;
    case SYS_brk:
        if (a[0] >= brk_floor && a[0] < (uint64_t)sbrk(0))
            a[0] = (uint64_t)sbrk(0) + rnd() % (1 << 20);
        return DIRECT;
    case SYS_prlimit64: case SYS_process_vm_writev:
        if ((int)a[0] == 1)
            a[0] = (uint64_t)mypid;
        return DIRECT;
    case SYS_fallocate:
        a[2] &= (1ULL << 30) - 1;
        a[3] &= (1ULL << 30) - 1;
        return DIRECT;
    }
    return DIRECT;
}

static int wait_child(pid_t pid, double secs)
{
    double end = now() + secs;
    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG | __WALL);
        if (r == pid)
            return status;
        if (r < 0 && errno != EINTR)
            return -1;
        if (now() > end) {
            kill(pid, SIGKILL);
            end = now() + 5;
        }
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* rt_sigreturn with a frame of boundary values: sometimes a plausible frame
 * (64-bit selectors, a valid stack, landing on exit42) whose FP state pointer
 * or FP contents (MXCSR reserved bits, ...) are hostile. */
static __attribute__((noreturn)) void hostile_sigreturn(void)
{
    static char frame[8192] __attribute__((aligned(64)));
    static char fpstate[4096] __attribute__((aligned(64)));
    for (size_t i = 0; i < sizeof frame / 8; i++)
        ((uint64_t *)frame)[i] = rnd() % 3 ? boundary[rnd() % NBOUNDARY] : rnd();
    for (size_t i = 0; i < sizeof fpstate / 8; i++)
        ((uint64_t *)fpstate)[i] = rnd() % 2 ? 0 : rnd();
    ucontext_t *uc = (ucontext_t *)(frame + 2048);
    if (rnd() % 4) {
        uc->uc_flags = rnd() % 2 ? 0 : rnd() % 16;
        uc->uc_link = NULL;
        uc->uc_stack.ss_flags = SS_DISABLE;
        greg_t *g = uc->uc_mcontext.gregs;
        g[REG_RIP] = (greg_t)exit42;
        g[REG_RSP] = (greg_t)(frame + 1024);
        g[REG_EFL] = rnd() % 2 ? 0x202 : (greg_t)rnd();
        g[REG_CSGSFS] = rnd() % 3 ? 0x33 | (0x2bLL << 48) : (greg_t)rnd();
        if (rnd() % 2) {
            /* fxsave layout: MXCSR at 24, MXCSR_MASK at 28; xsave header at 512. */
            uint32_t mxcsr = rnd() % 2 ? 0x1f80 : (uint32_t)rnd();
            memcpy(fpstate + 24, &mxcsr, 4);
            uc->uc_mcontext.fpregs = (fpregset_t)fpstate;
        } else {
            uc->uc_mcontext.fpregs = (fpregset_t)(rnd() % 2 ? 0 : bad_pointer());
        }
        memset(&uc->uc_sigmask, 0, sizeof uc->uc_sigmask);
    }
    __asm__ volatile("mov %0, %%rsp\n\t"
                     "mov $15, %%eax\n\t"
                     "syscall\n\t"
                     "ud2"
                     :
                     : "r"(uc)
                     : "memory");
    __builtin_unreachable();
}

static void in_child(long nr, uint64_t *a, enum how how)
{
    atomic_fetch_add(&sh->children, 1);
    pid_t pid = fork();
    if (pid == 0) {
        if (how == SIGRETURN)
            hostile_sigreturn();
        sc6_then_exit(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
    }
    if (pid > 0)
        wait_child(pid, 1.0);
}

static void fuzz_one(struct thread_slot *slot)
{
    long nr = pick_nr();
    uint64_t a[6];
    const char *types = (nr >= 0 && nr < NR_TOP && sig[nr]) ? sig[nr] : "";
    for (int i = 0; i < 6; i++)
        a[i] = (i < (int)strlen(types) && rnd() % 4) ? typed_value(types[i]) : any_value();
    enum how how = DIRECT;
    if (nr >= 0 && nr < NR_TOP && wrecks_memory(nr) && rnd() % 4 == 0)
        how = IN_CHILD;                           /* unshaped, in a child that may not survive it */
    else if (nr >= 0 && nr < NR_TOP)
        how = shape(nr, a);
    if ((how == IN_CHILD || how == SIGRETURN) && rnd() % 4)
        return;                                   /* forks are slow: only now and then */
    atomic_store(&slot->nr, nr);
    long ret;
    if (how == DIRECT)
        ret = sc6(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
    else if (how == FORKING)
        ret = sc6_fork(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
    else {
        in_child(nr, a, how);
        ret = 0;
    }
    atomic_store(&slot->nr, -1);
    int s = (nr >= 0 && nr < NR_TOP) ? (int)nr : NR_UNKNOWN_SLOT;
    atomic_fetch_add(&sh->calls[s], 1);
    if (ret >= 0 || ret < -4095)
        atomic_fetch_add(&sh->oks[s], 1);
    atomic_fetch_add(&slot->calls, 1);
    if (nr >= 0 && nr < NR_TOP && resets_signals(nr))
        arm_signals(0);
}

struct thread_arg {
    int index;
    uint64_t seed;
};

static void *fuzz_thread(void *p)
{
    struct thread_arg *ta = p;
    rng = ta->seed;
    struct thread_slot *slot = &sh->w[worker_index].t[ta->index];
    mytid = gettid();
    atomic_store(&slot->tid, mytid);
    while (!atomic_load(&sh->stop)) {
        if (atomic_fetch_add(&worker_calls, 1) >= life)
            _exit(0);                             /* the worker's life is over */
        fuzz_one(slot);
        if (rnd() % 64 == 0)
            refill();
        if (nthreads > 1 && rnd() % 16 == 0) {
            /* Process signals mostly reach the main thread: poke a sibling, so a
             * thread blocked in pause() or a wait is interrupted too. */
            int tid = atomic_load(&sh->w[worker_index].t[rnd() % nthreads].tid);
            if (tid > 0 && tid != mytid)
                syscall(SYS_tgkill, mypid, tid, rnd() % 2 ? SIGUSR2 : SIGALRM);
        }
        if (rnd() % 256 == 0) {
            /* A signal at another worker (rarely a fatal one). */
            static const int sigs[] = {SIGUSR1, SIGUSR2, SIGALRM, SIGCHLD, SIGSTOP, SIGCONT,
                                       SIGTERM, SIGKILL, 40, 64};
            int w = (int)(rnd() % MAX_WORKERS);
            int pid = atomic_load(&sh->w[w].pid);
            int sig = sigs[rnd() % (sizeof sigs / sizeof *sigs)];
            if (pid > 1 && (sig != SIGKILL || rnd() % 8 == 0))
                kill(pid, sig);
        }
    }
    _exit(0);
}

static __attribute__((noreturn)) void worker_main(int index, uint64_t seed, uint64_t gen)
{
    worker_index = index;
    rng = mix(mix(seed, (uint64_t)index + 1), gen);
    life = 500 + (long)(rnd() % 3000);
    setsid();
    mypid = getpid();
    setup_worker();
    arm_signals(1);
    static struct thread_arg args[MAX_THREADS];
    for (int i = 0; i < nthreads; i++) {
        args[i].index = i;
        args[i].seed = mix(rng, (uint64_t)i + 77);
        atomic_store(&sh->w[index].t[i].nr, -1);
    }
    for (int i = 1; i < nthreads; i++) {
        pthread_t th;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        pthread_create(&th, &at, fuzz_thread, &args[i]);
    }
    fuzz_thread(&args[0]);
    _exit(0);
}

/* ---- the supervisor ------------------------------------------------------------------ */

struct stats {
    long spawned, exited, killed_by[65], stalls;
    long stall_nr[NR_SLOTS];
};

static pid_t spawn(int w, uint64_t seed, uint64_t gen)
{
    for (int i = 0; i < MAX_THREADS; i++) {
        atomic_store(&sh->w[w].t[i].nr, -1);
        atomic_store(&sh->w[w].t[i].calls, 0);
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0)
        worker_main(w, seed, gen);
    if (pid > 0)
        atomic_store(&sh->w[w].pid, pid);
    return pid;
}

static void note_death(struct stats *st, int status)
{
    if (WIFSIGNALED(status))
        st->killed_by[WTERMSIG(status) & 63]++;
    else
        st->exited++;
}

static int count_processes(char *list, size_t cap)
{
    DIR *d = opendir("/proc");
    int n = 0;
    list[0] = 0;
    if (!d)
        return -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        int pid = atoi(e->d_name);
        if (pid > 0 && pid != getpid()) {
            n++;
            size_t l = strlen(list);
            snprintf(list + l, cap - l, "%s%d", l ? "," : "", pid);
        }
    }
    closedir(d);
    return n;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: sysfuzz SEED SECONDS [WORKERS [THREADS [DIR]]]\n");
        return 2;
    }
    uint64_t seed = strtoull(argv[1], NULL, 0);
    double seconds = atof(argv[2]);
    int workers = argc > 3 ? atoi(argv[3]) : 4;
    nthreads = argc > 4 ? atoi(argv[4]) : 2;
    if (argc > 5)
        workdir = argv[5];
    if (workers < 1 || workers > MAX_WORKERS || nthreads < 1 || nthreads > MAX_THREADS) {
        fprintf(stderr, "sysfuzz: 1..%d workers, 1..%d threads\n", MAX_WORKERS, MAX_THREADS);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("sysfuzz: seed=%llu seconds=%g workers=%d threads=%d pid=%d\n",
           (unsigned long long)seed, seconds, workers, nthreads, getpid());
    sh = mmap((void *)SHARED_AT, sizeof *sh, PROT_READ | PROT_WRITE,
              MAP_SHARED | MAP_ANONYMOUS | 0x100000 /* MAP_FIXED_NOREPLACE */, -1, 0);
    if (sh != MAP_FAILED && sh != (void *)SHARED_AT) {
        munmap(sh, sizeof *sh);     /* a kernel without NOREPLACE took it as a hint */
        sh = MAP_FAILED;
    }
    if (sh == MAP_FAILED) {
        perror("sysfuzz: mmap");
        return 2;
    }
    static struct stats st;
    long seen[MAX_WORKERS][MAX_THREADS];
    double since[MAX_WORKERS][MAX_THREADS];
    uint64_t gen = 0;
    double t0 = now(), deadline = t0 + seconds;
    for (int w = 0; w < workers; w++) {
        spawn(w, seed, gen++);
        st.spawned++;
        for (int i = 0; i < nthreads; i++) {
            seen[w][i] = 0;
            since[w][i] = now();
        }
    }
    while (now() < deadline) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
        int status;
        pid_t pid;
        /* Reap everything: workers, their orphans, throwaway children. */
        while ((pid = waitpid(-1, &status, WNOHANG | __WALL)) > 0) {
            for (int w = 0; w < workers; w++) {
                if (atomic_load(&sh->w[w].pid) != pid)
                    continue;
                note_death(&st, status);
                spawn(w, seed, gen++);
                st.spawned++;
                for (int i = 0; i < nthreads; i++) {
                    seen[w][i] = 0;
                    since[w][i] = now();
                }
            }
        }
        /* A thread stuck in one call (blocked with signals masked, stopped, ...)
         * gets its worker replaced. */
        double t = now();
        for (int w = 0; w < workers; w++) {
            for (int i = 0; i < nthreads; i++) {
                long c = atomic_load(&sh->w[w].t[i].calls);
                if (c != seen[w][i]) {
                    seen[w][i] = c;
                    since[w][i] = t;
                } else if (t - since[w][i] > STALL_SECONDS) {
                    long nr = atomic_load(&sh->w[w].t[i].nr);
                    st.stalls++;
                    st.stall_nr[nr >= 0 && nr < NR_TOP ? nr : NR_UNKNOWN_SLOT]++;
                    kill(atomic_load(&sh->w[w].pid), SIGKILL);
                    for (int j = 0; j < nthreads; j++)
                        since[w][j] = t + 60;   /* until it is reaped and re-spawned */
                    break;
                }
            }
        }
    }
    /* The end: stop and kill everything (init is not hit by its own kill(-1)),
     * reap it all, and check that nothing is left. */
    atomic_store(&sh->stop, 1);
    for (int w = 0; w < workers; w++)
        kill(atomic_load(&sh->w[w].pid), SIGKILL);
    kill(-1, SIGKILL);
    double reap_start = now(), reap_end = reap_start + 20;
    int status, unreaped = 1;
    pid_t pid;
    for (;;) {
        pid = waitpid(-1, &status, WNOHANG | __WALL);
        if (pid > 0) {
            for (int w = 0; w < workers; w++)
                if (atomic_load(&sh->w[w].pid) == pid)
                    note_death(&st, status);
            continue;
        }
        if (pid < 0 && errno == ECHILD) {
            unreaped = 0;
            break;
        }
        if (now() > reap_end)
            break;
        kill(-1, SIGKILL);
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    double reap_seconds = now() - reap_start;
    char left[4096];
    int leftover = count_processes(left, sizeof left);
    long total = 0, oks = 0;
    int distinct = 0, distinct_ok = 0;
    for (int s = 0; s < NR_SLOTS; s++) {
        total += atomic_load(&sh->calls[s]);
        oks += atomic_load(&sh->oks[s]);
        distinct += atomic_load(&sh->calls[s]) > 0;
        distinct_ok += atomic_load(&sh->oks[s]) > 0;
    }
    printf("\nsysfuzz: calls=%ld succeeded=%ld numbers_called=%d numbers_succeeded=%d\n",
           total, oks, distinct, distinct_ok);
    printf("sysfuzz: seconds=%.1f workers_spawned=%ld throwaway_children=%ld signals=%ld\n",
           now() - t0, st.spawned, atomic_load(&sh->children), atomic_load(&sh->signals));
    printf("sysfuzz: workers_exited=%ld stalls=%ld", st.exited, st.stalls);
    for (int s = 1; s < 65; s++)
        if (st.killed_by[s])
            printf(" killed_by_%d=%ld", s, st.killed_by[s]);
    printf("\nsysfuzz: stalled_in=");
    for (int s = 0, first = 1; s < NR_SLOTS; s++)
        if (st.stall_nr[s]) {
            printf("%s%d:%ld", first ? "" : ",", s, st.stall_nr[s]);
            first = 0;
        }
    printf("\nsysfuzz: unreaped=%d reap_seconds=%.1f leftover=%d leftover_pids=%s\n",
           unreaped, reap_seconds, leftover, left);
    printf("sysfuzz: done=1\n");
    return 0;
}
