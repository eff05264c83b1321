/* Syscalls made from `mov $nr,%eax; syscall` sites, the pattern the systrap platform
 * rewrites into a jump to a trampoline (platform/systrap, SECURITY.md *systrap*), under
 * everything that may happen around such a site.  Self-checking, native and sandboxed
 * alike: prints "ok" when every check holds.
 *
 *   registers  every register but rax, rcx, r11 survives; rcx is the return address and
 *              r11 the flags, as the syscall instruction leaves them; arithmetic flags
 *              and DF survive; the red zone below rsp is untouched; rsp may be garbage
 *   signals    a timer signal lands while a thread loops on a site, its handler changes
 *              every xmm register: the loop's xmm8 value survives
 *   restart    a read() at a site blocks, a SA_RESTART signal interrupts it, it restarts
 *              at the site and gets the data written later
 *   threads    four threads loop on their sites at once
 *   fork       a child runs the sites its parent used, then exec's itself to run them
 *   mremap     a site in a page that moves still returns to its new place
 *   gs         with a gs base of its own (arch_prctl(ARCH_SET_GS)), the sites still work
 *              and %gs:0 reads the program's memory
 *
 * `probe`: calls a getpid site a few times, then prints its first byte ("site=b8": as written,
 * "site=ff": rewritten into a jump: what a program that reads its own code sees).
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures;
#define CHECK(c, ...) do { if (!(c)) { failures++; printf("FAIL %s:%d: ", __func__, __LINE__); \
    printf(__VA_ARGS__); printf("\n"); } } while (0)

/* One site per function (noinline: one address each). */
__attribute__((noinline)) static long site_getpid(void) {
    long r;
    __asm__ volatile("mov $39, %%eax\n\tsyscall" : "=a"(r) : : "rcx", "r11", "memory");
    return r;
}

__attribute__((noinline)) static long site_gettid(void) {
    long r;
    __asm__ volatile("mov $186, %%eax\n\tsyscall" : "=a"(r) : : "rcx", "r11", "memory");
    return r;
}

__attribute__((noinline)) static long site_read(long fd, void *buf, long n) {
    long r;
    __asm__ volatile("mov $0, %%eax\n\tsyscall" : "=a"(r) : "D"(fd), "S"(buf), "d"(n)
                     : "rcx", "r11", "memory");
    return r;
}

extern char site_probe_at[];
__attribute__((noinline)) static long site_probe(void) {
    long r;
    __asm__ volatile(".globl site_probe_at\nsite_probe_at:\n\tmov $39, %%eax\n\tsyscall"
                     : "=a"(r) : : "rcx", "r11", "memory");
    return r;
}

/* getpid from a site with every other register set to a pattern, flags set, the red zone
 * filled: what comes back.  rsp_junk: rsp is garbage across the site. */
struct regs_out { uint64_t r[13], rcx, r11, unused[2], ret, retaddr; };

