/* Attacks on the systrap platform's own machinery (platform/systrap): the stub's
 * signal handler, whose few syscall instructions the seccomp filters let through,
 * and the per-thread region (ucontext, state word) the handler and the Sentry share.
 *
 * Usage: systrap ATTACK HANDLER SITE_WRITE SITE_FUTEX SITE_EXIT SITE_SIGRETURN
 *                REGIONS_START REGION_SIZE FS_OFF [CHILD_SECONDS
 *                [TRAMPOLINE TRAMPOLINE_END TABLE_ADDR TABLE_SIZE]]
 * (addresses and offsets from pyvisor/sentry/platform/systrap/stub.py, region.py and
 * trampolines.py).  Each attack runs in a forked child (its own stub process); the
 * parent reports the child's status, then its own getpid and raw getpid (1: the
 * Sentry still serves it).
 */
#include "sec.h"
#include <pthread.h>
#include <setjmp.h>
#include <stdint.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <asm/prctl.h>
#include <sys/time.h>
#include <sys/wait.h>

static unsigned long handler, site_write, site_futex, site_exit, site_sigreturn;
static unsigned long regions, region_size, fs_off;
static unsigned long trampoline, trampoline_end, table_addr, table_size;
static const char *which;

/* What the handler's tail reads through rbx when we jump into it: a region of our own
 * with state RUN (2), so it copies registers into this buffer's frame, loads fs/gs
 * base from it (ours) and `ret`s to the address we pushed. */
static unsigned char fake[65536] __attribute__((aligned(65536)));

static sigjmp_buf jb;
static volatile long trap_rax;

static void on_trap(int sig, siginfo_t *si, void *ucv)
{
    ucontext_t *uc = ucv;
    (void)si;
    trap_rax = uc->uc_mcontext.gregs[REG_RAX];
    siglongjmp(jb, sig);
}

static void handle(int sig, void (*fn)(int, siginfo_t *, void *))
{
    struct sigaction sa = {0};
    sa.sa_sigaction = fn;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(sig, &sa, NULL);
}

/* Jumps to `site` (a syscall instruction of the handler) with rax=nr and the given
 * arguments; the handler's tail returns here (write and futex sites).  Sites followed
 * by ud2 (exit, rt_sigreturn) come back as SIGILL: on_trap reads rax. */
static void jump_site(unsigned long site, long nr, long a0, long a1, long a2)
{
    __asm__ volatile("sub $256, %%rsp\n\t"
                     "mov %[fk], %%rbx\n\t"
                     "lea 1f(%%rip), %%rcx\n\t"
                     "push %%rcx\n\t"
                     "xor %%r10d, %%r10d\n\t"
                     "jmp *%[site]\n\t"
                     "1:\n\t"
                     "add $256, %%rsp\n\t"
                     : "+a"(nr), "+D"(a0), "+S"(a1), "+d"(a2)
                     : [fk] "r"(fake), [site] "r"(site)
                     : "rbx", "rcx", "r8", "r9", "r10", "r11", "memory", "cc");
}

/* jump_site for a site followed by ud2: returns rax after the syscall. */
static long jump_site_rax(unsigned long site, long nr, long a0, long a1, long a2)
{
    trap_rax = -99999;
    handle(SIGILL, on_trap);
    handle(SIGSEGV, on_trap);
    if (sigsetjmp(jb, 1) == 0)
        jump_site(site, nr, a0, a1, a2);
    return trap_rax;
}

static long raw_getpid(void)
{
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(39L) : "rcx", "r11", "memory");
    return r;
}

static void spin_forever(void)
{
    for (;;)
        __asm__ volatile("" ::: "memory");
}

static void getpid_then_spin(void)
{
    raw_getpid();
    spin_forever();
}

/* rt_sigreturn through the handler's own instruction with a frame we wrote: rip and
 * rsp ours, the host signal mask `mask`, the altstack `ss`. */
