/* The syscall gate: other ways into the kernel than a 64-bit `syscall`,
 * syscalls from code the Sentry has not seen, and signals that might shake
 * off the tracer.
 *
 * Usage: gate ATTACK [ARGS...]
 * Each attack runs in a forked child (it may die of a signal); the parent
 * reports the child's status as `status=exit:N|signal:N` and its own getpid
 * afterwards (`after_getpid`: in the sandbox, 1).
 */
#include "sec.h"
#include <setjmp.h>
#include <stdint.h>
#include <sys/mman.h>
#include <ucontext.h>

/* ---- 32-bit code segment trampolines ---------------------------------- */

/* A page below 2 GiB holding: a 64-bit entry that switches to a low stack
 * and far-returns into 32-bit code (selector 0x23); the 32-bit code, which
 * runs INSN (int 0x80 / syscall / sysenter) with eax=NR, ebx=ARG, stores
 * eax and far-returns to 64-bit code (selector 0x33); and that 64-bit exit,
 * which restores the stack and the callee-saved registers. */
static unsigned char *low_page(void)
{
    void *want = (void *)0x30000000;
    unsigned char *p = mmap(want, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (p == MAP_FAILED)
        p = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
    if (p == MAP_FAILED)
        die("mmap below 2 GiB");
    return p;
}

static void put32(unsigned char **c, uint32_t v)
{
    memcpy(*c, &v, 4);
    *c += 4;
}

static void emit(unsigned char **c, const char *bytes, int n)
{
    memcpy(*c, bytes, n);
    *c += n;
}

/* Returns eax as left by the 32-bit code (0xdeadbeef if it never stored). */
static long compat_call(uint32_t nr, uint32_t arg, const char *insn)
{
    unsigned char *p = low_page();
    uint32_t base = (uint32_t)(uintptr_t)p;
    unsigned char *c = p;
    /* 64-bit entry */
    emit(&c, "\x53\x55\x41\x54\x41\x55\x41\x56\x41\x57", 10);  /* push rbx..r15 */
    emit(&c, "\x48\x89\x24\x25", 4); put32(&c, base + 0x800);  /* mov [save], rsp */
    emit(&c, "\xbc", 1); put32(&c, base + 0xf00);              /* mov esp, low */
    emit(&c, "\x6a\x23", 2);                                    /* push 0x23 */
    emit(&c, "\x68", 1); put32(&c, base + 0x100);              /* push code32 */
    emit(&c, "\x48\xcb", 2);                                    /* retfq */
    /* 32-bit code */
    c = p + 0x100;
    emit(&c, "\x16\x1f\x16\x07", 4);                            /* ds = es = ss */
    emit(&c, "\xb8", 1); put32(&c, nr);                         /* mov eax, nr */
    emit(&c, "\xbb", 1); put32(&c, arg);                        /* mov ebx, arg */
    emit(&c, insn, 2);                                          /* int 0x80 / ... */
    emit(&c, "\xa3", 1); put32(&c, base + 0x808);               /* mov [res], eax */
    emit(&c, "\x6a\x33", 2);                                    /* push 0x33 */
    emit(&c, "\x68", 1); put32(&c, base + 0x200);              /* push code64 */
    emit(&c, "\xcb", 1);                                        /* retf */
    /* 64-bit exit */
    c = p + 0x200;
    emit(&c, "\x48\x8b\x24\x25", 4); put32(&c, base + 0x800);  /* mov rsp, [save] */
    emit(&c, "\x41\x5f\x41\x5e\x41\x5d\x41\x5c\x5d\x5b", 10);  /* pop r15..rbx */
    emit(&c, "\xc3", 1);                                        /* ret */
    *(volatile uint32_t *)(p + 0x808) = 0xdeadbeef;
    __asm__ volatile("sub $128, %%rsp\n\t"
                     "call *%0\n\t"
                     "add $128, %%rsp"
                     :
                     : "r"(p)
                     : "rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11",
                       "memory", "cc");
    return (long)(int32_t)*(volatile uint32_t *)(p + 0x808);
}

/* ---- 64-bit mode legacy entries --------------------------------------- */

static long int80(long nr, long arg)
{
    long ret;
    __asm__ volatile("int $0x80"
                     : "=a"(ret)
                     : "a"(nr), "b"(arg)
                     : "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "memory", "cc");
    return ret;
}

static long sysenter(long nr, long arg)
{
    long ret;
    __asm__ volatile("push %%rbp\n\t"
                     "mov %%rsp, %%rbp\n\t"
                     "sysenter\n\t"
                     "pop %%rbp"
                     : "=a"(ret)
                     : "a"(nr), "b"(arg)
                     : "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "memory", "cc");
    return ret;
}

/* ---- code written at run time ----------------------------------------- */

typedef long (*code_fn)(void);

static long call_code(void *code, long nr)
{
    long ret;
    __asm__ volatile("sub $128, %%rsp\n\t"
                     "call *%1\n\t"
                     "add $128, %%rsp"
                     : "=a"(ret)
                     : "r"(code), "a"(nr)
                     : "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "memory", "cc");
    return ret;
}

/* ---- signals -------------------------------------------------------------- */

static volatile int traps;
static volatile long trap_rax;
static volatile int single_steps;
static sigjmp_buf jb;

static void on_trap(int sig, siginfo_t *si, void *uc_)
{
    ucontext_t *uc = uc_;
    traps++;
    trap_rax = uc->uc_mcontext.gregs[REG_RAX];
    if (uc->uc_mcontext.gregs[REG_EFL] & 0x100) {
        if (++single_steps >= 5)
            uc->uc_mcontext.gregs[REG_EFL] &= ~0x100L;
    }
}

static void on_trap_jump(int sig, siginfo_t *si, void *uc_)
{
    ucontext_t *uc = uc_;
    trap_rax = uc->uc_mcontext.gregs[REG_RAX];
    siglongjmp(jb, sig);
}

static void handle(int sig, void (*fn)(int, siginfo_t *, void *))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = fn;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(sig, &sa, NULL);
}

static void set_tf(void)
{
    __asm__ volatile("pushf\n\torq $0x100, (%%rsp)\n\tpopf" ::: "memory", "cc");
}

/* The child of `signals`: traps and stops of every kind, then a syscall. */
static void signal_games(void)
{
    handle(SIGTRAP, on_trap);
    raise(SIGTRAP);
    __asm__ volatile("int3");
    __asm__ volatile(".byte 0xcd, 0x03");   /* int $3, long form */
    kv("traps_int3", "%d", traps);
    /* Single-step, five traps, across a raw syscall. */
    long ret;
    set_tf();
    __asm__ volatile("nop\n\tnop\n\tmov $39, %%eax\n\tsyscall\n\tnop\n\tnop\n\tnop"
                     : "=a"(ret) : : "rcx", "r11", "memory");
    kv("single_steps", "%d", single_steps);
    kv("tf_syscall_getpid", "%ld", ret);
    union sigval v = {0};
    sigqueue(getpid(), SIGTRAP, v);
    kv("traps_total", "%d", traps);
    /* Stop ourselves; the parent continues us. */
    kill(getpid(), SIGSTOP);
    raise(SIGTSTP);
    syscall(SYS_tgkill, getpid(), (long)syscall(SYS_gettid), SIGCONT);
    kv("child_getpid_after", "%d", (int)getpid());
}

static pid_t child_pid;

static int run_child(void (*fn)(void), double secs)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        fn();
        fflush(stdout);
        _exit(0);
    }
    child_pid = pid;
    double end = now_mono() + secs;
    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WUNTRACED | WNOHANG);
        if (r == pid && WIFSTOPPED(status)) {
            kv("child_stopped_by", "%d", WSTOPSIG(status));
            kill(pid, SIGCONT);
            continue;
        }
        if (r == pid)
            break;
        if (now_mono() > end) {
            kv("child_timeout", "1");
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            break;
        }
        usleep(2000);
    }
    return status;
}