__attribute__((noinline)) static void site_regs(struct regs_out *o, int rsp_junk) {
    __asm__ volatile(
        "push %%rbp\n\t"
        "push %%rbx\n\t"
        "push %%r12\n\t"
        "push %%r13\n\t"
        "push %%r14\n\t"
        "push %%r15\n\t"
        "push %%rdi\n\t"                     /* o */
        "mov %%rsi, %%r15\n\t"               /* rsp_junk */
        "mov $0x1111111111111111, %%rbx\n\t"
        "mov $0x2222222222222222, %%rbp\n\t"
        "mov $0x3333333333333333, %%rdx\n\t"
        "mov $0x4444444444444444, %%rsi\n\t"
        "mov $0x5555555555555555, %%rdi\n\t"
        "mov $0x6666666666666666, %%r8\n\t"
        "mov $0x7777777777777777, %%r9\n\t"
        "mov $0x8888888888888888, %%r10\n\t"
        "mov $0x9999999999999999, %%r12\n\t"
        "mov $0xaaaaaaaaaaaaaaaa, %%r13\n\t"
        "mov $0xbbbbbbbbbbbbbbbb, %%r14\n\t"
        "movq $0x1234, -8(%%rsp)\n\t"        /* the red zone */
        "movq $0x5678, -120(%%rsp)\n\t"
        "test %%r15, %%r15\n\t"
        "jz 1f\n\t"
        "mov $0xdead0000, %%r15\n\t"
        "xchg %%r15, %%rsp\n\t"              /* r15 = the real rsp */
        "1:\n\t"
        "mov $0x7fffffff, %%eax\n\t"
        "add $1, %%eax\n\t"                  /* OF, SF set; CF, ZF clear */
        "stc\n\t"                            /* CF set: flags 0x895 (CF PF AF SF OF) */
        "mov $39, %%eax\n\t"
        "syscall\n\t"
        "retaddr_%=:\n\t"
        "movq %%rcx, %%xmm14\n\t"
        "movq %%r11, %%xmm13\n\t"
        "jnc 2f\n\t"                         /* CF must have survived */
        "jno 2f\n\t"                         /* OF too */
        "jns 2f\n\t"                         /* SF too */
        "jz 2f\n\t"                          /* ZF clear */
        "mov $1, %%ecx\n\t"
        "jmp 3f\n\t"
        "2: xor %%ecx, %%ecx\n\t"
        "3:\n\t"
        "movq %%rcx, %%xmm12\n\t"
        "test %%r15, %%r15\n\t"
        "jz 4f\n\t"
        "mov %%r15, %%rsp\n\t"
        "4:\n\t"
        "cmpq $0x1234, -8(%%rsp)\n\t"
        "jne 5f\n\t"
        "cmpq $0x5678, -120(%%rsp)\n\t"
        "jne 5f\n\t"
        "jmp 6f\n\t"
        "5: pxor %%xmm12, %%xmm12\n\t"             /* red zone changed */
        "6:\n\t"
        "mov (%%rsp), %%rcx\n\t"             /* o */
        "mov %%rbx, 0(%%rcx)\n\t"
        "mov %%rbp, 8(%%rcx)\n\t"
        "mov %%rdx, 16(%%rcx)\n\t"
        "mov %%rsi, 24(%%rcx)\n\t"
        "mov %%rdi, 32(%%rcx)\n\t"
        "mov %%r8, 40(%%rcx)\n\t"
        "mov %%r9, 48(%%rcx)\n\t"
        "mov %%r10, 56(%%rcx)\n\t"
        "mov %%r12, 64(%%rcx)\n\t"
        "mov %%r13, 72(%%rcx)\n\t"
        "mov %%r14, 80(%%rcx)\n\t"
        "movq %%xmm12, 88(%%rcx)\n\t"        /* flags and red zone verdict */
        "movq $0, 96(%%rcx)\n\t"
        "movq %%xmm14, %%rdx\n\t"
        "mov %%rdx, 104(%%rcx)\n\t"          /* rcx after */
        "movq %%xmm13, %%rdx\n\t"
        "mov %%rdx, 112(%%rcx)\n\t"          /* r11 after */
        "mov %%rax, 136(%%rcx)\n\t"          /* the result */
        "lea retaddr_%=(%%rip), %%rdx\n\t"
        "mov %%rdx, 144(%%rcx)\n\t"
        "pop %%rdi\n\t"
        "pop %%r15\n\t"
        "pop %%r14\n\t"
        "pop %%r13\n\t"
        "pop %%r12\n\t"
        "pop %%rbx\n\t"
        "pop %%rbp\n\t"
        : : "D"(o), "S"((long)rsp_junk)
        : "rax", "rcx", "rdx", "r8", "r9", "r10", "r11", "xmm12", "xmm13", "xmm14",
          "memory", "cc");
}