static void forged_sigreturn(void (*rip)(void), unsigned long mask, stack_t ss)
{
    static char stack[65536] __attribute__((aligned(16)));
    static struct { char *pretcode; ucontext_t uc; siginfo_t info; } frame
        __attribute__((aligned(64)));
    memset(&frame, 0, sizeof frame);
    frame.uc.uc_flags = 2 | 4;           /* UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS */
    frame.uc.uc_stack = ss;
    greg_t *g = frame.uc.uc_mcontext.gregs;
    g[REG_RIP] = (greg_t)rip;
    g[REG_RSP] = (greg_t)(stack + sizeof stack - 8);
    g[REG_EFL] = 0x202;
    g[REG_CSGSFS] = 0x33 | (0x2bUL << 48);
    frame.uc.uc_mcontext.fpregs = NULL;  /* FPU to its initial state */
    memcpy(&frame.uc.uc_sigmask, &mask, sizeof mask);
    __asm__ volatile("mov %0, %%rsp\n\t"
                     "mov $15, %%eax\n\t"
                     "jmp *%1"
                     : : "r"((char *)&frame + 8), "r"(handler + site_sigreturn) : "rax", "memory");
    __builtin_unreachable();
}

/* Regions mapped in this process: probed with loads (the host maps them; the
 * Sentry's memory map does not list them). */
static int probe_ok;
static void on_probe(int sig, siginfo_t *si, void *uc)
{
    (void)si; (void)uc;
    siglongjmp(jb, sig);
}

static int find_regions(unsigned long *out, int max)
{
    int n = 0;
    handle(SIGSEGV, on_probe);
    handle(SIGBUS, on_probe);
    for (int i = 0; i < 512 && n < max; i++) {
        volatile unsigned char *p = (unsigned char *)(regions + i * region_size);
        probe_ok = 0;
        if (sigsetjmp(jb, 1) == 0) {
            (void)*p;
            probe_ok = 1;
        }
        if (probe_ok)
            out[n++] = (unsigned long)p;
    }
    signal(SIGSEGV, SIG_DFL);
    signal(SIGBUS, SIG_DFL);
    return n;
}

static volatile int scribbling = 1;
static unsigned long found[64];
static int nfound;

static void *scribbler(void *arg)
{
    (void)arg;
    unsigned long x = 88172645463325252UL;
    while (scribbling) {
        for (int i = 0; i < nfound; i++) {
            unsigned long *w = (unsigned long *)found[i];
            for (unsigned long j = 0; j < region_size / 8; j += 7) {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                w[j] = x;
            }
            ((volatile uint32_t *)w)[0] = 1;     /* STOPPED, to be believed */
        }
    }
    return NULL;
}

/* -- the trampolines (syscall-site patching) ---------------------------------------- */

/* A `mov $39,%eax; syscall` site: patched once it keeps trapping (with patching on). */
extern char tsite_at[];
__attribute__((noinline)) static long tsite(void)
{
    long r;
    __asm__ volatile(".globl tsite_at\ntsite_at:\n\tmov $39, %%eax\n\tsyscall"
                     : "=a"(r) : : "rcx", "r11", "memory");
    return r;
}

static int patched(void)
{
    return (unsigned char)tsite_at[0] == 0xff;
}

/* Runs fn in a grandchild that a 40 ms timer ends if it hangs; its wait status. */
static int in_grandchild(void (*fn)(unsigned long), unsigned long arg)
{
    pid_t c = fork();
    if (c == 0) {
        struct itimerval it = {{0, 0}, {0, 40000}};
        setitimer(ITIMER_REAL, &it, NULL);
        fn(arg);
        _exit(0);
    }
    int st = 0;
    waitpid(c, &st, 0);
    return st;
}

/* Jump to `target` with every register hostile: rsp garbage, rcx a huge slot index,
 * rbx a region-like buffer of ours (state RUN), the rest a pattern. */
