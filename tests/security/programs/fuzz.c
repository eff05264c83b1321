/* A syscall fuzzer: random syscall numbers (0..450) with random arguments,
 * from several processes, bounded by a call count.
 *
 * Usage: fuzz SEED WORKERS CALLS BATCH SCRATCHDIR [EXTRA_DENY]
 *   WORKERS processes each make CALLS calls, in batches of BATCH calls made
 *   by a fresh child (a batch may crash its child, or block: it is killed
 *   after 2 s). Calls that would end, block or multiply the fuzzer (exit,
 *   fork, execve, waits, sleeps, kill of others, ...) are left out, and
 *   arguments that would tear down the fuzzer itself (MAP_FIXED, munmap of
 *   its text, pids of other processes) are masked. Reports per worker:
 *   calls made, batches crashed or timed out and the syscall then running.
 *   Then prints alive=1 (the kernel still serves). EXTRA_DENY is a comma-
 *   separated list of more syscall numbers to leave out (to look past a
 *   known crash).
 */
#include "sec.h"
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <stdatomic.h>

#define MAXNR 451
#define NFDS 10

struct slot {
    atomic_long calls;
    atomic_long current_nr;
};

static struct slot *slots;
static uint64_t rng;
static int fds[NFDS];
static char *scratch;      /* 64 KiB of random bytes, read-write */
static char *strings;      /* a page of path strings */
static const char *pathv[8];

static uint64_t rnd(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 2685821657736338717ULL;
}

static char extra_deny[MAXNR];

static int denied(long nr)
{
    if (extra_deny[nr])
        return 1;
    switch (nr) {
    case SYS_exit: case SYS_exit_group: case SYS_rt_sigreturn:
    case SYS_fork: case SYS_vfork: case SYS_clone: case SYS_clone3:
    case SYS_execve: case SYS_execveat:
    case SYS_kill: case SYS_tkill: case SYS_tgkill: case SYS_rt_sigqueueinfo:
    case SYS_rt_tgsigqueueinfo: case SYS_pidfd_send_signal:
    case SYS_pause: case SYS_rt_sigsuspend: case SYS_rt_sigtimedwait:
    case SYS_nanosleep: case SYS_clock_nanosleep: case SYS_futex:
    case SYS_futex_waitv: case SYS_wait4: case SYS_waitid:
    case SYS_poll: case SYS_ppoll: case SYS_select: case SYS_pselect6:
    case SYS_epoll_wait: case SYS_epoll_pwait: case SYS_epoll_pwait2:
    case SYS_msgrcv: case SYS_semop: case SYS_semtimedop: case SYS_mq_timedreceive:
    case SYS_io_getevents: case SYS_io_pgetevents:
    case SYS_accept: case SYS_accept4: case SYS_recvfrom: case SYS_recvmsg:
    case SYS_recvmmsg: case SYS_flock:
    case SYS_munmap: case SYS_mremap: case SYS_mprotect: case SYS_pkey_mprotect:
    case SYS_brk: case SYS_madvise: case SYS_arch_prctl: case SYS_remap_file_pages:
    case SYS_reboot: case SYS_vhangup:
        return 1;
    }
    return nr >= 335 && nr < 424;   /* unassigned numbers: kept few */
}

static uint64_t arg(void)
{
    switch (rnd() % 14) {
    case 0: return 0;
    case 1: return rnd() % 17;
    case 2: return (uint64_t)-1;
    case 3: return (uint64_t)fds[rnd() % NFDS];
    case 4: return (uint64_t)(scratch + (rnd() % 65536));
    case 5: return (uint64_t)scratch;
    case 6: return (uint64_t)pathv[rnd() % 8];
    case 7: return 0x1000;
    case 8: return 0xffff800000000000ULL;
    case 9: return 0x0000800000000000ULL;     /* non-canonical */
    case 10: return rnd();
    case 11: return rnd() & 0xffffffff;
    case 12: return rnd() % 8192;
    default: return 1ULL << (rnd() % 64);
    }
}

static void setup_child(int seed_slot)
{
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
    }
    int p[2] = {-1, -1};
    pipe2(p, O_NONBLOCK);
    int sv[2] = {-1, -1};
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv);
    fds[0] = open("/dev/null", O_RDWR);
    fds[1] = p[0];
    fds[2] = p[1];
    fds[3] = open("f", O_CREAT | O_RDWR, 0644);
    fds[4] = eventfd(0, EFD_NONBLOCK);
    fds[5] = memfd_create("fuzz", 0);
    fds[6] = epoll_create1(0);
    fds[7] = open("/proc/self/status", O_RDONLY);
    fds[8] = open(".", O_RDONLY | O_DIRECTORY);
    fds[9] = sv[0] >= 0 ? sv[0] : 1000;
    scratch = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (int i = 0; i < 65536; i += 8) {
        uint64_t v = rnd();
        memcpy(scratch + i, &v, 8);
    }
    strings = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    static const char *names[8] = {"f", "d", "l", "./f", "sub/x", "", "..", "f2"};
    char *s = strings;
    for (int i = 0; i < 8; i++) {
        strcpy(s, names[i]);
        pathv[i] = s;
        s += strlen(names[i]) + 1;
    }
    mkdir("d", 0755);
    symlink("f", "l");
    mprotect(strings, 4096, PROT_READ);
}