static void check_registers(void) {
    static const uint64_t want[11] = {
        0x1111111111111111, 0x2222222222222222, 0x3333333333333333, 0x4444444444444444,
        0x5555555555555555, 0x6666666666666666, 0x7777777777777777, 0x8888888888888888,
        0x9999999999999999, 0xaaaaaaaaaaaaaaaa, 0xbbbbbbbbbbbbbbbb};
    for (int round = 0; round < 6; round++) {      /* first trap, then the patched site */
        struct regs_out o;
        memset(&o, 0, sizeof o);
        site_regs(&o, round >= 3);
        for (int i = 0; i < 11; i++)
            CHECK(o.r[i] == want[i], "round %d reg %d = %#lx", round, i, (unsigned long)o.r[i]);
        CHECK(o.r[11] == 1, "round %d: flags or red zone changed", round);
        CHECK((long)o.ret == getpid(), "round %d: getpid %ld", round, (long)o.ret);
        CHECK(o.rcx == o.retaddr, "round %d: rcx %#lx, return address %#lx", round,
              (unsigned long)o.rcx, (unsigned long)o.retaddr);
        CHECK((o.r11 & 0xcd5) == 0x895, "round %d: r11 %#lx", round, (unsigned long)o.r11);
    }
}

/* -- signals with FP state -------------------------------------------------------- */
static volatile int ticks;

static void on_tick(int sig) {
    (void)sig;
    volatile double d[16], sum = 0;
    for (int i = 0; i < 16; i++)
        d[i] = i * 3.5 + ticks;
    for (int i = 0; i < 16; i++)
        sum += d[i];
    __asm__ volatile("pxor %%xmm8, %%xmm8\n\tpcmpeqd %%xmm9, %%xmm9" : : : "xmm8", "xmm9");
    ticks++;
}

static void check_signals(void) {
    struct sigaction sa = {.sa_handler = on_tick, .sa_flags = SA_RESTART};
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 200}, {0, 200}};
    setitimer(ITIMER_REAL, &it, NULL);
    uint64_t in = 0x0123456789abcdefULL, out = 0;
    long pid = getpid(), bad = 0;
    for (int i = 0; i < 200000 && ticks < 20; i++) {
        __asm__ volatile("movq %1, %%xmm8\n\t"
                         "mov $39, %%eax\n\tsyscall\n\t"
                         "movq %%xmm8, %0" : "=r"(out) : "r"(in) : "rax", "rcx", "r11",
                         "xmm8", "memory");
        if (out != in)
            bad++;
        if (site_getpid() != pid)
            bad++;
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    signal(SIGALRM, SIG_DFL);
    CHECK(ticks >= 1, "no timer signal arrived");
    CHECK(bad == 0, "%ld xmm8 or getpid mismatches with %d signals", bad, ticks);
}

/* -- a blocking read at a site, restarted ----------------------------------------- */
static void on_alarm(int sig) { (void)sig; ticks++; }

static void check_restart(void) {
    int p[2];
    char buf[8];
    if (pipe(p))
        return;
    for (int i = 0; i < 10; i++) {                /* traps, then the patched site */
        write(p[1], "x", 1);
        CHECK(site_read(p[0], buf, 1) == 1, "read %d", i);
    }
    struct sigaction sa = {.sa_handler = on_alarm, .sa_flags = SA_RESTART};
    sigaction(SIGALRM, &sa, NULL);
    ticks = 0;
    pid_t w = fork();
    if (w == 0) {
        usleep(300000);
        write(p[1], "late", 4);
        _exit(0);
    }
    struct itimerval it = {{0, 0}, {0, 50000}};
    setitimer(ITIMER_REAL, &it, NULL);
    long n = site_read(p[0], buf, 4);
    CHECK(n == 4 && memcmp(buf, "late", 4) == 0, "restarted read = %ld (%s)", n,
          n < 0 ? strerror(-n) : "");
    CHECK(ticks == 1, "%d alarms", ticks);
    waitpid(w, NULL, 0);
    signal(SIGALRM, SIG_DFL);
    close(p[0]);
    close(p[1]);
}

/* -- threads ---------------------------------------------------------------------- */
static void *thread_loop(void *arg) {
    long bad = 0, tid = syscall(SYS_gettid), pid = getpid();
    for (int i = 0; i < 3000; i++)
        if (site_gettid() != tid || site_getpid() != pid)
            bad++;
    *(long *)arg = bad;
    return NULL;
}