static void jump_hostile(unsigned long target)
{
    *(uint32_t *)fake = 2;
    __asm__ volatile("mov %0, %%r15\n\t"
                     "mov %1, %%rbx\n\t"
                     "mov $0x4141414141414141, %%rax\n\t"
                     "mov $0x0004141414141414, %%rcx\n\t"
                     "mov %%rax, %%rdx\n\tmov %%rax, %%rsi\n\tmov %%rax, %%rdi\n\t"
                     "mov %%rax, %%r8\n\tmov %%rax, %%r9\n\tmov %%rax, %%r10\n\t"
                     "mov %%rax, %%r11\n\tmov %%rax, %%r12\n\tmov %%rax, %%r13\n\t"
                     "mov %%rax, %%rbp\n\t"
                     "mov $0xdead0000, %%rsp\n\t"
                     "jmp *%%r15"
                     : : "r"(target), "r"(fake) : "memory");
    __builtin_unreachable();
}

static void trampoline_jumps(void)
{
    /* Into every fourth byte of the trampoline's common code, in a grandchild each. */
    for (int i = 0; i < 10; i++)
        tsite();
    int n = 0, ended = 0, sig = 0, exited = 0;
    for (unsigned long off = 0; trampoline + off < trampoline_end; off += 4, n++) {
        int st = in_grandchild(jump_hostile, trampoline + off);
        ended++;
        if (WIFSIGNALED(st))
            sig++;
        else if (WIFEXITED(st))
            exited++;
    }
    kv("jumps", "%d", n);
    kv("ended", "%d", ended);
    kv("by_signal", "%d", sig);
    kv("exited", "%d", exited);
    kv("site_after", "%d", tsite() == getpid());
    kv("getpid_after", "%d", (int)getpid());
}

static void write_code(const unsigned char *bytes, int n)
{
    unsigned long page = (unsigned long)tsite_at & ~0xfffUL;
    unsigned long len = ((unsigned long)tsite_at + n + 0xfff - page) & ~0xfffUL;
    mprotect((void *)page, len, PROT_READ | PROT_WRITE | PROT_EXEC);
    memcpy(tsite_at, bytes, n);
    mprotect((void *)page, len, PROT_READ | PROT_EXEC);
}

static void call_tsite(unsigned long unused)
{
    (void)unused;
    tsite();
}

static void overwrite_site(void)
{
    /* The program rewrites its patched site: back to the original instructions (the
     * site works as written), then into a jump through a slot never assigned (its
     * trampoline finds no site: the caller dies of a signal, nothing else). */
    for (int i = 0; i < 10; i++)
        tsite();
    kv("patched", "%d", patched());
    static const unsigned char orig[7] = {0xb8, 39, 0, 0, 0, 0x0f, 0x05};
    write_code(orig, 7);
    kv("restored_ok", "%d", tsite() == getpid() && tsite() == getpid());
    unsigned char forged[7] = {0xff, 0x24, 0x25};
    uint32_t slot = (uint32_t)(table_addr + 8 * 400);
    memcpy(forged + 3, &slot, 4);
    write_code(forged, 7);
    int st = in_grandchild(call_tsite, 0);
    status_kv("forged_slot", st);
    write_code(orig, 7);
    kv("site_after", "%d", tsite() == getpid());
    kv("getpid_after", "%d", (int)getpid());
}

static void store_table(unsigned long unused)
{
    (void)unused;
    *(volatile uint64_t *)table_addr = (uint64_t)spin_forever;
}