static long arg_addr;
static const char *which;

static void child_main(void)
{
    const char *a = which;
    if (!strcmp(a, "int80_getpid")) {
        kv("getpid", "%d", (int)getpid());
        rawres("ret", int80(20, 0));
    } else if (!strcmp(a, "int80_exit")) {
        rawres("ret", int80(1, 42));
    } else if (!strcmp(a, "int80_abi_confusion")) {
        /* 60 is exit in the 64-bit ABI (umask in the 32-bit one); 39 is
         * getpid in the 64-bit ABI (mkdir in the 32-bit one). */
        rawres("ret60", int80(60, 42));
        rawres("ret39", int80(39, 0));
        kv("getpid", "%d", (int)getpid());
    } else if (!strcmp(a, "sysenter_exit")) {
        rawres("ret", sysenter(1, 42));
    } else if (!strcmp(a, "sysenter_getpid")) {
        kv("getpid", "%d", (int)getpid());
        rawres("ret", sysenter(20, 0));
    } else if (!strcmp(a, "compat_int80_getpid")) {
        kv("getpid", "%d", (int)getpid());
        rawres("ret", compat_call(20, 0, "\xcd\x80"));
    } else if (!strcmp(a, "compat_int80_exit")) {
        rawres("ret", compat_call(1, 42, "\xcd\x80"));
    } else if (!strcmp(a, "compat_syscall_getpid")) {
        kv("getpid", "%d", (int)getpid());
        rawres("ret", compat_call(20, 0, "\x0f\x05"));
    } else if (!strcmp(a, "compat_syscall_exit")) {
        rawres("ret", compat_call(1, 42, "\x0f\x05"));
    } else if (!strcmp(a, "compat_sysenter_exit")) {
        rawres("ret", compat_call(1, 42, "\x0f\x34"));
    } else if (!strcmp(a, "rwx")) {
        /* Fresh code: RWX page; W then X (mprotect); and a memfd mapped twice. */
        kv("getpid", "%d", (int)getpid());
        unsigned char *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
                                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        memcpy(m + 100, "\x0f\x05\xc3", 3);
        rawres("rwx_getpid", call_code(m + 100, 39));
        unsigned char *w = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        memcpy(w + 4093, "\x0f\x05\xc3", 3);       /* the last bytes of the page */
        mprotect(w, 4096, PROT_READ | PROT_EXEC);
        rawres("wx_getpid", call_code(w + 4093, 39));
        int fd = memfd_create("code", 0);
        ftruncate(fd, 4096);
        unsigned char *rw = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        unsigned char *rx = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_SHARED, fd, 0);
        memcpy(rw, "\x0f\x05\xc3", 3);
        rawres("memfd_getpid", call_code(rx, 39));
        /* The same bytes rewritten between calls: syscall, then int 0x80. */
        memcpy(rw, "\xcd\x80\xc3", 3);
        rawres("rewritten_int80", call_code(rx, 39));
        memcpy(m + 100, "\xcd\x80\xc3", 3);
        rawres("rewritten_rwx_int80", call_code(m + 100, 39));
    } else if (!strcmp(a, "stubpage")) {
        /* Jump to the Sentry's injection point (`syscall; int3`) with a
         * syscall of ours: it must be served as an application syscall. */
        kv("getpid", "%d", (int)getpid());
        handle(SIGTRAP, on_trap_jump);
        handle(SIGSEGV, on_trap_jump);
        int sig = sigsetjmp(jb, 1);
        if (sig == 0) {
            __asm__ volatile("mov %0, %%rdx\n\tmov $39, %%eax\n\tjmp *%%rdx"
                             : : "r"(arg_addr) : "rax", "rdx", "memory");
        }
        kv("stub_signal", "%d", sig);
        kv("stub_rax", "%ld", trap_rax);
        kv("getpid_after", "%d", (int)getpid());
    } else if (!strcmp(a, "stub_tamper")) {
        /* Try to unmap, remap, write or re-protect the stub page. */
        unsigned long stub = arg_addr & ~0xfffUL;
        unsigned char before[16];
        memcpy(before, (void *)arg_addr, 16);
        void *r = mmap((void *)stub, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        res("mmap_fixed", r == MAP_FAILED ? -1 : 0);
        r = mmap((void *)(stub - 4096), 8192, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        res("mmap_fixed_overlap", r == MAP_FAILED ? -1 : 0);
        r = mmap((void *)stub, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        kv("mmap_hint_is_stub", "%d", r == (void *)stub);
        res("mprotect", mprotect((void *)stub, 4096, PROT_READ | PROT_WRITE | PROT_EXEC));
        res("madvise", madvise((void *)stub, 4096, MADV_DONTNEED));
        void *src = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                         -1, 0);
        memset(src, 0xcc, 4096);
        r = mremap(src, 4096, 4096, MREMAP_MAYMOVE | MREMAP_FIXED, (void *)stub);
        res("mremap_onto", r == MAP_FAILED ? -1 : 0);
        int fd = open("/proc/self/mem", O_RDWR);
        res("open_self_mem", fd);
        if (fd >= 0)
            res("pwrite_self_mem", pwrite(fd, "\xcc\xcc", 2, (off_t)arg_addr));
        res("munmap", munmap((void *)stub, 4096));
        res("shmat", (long)syscall(SYS_shmat, 0, (void *)stub, 0));
        /* The page and the platform still work: fork uses the injection
         * point of this address space. */
        kv("stub_unchanged", "%d", !memcmp(before, (void *)arg_addr, 16));
        pid_t pid = fork();
        if (pid == 0)
            _exit(7);
        int status = 0;
        waitpid(pid, &status, 0);
        status_kv("fork_after", status);
        kv("getpid_after", "%d", (int)getpid());
    } else if (!strcmp(a, "vsyscall")) {
        /* time(NULL) at the legacy vsyscall page; then gettimeofday. */
        long t = ((long (*)(long *))0xffffffffff600400UL)(NULL);
        kv("vsyscall_time", "%ld", t);
        kv("libc_time", "%ld", (long)time(NULL));
        struct timeval tv = {0, 0};
        long r = ((long (*)(struct timeval *, void *))0xffffffffff600000UL)(&tv, NULL);
        kv("vsyscall_gettimeofday", "%ld", r);
        kv("vsyscall_tv_sec", "%ld", (long)tv.tv_sec);
    } else if (!strcmp(a, "signals")) {
        signal_games();
    } else if (!strcmp(a, "int3_unhandled")) {
        __asm__ volatile("int3");
    } else if (!strcmp(a, "raise_kill")) {
        raise(SIGKILL);
    } else if (!strcmp(a, "stop_then_kill")) {
        /* Parent continues us; we then SIGKILL ourselves from a thread of
         * signals: SIGSTOP, SIGCONT, SIGTRAP (handled), SIGKILL. */
        handle(SIGTRAP, on_trap);
        raise(SIGSTOP);
        raise(SIGTRAP);
        kill(getpid(), SIGKILL);
    } else if (!strcmp(a, "faults")) {
        /* Faults of every kind, each caught and skipped. */
        handle(SIGSEGV, on_trap_jump);
        handle(SIGILL, on_trap_jump);
        handle(SIGFPE, on_trap_jump);
        handle(SIGBUS, on_trap_jump);
        int sig;
        if ((sig = sigsetjmp(jb, 1)) == 0)
            __asm__ volatile("ud2");
        kv("ud2", "%d", sig);
        if ((sig = sigsetjmp(jb, 1)) == 0)
            __asm__ volatile("hlt");
        kv("hlt", "%d", sig);
        if ((sig = sigsetjmp(jb, 1)) == 0)
            __asm__ volatile("cli");
        kv("cli", "%d", sig);
        if ((sig = sigsetjmp(jb, 1)) == 0)
            __asm__ volatile("xor %%edx, %%edx\n\tmov $1, %%eax\n\txor %%ecx, %%ecx\n\t"
                             "div %%ecx" ::: "rax", "rcx", "rdx", "cc");
        kv("div0", "%d", sig);
        if ((sig = sigsetjmp(jb, 1)) == 0)
            *(volatile int *)0xffff800000000000UL = 1;   /* kernel address */
        kv("kernel_write", "%d", sig);
        if ((sig = sigsetjmp(jb, 1)) == 0)
            __asm__ volatile("mov %%cr0, %%rax" ::: "rax");
        kv("mov_cr0", "%d", sig);
        if ((sig = sigsetjmp(jb, 1)) == 0)
            __asm__ volatile("in $0x70, %%al" ::: "rax");
        kv("in_port", "%d", sig);
        kv("getpid_after", "%d", (int)getpid());
    } else {
        fprintf(stderr, "unknown attack %s\n", a);
        _exit(2);
    }
}

int main(int argc, char **argv)
{
    USAGE(argc, 2, "gate ATTACK [ADDR]");
    which = argv[1];
    arg_addr = argc > 2 ? (long)strtoul(argv[2], NULL, 0) : 0;
    int status = run_child(child_main, 20);
    status_kv("status", status);
    kv("child_pid", "%d", (int)child_pid);
    kv("after_getpid", "%d", (int)getpid());
    long raw;
    __asm__ volatile("syscall" : "=a"(raw) : "a"(39L) : "rcx", "r11", "memory");
    kv("after_raw_getpid", "%ld", raw);
    return 0;
}