static void check_threads(void) {
    pthread_t t[4];
    long bad[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, thread_loop, &bad[i]);
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        CHECK(bad[i] == 0, "thread %d: %ld wrong results", i, bad[i]);
    }
}

/* -- fork and exec ------------------------------------------------------------------ */
static int sites_only(void) {
    long pid = getpid();
    for (int i = 0; i < 100; i++)
        if (site_getpid() != pid || site_gettid() != pid)
            return 1;
    return 0;
}

static void check_fork(const char *self) {
    pid_t c = fork();
    if (c == 0)
        _exit(sites_only());
    int st = 0;
    waitpid(c, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "forked child: status %#x", st);
    c = fork();
    if (c == 0) {
        execl(self, self, "child", (char *)NULL);
        _exit(127);
    }
    waitpid(c, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exec'd child: status %#x", st);
}

/* -- a site whose code moves (mremap) -------------------------------------------------- */
static void check_mremap(void) {
    /* getpid as its own little function in a page of its own: mov $39,%eax; syscall; ret */
    static const unsigned char code[] = {0xb8, 39, 0, 0, 0, 0x0f, 0x05, 0xc3};
    unsigned char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    unsigned char *q = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED || q == MAP_FAILED) {
        CHECK(0, "mmap");
        return;
    }
    memcpy(p + 100, code, sizeof code);
    long (*f)(void) = (long (*)(void))(p + 100);
    long pid = getpid(), bad = 0;
    for (int i = 0; i < 10; i++)
        bad += f() != pid;
    unsigned char *r = mremap(p, 4096, 4096, MREMAP_MAYMOVE | MREMAP_FIXED, q);
    CHECK(r == q, "mremap");
    f = (long (*)(void))(r + 100);
    for (int i = 0; i < 10; i++)
        bad += f() != pid;
    CHECK(bad == 0, "%ld wrong getpid from a moved site", bad);
    munmap(r, 4096);
}

/* -- a gs base of the program's own ------------------------------------------------ */
static void check_gs(void) {
    static uint64_t block[4] = {0xfeedfacecafebeefULL};
    CHECK(syscall(SYS_arch_prctl, ARCH_SET_GS, (unsigned long)block) == 0, "ARCH_SET_GS");
    long pid = getpid(), bad = 0;
    for (int i = 0; i < 50; i++)
        if (site_getpid() != pid)
            bad++;
    uint64_t v;
    __asm__ volatile("mov %%gs:0, %0" : "=r"(v));
    unsigned long got = 0;
    syscall(SYS_arch_prctl, ARCH_GET_GS, &got);
    CHECK(bad == 0, "%ld wrong getpid with a gs base", bad);
    CHECK(v == block[0], "%%gs:0 = %#lx", (unsigned long)v);
    CHECK(got == (unsigned long)block, "ARCH_GET_GS = %#lx", got);
    CHECK(syscall(SYS_arch_prctl, ARCH_SET_GS, 0UL) == 0, "ARCH_SET_GS 0");
    for (int i = 0; i < 50; i++)
        if (site_getpid() != pid)
            bad++;
    CHECK(bad == 0, "%ld wrong getpid after gs 0", bad);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc > 1 && strcmp(argv[1], "child") == 0)
        return sites_only();
    if (argc > 1 && strcmp(argv[1], "probe") == 0) {
        long a = site_probe(), b = a;
        for (int i = 0; i < 10; i++)              /* systrap patches a site that keeps trapping */
            b = site_probe() == a ? b : -1;
        printf("getpid=%d site=%02x\n", a == b && a == getpid(), (unsigned char)site_probe_at[0]);
        return 0;
    }
    check_registers();
    check_signals();
    check_restart();
    check_threads();
    check_fork(argv[0]);
    check_mremap();
    check_gs();
    if (failures == 0)
        printf("ok\n");
    return failures != 0;
}