static void table_attacks(void)
{
    /* The trampoline table lies below the lowest address mm maps: the program can
     * neither write it, nor make it writable, nor unmap or replace it, even with calls
     * on ranges around it that hold mappings of its own. */
    for (int i = 0; i < 10; i++)
        tsite();
    kv("patched", "%d", patched());
    status_kv("store", in_grandchild(store_table, 0));
    res("mprotect", mprotect((void *)table_addr, table_size, PROT_READ | PROT_WRITE));
    void *m = mmap((void *)table_addr, table_size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    kv("mmap_fixed", "%d", m == MAP_FAILED ? -1 : 0);
    int fd = open("/proc/self/mem", O_RDWR);
    long w = fd < 0 ? -1 : pwrite(fd, "\\xcc\\xcc\\xcc\\xcc", 4, (off_t)table_addr);
    kv("pwrite_self_mem", "%ld", w);
    /* A page of ours at 0x10000, then calls over [0, 0x20000). */
    void *low = mmap((void *)0x10000, 4096, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    kv("low_page", "%d", low == MAP_FAILED ? -1 : 0);
    res("mprotect_around", mprotect((void *)0, 0x20000, PROT_READ | PROT_WRITE));
    res("madvise_around", madvise((void *)0, 0x20000, MADV_DONTNEED));
    res("munmap_around", munmap((void *)0, 0x20000));
    int ok = 1;
    for (int i = 0; i < 20; i++)
        ok &= tsite() == getpid();
    kv("site_after", "%d", ok);
    kv("getpid_after", "%d", (int)getpid());
}

static unsigned long rdgsbase(void)
{
    unsigned long v;
    __asm__ volatile("rdgsbase %0" : "=r"(v));
    return v;
}

static void wrgsbase(unsigned long v)
{
    __asm__ volatile("wrgsbase %0" : : "r"(v) : "memory");
}

static void site_with_gs(unsigned long gs)
{
    wrgsbase(gs);
    tsite();
    wrgsbase(0);
}

static int pipefd[2];
static void *blocked_reader(void *arg)
{
    (void)arg;
    char c;
    read(pipefd[0], &c, 1);
    return NULL;
}

static void gs_regions(void)
{
    /* The gs base tells a trampoline its thread's region.  Set by the program (the
     * wrgsbase instruction): garbage (the trampoline falls back to a trapping syscall),
     * a region address of no thread of this process (a fault in the stub: the caller
     * dies), the region of a sibling blocked in read() (its state is this process's to
     * scribble on anyway): the Sentry goes on serving. */
    for (int i = 0; i < 10; i++)
        tsite();
    kv("patched", "%d", patched());
    unsigned long own = rdgsbase();
    kv("gs_is_region", "%d", own >= regions && own < regions + 8192 * region_size);
    wrgsbase(0x414141410000UL);
    long r = tsite();
    wrgsbase(own);
    kv("garbage_gs_getpid", "%d", r == getpid());
    status_kv("foreign_region", in_grandchild(site_with_gs, regions + 8000 * region_size));
    if (pipe(pipefd))
        die("pipe");
    pthread_t th;
    pthread_create(&th, NULL, blocked_reader, NULL);
    usleep(50000);
    nfound = find_regions(found, 64);
    kv("regions", "%d", nfound);
    for (int i = 0; i < nfound; i++) {
        if (found[i] == own)
            continue;
        wrgsbase(found[i]);
        tsite();
        wrgsbase(own);
    }
    write(pipefd[1], "x", 1);
    kv("getpid_after", "%d", (int)getpid());
}

static void child_main(void)
{
    const char *a = which;
    long fs = 0;
    syscall(SYS_arch_prctl, ARCH_GET_FS, &fs);
    *(uint32_t *)fake = 2;
    memcpy(fake + fs_off, &fs, 8);                 /* fs base; gs base (next) stays 0 */
    if (!strcmp(a, "sites")) {
        /* Every syscall instruction of the handler, with hostile registers. */
        int p[2];
        if (pipe(p))
            die("pipe");
        const char msg[] = "through-the-handler";
        /* write site: write(pipe) is not the wake fd: trapped, served by the Sentry. */
        jump_site(handler + site_write, 1, p[1], (long)msg, sizeof msg - 1);
        /* write site: fd 3 is the memory file's number in the stub: trapped too. */
        jump_site(handler + site_write, 1, 3, (long)msg, sizeof msg - 1);
        char buf[64] = {0};
        fcntl(p[0], F_SETFL, O_NONBLOCK);
        long n = read(p[0], buf, sizeof buf - 1);
        kv("pipe_read", "%ld", n);
        kv("pipe_data", "%s", n > 0 ? buf : "");
        /* futex site: FUTEX_WAKE / FUTEX_REQUEUE are not FUTEX_WAIT: trapped. */
        static uint32_t word = 5;
        jump_site(handler + site_futex, 202, (long)&word, 1 /* WAKE */, 1);
        jump_site(handler + site_futex, 202, (long)&word, 3 /* REQUEUE */, 1);
        /* futex site: FUTEX_WAIT on a word that differs: the host says EAGAIN. */
        jump_site(handler + site_futex, 202, (long)&word, 0, 6);
        /* getpid at the exit and rt_sigreturn sites: trapped, the sandbox's pid. */
        kv("exit_site_getpid", "%ld", jump_site_rax(handler + site_exit, 39, 0, 0, 0));
        kv("sigreturn_site_getpid", "%ld",
           jump_site_rax(handler + site_sigreturn, 39, 0, 0, 0));
        /* kill(getpid(), 0) and open at a site: trapped, Sentry answers. */
        kv("exit_site_kill", "%ld",
           jump_site_rax(handler + site_exit, 62, getpid(), 0, 0));
        kv("sigreturn_site_open", "%ld",
           jump_site_rax(handler + site_sigreturn, 2, (long)"/proc/self/exe", 0, 0));
        /* The eventfd write itself is allowed: a spurious wake-up of the Sentry,
         * even with the counter near its maximum. */
        static uint64_t big = 0xfffffffffffffffeUL;
        for (int i = 0; i < 200; i++)
            jump_site(handler + site_write, 1, 6, (long)&big, 8);
        kv("getpid_after", "%d", (int)getpid());
        kv("raw_getpid_after", "%ld", raw_getpid());
    } else if (!strcmp(a, "exit_group_site")) {
        /* exit_group at the exit site: trapped, the Sentry ends the process (77). */
        jump_site_rax(handler + site_exit, 231, 77, 0, 0);
        kv("survived", "1");
    } else if (!strcmp(a, "exit_site")) {
        /* exit(0) at the exit site is allowed: the host thread ends under the
         * Sentry, which sees it when it next asks the thread to stop. */
        jump_site_rax(handler + site_exit, 60, 0, 0, 0);
        kv("survived", "1");
    } else if (!strcmp(a, "block_all_spin")) {
        /* A forged frame blocks every host signal (the interrupt too), then spins. */
        stack_t ss = {.ss_flags = SS_DISABLE};
        forged_sigreturn(spin_forever, ~0UL, ss);
    } else if (!strcmp(a, "block_all_syscall")) {
        /* The same, then a syscall: SIGSYS is blocked, so the host kills the stub. */
        stack_t ss = {.ss_flags = SS_DISABLE};
        forged_sigreturn(getpid_then_spin, ~0UL, ss);
    } else if (!strcmp(a, "move_altstack")) {
        /* A forged frame moves the altstack into our own memory, then a syscall:
         * the handler runs on memory the Sentry does not read. */
        static char alt[1 << 17] __attribute__((aligned(16384)));
        stack_t ss = {.ss_sp = alt, .ss_size = sizeof alt, .ss_flags = 0};
        forged_sigreturn(getpid_then_spin, 0, ss);
    } else if (!strcmp(a, "find_regions")) {
        nfound = find_regions(found, 64);
        kv("regions", "%d", nfound);
        kv("getpid_after", "%d", (int)getpid());
    } else if (!strcmp(a, "scribble")) {
        /* A thread overwrites every region of the process (ucontexts, state words,
         * fs base) with noise while the main thread makes syscalls. */
        nfound = find_regions(found, 64);
        kv("regions", "%d", nfound);
        pthread_t th;
        pthread_create(&th, NULL, scribbler, NULL);
        double end = now_mono() + 0.5;
        long calls = 0;
        while (now_mono() < end) {
            raw_getpid();
            calls++;
        }
        scribbling = 0;
        pthread_join(th, NULL);
        kv("calls", "%ld", calls);
    } else if (!strcmp(a, "tamper")) {
        /* The Sentry's mm refuses the stub page and the regions (above its top). */
        nfound = find_regions(found, 64);
        unsigned long r = nfound ? found[0] : regions;
        kv("regions", "%d", nfound);
        void *m = mmap((void *)r, region_size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        kv("mmap_fixed", "%d", m == MAP_FAILED ? -1 : 0);
        res("munmap", munmap((void *)r, region_size));
        res("mprotect", mprotect((void *)r, region_size, PROT_READ));
        res("madvise", madvise((void *)r, region_size, MADV_DONTNEED));
        void *src = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        void *mr = mremap(src, 4096, 4096, MREMAP_MAYMOVE | MREMAP_FIXED, (void *)r);
        kv("mremap_onto", "%d", mr == MAP_FAILED ? -1 : 0);
        res("munmap_handler", munmap((void *)(handler & ~0xfffUL), 4096));
        int fd = open("/proc/self/mem", O_RDWR);
        long w = fd < 0 ? -1 : pwrite(fd, "\xcc\xcc", 2, (off_t)handler);
        kv("pwrite_self_mem", "%ld", w);
        unsigned long again[64];
        kv("regions_after", "%d", find_regions(again, 64));
        kv("getpid_after", "%d", (int)getpid());
    } else if (!strcmp(a, "trampoline_jumps")) {
        trampoline_jumps();
    } else if (!strcmp(a, "overwrite_site")) {
        overwrite_site();
    } else if (!strcmp(a, "table")) {
        table_attacks();
    } else if (!strcmp(a, "gs_regions")) {
        gs_regions();
    } else if (!strcmp(a, "raise_sigsys")) {
        /* SIGSYS sent by ourselves is the Sentry's signal, not the stub's trap. */
        kill(getpid(), SIGSYS);
        kv("survived", "1");
    } else {
        fprintf(stderr, "unknown attack %s\n", a);
        _exit(2);
    }
}

int main(int argc, char **argv)
{
    USAGE(argc, 10, "systrap ATTACK HANDLER SITE_WRITE SITE_FUTEX SITE_EXIT SITE_SIGRETURN "
                    "REGIONS_START REGION_SIZE FS_OFF [CHILD_SECONDS]");
    which = argv[1];
    handler = strtoul(argv[2], NULL, 0);
    site_write = strtoul(argv[3], NULL, 0);
    site_futex = strtoul(argv[4], NULL, 0);
    site_exit = strtoul(argv[5], NULL, 0);
    site_sigreturn = strtoul(argv[6], NULL, 0);
    regions = strtoul(argv[7], NULL, 0);
    region_size = strtoul(argv[8], NULL, 0);
    fs_off = strtoul(argv[9], NULL, 0);
    double secs = argc > 10 ? atof(argv[10]) : 20;
    if (argc > 14) {
        trampoline = strtoul(argv[11], NULL, 0);
        trampoline_end = strtoul(argv[12], NULL, 0);
        table_addr = strtoul(argv[13], NULL, 0);
        table_size = strtoul(argv[14], NULL, 0);
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        child_main();
        fflush(stdout);
        _exit(0);
    }
    double t0 = now_mono();
    int timed_out = 0;
    int status = wait_deadline(pid, secs, &timed_out);
    kv("child_timeout", "%d", timed_out);
    kv("child_seconds", "%.1f", now_mono() - t0);
    status_kv("status", status);
    kv("after_getpid", "%d", (int)getpid());
    kv("after_raw_getpid", "%ld", raw_getpid());
    return 0;
}
