/* pyvisor's vDSO: clock_gettime, gettimeofday, time, getcpu and clock_getres
 * served in the application, without a trap.
 *
 * Linux analogue: arch/x86/entry/vdso/ (vclock_gettime.c); gVisor: vdso/.
 *
 * The page just below this image ([vvar]) is the Sentry's parameter page
 * (struct params, kept by pyvisor/sentry/kernel/vdso.py), mapped read-only
 * from the memory file.  The Sentry publishes, for each served clock, a base
 * TSC value, the clock's value in ns at that TSC value, and a multiplier
 * (ns per cycle << 32), all protected by a sequence count: odd while it
 * writes.  A clock the page does not serve (CPU-time clocks, BOOTTIME, unknown
 * ids, or every clock when the TSC is not usable) goes to the real syscall,
 * which the Sentry serves.  Build: build.py (the image is checked in as
 * image.py; tests/sentry/test_vdso.py checks a rebuild gives the same bytes).
 */
#include <stdint.h>

#define CLOCK_REALTIME 0
#define CLOCK_MONOTONIC 1

#define F_CLOCKS 1u   /* the clock parameters are valid */
#define F_GETCPU 2u   /* rdtscp's TSC_AUX holds (node << 12) | cpu */

#define SYS_gettimeofday 96
#define SYS_time 201
#define SYS_clock_gettime 228
#define SYS_clock_getres 229
#define SYS_getcpu 309

struct clock_params {
    uint64_t base_cycles;
    int64_t base_ns;
    uint64_t mult;            /* ns per cycle, << 32 */
};

struct params {
    uint32_t seq;             /* odd while the Sentry writes */
    uint32_t flags;
    struct clock_params clock[2];   /* CLOCK_REALTIME, CLOCK_MONOTONIC */
};

struct kernel_timespec { int64_t tv_sec; long tv_nsec; };
struct kernel_timeval { int64_t tv_sec; long tv_usec; };
struct kernel_timezone { int tz_minuteswest; int tz_dsttime; };

/* Defined by the linker script: the page before the image. */
extern const volatile struct params vvar_params __attribute__((visibility("hidden")));

#define barrier() __asm__ __volatile__("" ::: "memory")

static inline long raw_syscall2(long nr, long a, long b)
{
    long ret;
    __asm__ __volatile__("syscall" : "=a"(ret) : "0"(nr), "D"(a), "S"(b)
                         : "rcx", "r11", "memory");
    return ret;
}

static inline long raw_syscall3(long nr, long a, long b, long c)
{
    long ret;
    __asm__ __volatile__("syscall" : "=a"(ret) : "0"(nr), "D"(a), "S"(b), "d"(c)
                         : "rcx", "r11", "memory");
    return ret;
}

static inline uint64_t rdtsc_ordered(void)
{
    uint32_t lo, hi;
    __asm__ __volatile__("lfence; rdtsc" : "=a"(lo), "=d"(hi) :: "memory");
    return ((uint64_t)hi << 32) | lo;
}

/* The clock's value in ns; 0 if the page does not serve clocks now. */
static inline int read_clock(int which, int64_t *ns)
{
    const volatile struct params *p = &vvar_params;
    uint32_t seq;
    uint64_t base_cycles, mult, now;
    int64_t base_ns;

    for (;;) {
        seq = p->seq;
        if (seq & 1) {
            __asm__ __volatile__("pause");
            continue;
        }
        barrier();
        if (!(p->flags & F_CLOCKS))
            return 0;
        base_cycles = p->clock[which].base_cycles;
        base_ns = p->clock[which].base_ns;
        mult = p->clock[which].mult;
        now = rdtsc_ordered();
        barrier();
        if (p->seq == seq)
            break;
    }
    /* A TSC read just behind the Sentry's (another CPU) counts as the base. */
    uint64_t delta = now > base_cycles ? now - base_cycles : 0;
    *ns = base_ns + (int64_t)(((unsigned __int128)delta * mult) >> 32);
    return 1;
}

int __vdso_clock_gettime(int clock, struct kernel_timespec *ts)
{
    int64_t ns;

    if ((clock == CLOCK_REALTIME || clock == CLOCK_MONOTONIC) && read_clock(clock, &ns)) {
        /* ns >= 0 for both clocks after 1970 and after boot. */
        ts->tv_sec = ns / 1000000000;
        ts->tv_nsec = ns % 1000000000;
        return 0;
    }
    return raw_syscall2(SYS_clock_gettime, clock, (long)ts);
}

int __vdso_gettimeofday(struct kernel_timeval *tv, struct kernel_timezone *tz)
{
    int64_t ns;

    if (read_clock(CLOCK_REALTIME, &ns)) {
        if (tv) {
            tv->tv_sec = ns / 1000000000;
            tv->tv_usec = (ns % 1000000000) / 1000;
        }
        if (tz) {
            tz->tz_minuteswest = 0;
            tz->tz_dsttime = 0;
        }
        return 0;
    }
    return raw_syscall2(SYS_gettimeofday, (long)tv, (long)tz);
}

int64_t __vdso_time(int64_t *t)
{
    int64_t ns;

    if (read_clock(CLOCK_REALTIME, &ns)) {
        int64_t s = ns / 1000000000;
        if (t)
            *t = s;
        return s;
    }
    return raw_syscall2(SYS_time, (long)t, 0);
}

int __vdso_clock_getres(int clock, struct kernel_timespec *res)
{
    if ((clock == CLOCK_REALTIME || clock == CLOCK_MONOTONIC) &&
        (vvar_params.flags & F_CLOCKS)) {
        if (res) {
            res->tv_sec = 0;
            res->tv_nsec = 1;
        }
        return 0;
    }
    return raw_syscall2(SYS_clock_getres, clock, (long)res);
}

long __vdso_getcpu(unsigned *cpu, unsigned *node, void *unused)
{
    if (vvar_params.flags & F_GETCPU) {
        uint32_t aux;
        __asm__ __volatile__("rdtscp" : "=c"(aux) :: "eax", "edx");
        if (cpu)
            *cpu = aux & 0xfff;
        if (node)
            *node = aux >> 12;
        return 0;
    }
    return raw_syscall3(SYS_getcpu, (long)cpu, (long)node, (long)unused);
}

int clock_gettime(int, struct kernel_timespec *)
    __attribute__((weak, alias("__vdso_clock_gettime")));
int gettimeofday(struct kernel_timeval *, struct kernel_timezone *)
    __attribute__((weak, alias("__vdso_gettimeofday")));
int64_t time(int64_t *) __attribute__((weak, alias("__vdso_time")));
int clock_getres(int, struct kernel_timespec *)
    __attribute__((weak, alias("__vdso_clock_getres")));
long getcpu(unsigned *, unsigned *, void *) __attribute__((weak, alias("__vdso_getcpu")));