static void fuzz_batch(int worker, long batch, long n)
{
    struct slot *me = &slots[worker];
    for (long i = 0; i < n; i++) {
        long nr;
        do {
            nr = (long)(rnd() % MAXNR);
        } while (denied(nr));
        uint64_t a[6];
        for (int k = 0; k < 6; k++)
            a[k] = arg();
        switch (nr) {
        case SYS_mmap:
            a[0] = 0;                                 /* no fixed address */
            a[3] &= ~(uint64_t)(MAP_FIXED | MAP_FIXED_NOREPLACE | MAP_GROWSDOWN);
            a[1] &= (1ULL << 28) - 1;                 /* at most 256 MiB */
            break;
        case SYS_shmat:
            a[1] = 0;
            a[2] &= ~(uint64_t)040000;                /* SHM_REMAP */
            break;
        case SYS_prlimit64: case SYS_sched_setaffinity: case SYS_sched_setparam:
        case SYS_sched_setscheduler: case SYS_sched_setattr: case SYS_process_vm_readv:
        case SYS_process_vm_writev: case SYS_kcmp: case SYS_pidfd_open:
        case SYS_migrate_pages: case SYS_move_pages: case SYS_process_madvise:
        case SYS_ptrace: case SYS_setpgid: case SYS_get_robust_list:
            a[0] = 0;                                 /* ourselves */
            if (nr == SYS_ptrace)
                a[1] = 0;
            break;
        case SYS_setpriority: case SYS_ioprio_set:
            a[1] = 0;
            break;
        case SYS_fallocate: case SYS_ftruncate: case SYS_truncate:
            a[1] &= (1ULL << 24) - 1;                 /* at most 16 MiB */
            a[2] &= (1ULL << 24) - 1;
            a[3] &= (1ULL << 24) - 1;
            break;
        }
        atomic_store(&me->current_nr, nr);
        syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
        atomic_fetch_add(&me->calls, 1);
    }
    atomic_store(&me->current_nr, -1);
}

/* Signals another fuzzing child might aim at us (F_SETOWN and SIGIO, ...). */
static void ignore_stray_signals(void)
{
    static const int sigs[] = {SIGIO, SIGURG, SIGPIPE, SIGUSR1, SIGUSR2, SIGHUP, SIGTERM,
                               SIGINT, SIGALRM, SIGPROF, SIGVTALRM, SIGXCPU, SIGXFSZ,
                               SIGQUIT, SIGTSTP, SIGTTIN, SIGTTOU};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++)
        signal(sigs[i], SIG_IGN);
}

static void worker_main(int worker, uint64_t seed, long calls, long batch_size)
{
    long batches = (calls + batch_size - 1) / batch_size;
    int crashed = 0, timeouts = 0;
    char lastbad[1024] = "";
    for (long b = 0; b < batches; b++) {
        uint64_t s = seed * 1000003ULL + (uint64_t)worker * 10007ULL + (uint64_t)b + 1;
        pid_t pid = fork();
        if (pid < 0)
            die("fork");
        if (pid == 0) {
            rng = s | 1;
            setup_child(worker);
            fuzz_batch(worker, b, batch_size);
            _exit(0);
        }
        int timed_out;
        int status = wait_deadline(pid, 2.5, &timed_out);
        long nr = atomic_load(&slots[worker].current_nr);
        if (timed_out || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            char one[64];
            if (timed_out)
                timeouts++;
            else
                crashed++;
            snprintf(one, sizeof one, "%s%ld:%s", lastbad[0] ? "," : "", nr,
                     timed_out ? "timeout" : WIFSIGNALED(status) ? strsignal(WTERMSIG(status))
                                                                 : "exit");
            if (strlen(lastbad) + strlen(one) < sizeof lastbad - 1)
                strcat(lastbad, one);
        }
        atomic_store(&slots[worker].current_nr, -1);
    }
    char k[64];
    snprintf(k, sizeof k, "w%d_calls", worker);
    kv(k, "%ld", atomic_load(&slots[worker].calls));
    snprintf(k, sizeof k, "w%d_crashed", worker);
    kv(k, "%d", crashed);
    snprintf(k, sizeof k, "w%d_timeouts", worker);
    kv(k, "%d", timeouts);
    snprintf(k, sizeof k, "w%d_bad", worker);
    kv(k, "%s", lastbad);
}

int main(int argc, char **argv)
{
    USAGE(argc, 6, "fuzz SEED WORKERS CALLS BATCH SCRATCHDIR");
    uint64_t seed = strtoull(argv[1], NULL, 0);
    int workers = atoi(argv[2]);
    long calls = atol(argv[3]);
    long batch = atol(argv[4]);
    if (argc > 6) {
        for (char *t = strtok(argv[6], ","); t; t = strtok(NULL, ","))
            if (atoi(t) >= 0 && atoi(t) < MAXNR)
                extra_deny[atoi(t)] = 1;
    }
    mkdir(argv[5], 0755);
    if (chdir(argv[5]) != 0)
        die("chdir scratch");
    ignore_stray_signals();
    slots = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    double t0 = now_mono();
    for (int w = 0; w < workers; w++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0)
            die("fork");
        if (pid == 0) {
            worker_main(w, seed, calls, batch);
            fflush(stdout);
            _exit(0);
        }
    }
    long total = 0;
    int status;
    while (wait(&status) > 0 || errno == EINTR)
        ;
    for (int w = 0; w < workers; w++)
        total += atomic_load(&slots[w].calls);
    kv("total_calls", "%ld", total);
    kv("seconds", "%.2f", now_mono() - t0);
    kv("alive", "%d", 1);
    return 0;
}
