/* The vDSO: AT_SYSINFO_EHDR points at a valid ELF shared object exporting
 * __vdso_clock_gettime, __vdso_gettimeofday, __vdso_time and __vdso_getcpu
 * (version LINUX_2.6); what they return agrees with the syscalls and is
 * monotonic; clocks they do not serve still work (the syscall fallback).
 *
 * With an argument N: just N clock_gettime(CLOCK_MONOTONIC) calls through libc
 * (the test counts how many reach the Sentry with --strace). */
#include "check.h"

#include <elf.h>
#include <stdint.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/time.h>
#include <time.h>

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);
typedef int (*gettimeofday_fn)(struct timeval *, void *);
typedef time_t (*time_fn)(time_t *);
typedef long (*getcpu_fn)(unsigned *, unsigned *, void *);

/* A symbol of the vDSO with its version, as glibc's dl_vdso_vsym finds it. */
static void *vdso_sym(const char *name, const char *version)
{
    uintptr_t base = getauxval(AT_SYSINFO_EHDR);
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)base;
    const Elf64_Phdr *ph = (const Elf64_Phdr *)(base + eh->e_phoff);
    uintptr_t bias = 0;
    const Elf64_Dyn *dyn = NULL;
    for (int i = 0; i < eh->e_phnum; i++) {
        if (ph[i].p_type == PT_LOAD && ph[i].p_offset == 0)
            bias = base - ph[i].p_vaddr;
        if (ph[i].p_type == PT_DYNAMIC)
            dyn = (const Elf64_Dyn *)(ph[i].p_offset + base);
    }
    CHECK(dyn != NULL);
    const Elf64_Sym *syms = NULL;
    const char *strs = NULL;
    const Elf64_Word *hash = NULL;
    const Elf64_Half *versym = NULL;
    const Elf64_Verdef *verdef = NULL;
    for (; dyn->d_tag != DT_NULL; dyn++) {
        uintptr_t p = dyn->d_un.d_ptr + bias;
        switch (dyn->d_tag) {
        case DT_SYMTAB: syms = (const Elf64_Sym *)p; break;
        case DT_STRTAB: strs = (const char *)p; break;
        case DT_HASH: hash = (const Elf64_Word *)p; break;
        case DT_VERSYM: versym = (const Elf64_Half *)p; break;
        case DT_VERDEF: verdef = (const Elf64_Verdef *)p; break;
        }
    }
    CHECK(syms && strs && hash && versym && verdef);
    for (Elf64_Word i = 0; i < hash[1]; i++) {
        if (strcmp(strs + syms[i].st_name, name) != 0 || syms[i].st_shndx == SHN_UNDEF)
            continue;
        /* The version the symbol is defined under. */
        const Elf64_Verdef *d = verdef;
        for (;;) {
            if (d->vd_ndx == (versym[i] & 0x7fff)) {
                const Elf64_Verdaux *aux = (const Elf64_Verdaux *)((const char *)d + d->vd_aux);
                if (strcmp(strs + aux->vda_name, version) == 0)
                    return (void *)(syms[i].st_value + bias);
                break;
            }
            if (!d->vd_next)
                break;
            d = (const Elf64_Verdef *)((const char *)d + d->vd_next);
        }
    }
    return NULL;
}

static int64_t ns_of(const struct timespec *ts)
{
    return ts->tv_sec * 1000000000LL + ts->tv_nsec;
}

static int64_t sys_ns(clockid_t c)
{
    struct timespec ts;
    CHECK(syscall(SYS_clock_gettime, c, &ts) == 0);
    return ns_of(&ts);
}

/* What the vDSO says lies between two syscall readings, give or take the
 * vDSO's calibration error (a millisecond is far above what it may be). */
#define SLACK_NS 1000000LL

static void agree(clock_gettime_fn vclock, clockid_t c)
{
    for (int i = 0; i < 1000; i++) {
        struct timespec ts;
        int64_t before = sys_ns(c);
        CHECK(vclock(c, &ts) == 0);
        int64_t after = sys_ns(c);
        CHECK(ts.tv_nsec >= 0 && ts.tv_nsec < 1000000000);
        CHECK(ns_of(&ts) >= before - SLACK_NS);
        CHECK(ns_of(&ts) <= after + SLACK_NS);
    }
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        long n = atol(argv[1]);
        struct timespec ts;
        for (long i = 0; i < n; i++)
            CHECK(clock_gettime(CLOCK_MONOTONIC, &ts) == 0);
        ok();
        return 0;
    }
    /* The image is a valid ELF shared object for this machine. */
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)getauxval(AT_SYSINFO_EHDR);
    CHECK(eh != NULL);
    CHECK(memcmp(eh->e_ident, ELFMAG, SELFMAG) == 0);
    CHECK(eh->e_ident[EI_CLASS] == ELFCLASS64 && eh->e_ident[EI_DATA] == ELFDATA2LSB);
    CHECK(eh->e_type == ET_DYN && eh->e_machine == EM_X86_64);
    CHECK(((uintptr_t)eh & 4095) == 0);

    clock_gettime_fn vclock = vdso_sym("__vdso_clock_gettime", "LINUX_2.6");
    gettimeofday_fn vtod = vdso_sym("__vdso_gettimeofday", "LINUX_2.6");
    time_fn vtime = vdso_sym("__vdso_time", "LINUX_2.6");
    getcpu_fn vgetcpu = vdso_sym("__vdso_getcpu", "LINUX_2.6");
    CHECK(vclock && vtod && vtime && vgetcpu);
    CHECK(vdso_sym("__vdso_clock_gettime", "LINUX_2.5") == NULL);
    CHECK(vdso_sym("no_such_symbol", "LINUX_2.6") == NULL);

    /* /proc/self/maps names both mappings; the parameter page cannot be made writable. */
    FILE *maps = fopen("/proc/self/maps", "r");
    CHECK(maps != NULL);
    char line[512];
    uintptr_t vvar = 0, vdso = 0;
    while (fgets(line, sizeof line, maps)) {
        unsigned long lo, hi;
        CHECK(sscanf(line, "%lx-%lx", &lo, &hi) == 2);
        if (strstr(line, "[vvar]") && !vvar)
            vvar = lo;
        if (strstr(line, "[vdso]")) {
            vdso = lo;
            CHECK(strncmp(strchr(line, ' ') + 1, "r-xp", 4) == 0);
        }
    }
    fclose(maps);
    CHECK(vdso == (uintptr_t)eh);
    CHECK(vvar != 0 && vvar < vdso);
    CHECK_ERR(mprotect((void *)vvar, 4096, PROT_READ | PROT_WRITE), EACCES);

    /* Agreement with the syscalls. */
    agree(vclock, CLOCK_MONOTONIC);
    agree(vclock, CLOCK_REALTIME);
    for (int i = 0; i < 100; i++) {
        struct timeval tv;
        int64_t before = sys_ns(CLOCK_REALTIME) / 1000;
        CHECK(vtod(&tv, NULL) == 0);
        int64_t after = sys_ns(CLOCK_REALTIME) / 1000;
        int64_t us = tv.tv_sec * 1000000LL + tv.tv_usec;
        CHECK(tv.tv_usec >= 0 && tv.tv_usec < 1000000);
        CHECK(us >= before - SLACK_NS / 1000 && us <= after + SLACK_NS / 1000);
        time_t t1 = syscall(SYS_time, NULL), tt, t2;
        CHECK(vtime(&tt) == tt);
        t2 = syscall(SYS_time, NULL);
        CHECK(tt >= t1 - 1 && tt <= t2 + 1);
    }
    struct timezone tz = {123, 456};
    CHECK(vtod(NULL, &tz) == 0);
    CHECK(tz.tz_minuteswest == 0 && tz.tz_dsttime == 0);
    CHECK(vtime(NULL) > 1600000000);

    /* Clocks the vDSO leaves to the kernel still work, and bad ones fail as they should. */
    struct timespec ts;
    CHECK(vclock(CLOCK_PROCESS_CPUTIME_ID, &ts) == 0);
    CHECK(vclock(CLOCK_THREAD_CPUTIME_ID, &ts) == 0);
    CHECK(vclock(CLOCK_BOOTTIME, &ts) == 0);
    CHECK(vclock(CLOCK_MONOTONIC_COARSE, &ts) == 0);
    CHECK(vclock(1234, &ts) == -EINVAL);           /* the raw syscall's return */
    CHECK_ERR(clock_gettime(1234, &ts), EINVAL);    /* through glibc */

    unsigned cpu = 9999, node = 9999;
    CHECK(vgetcpu(&cpu, &node, NULL) == 0);
    CHECK(cpu < (unsigned)sysconf(_SC_NPROCESSORS_CONF) && node < 1024);
    CHECK(vgetcpu(NULL, NULL, NULL) == 0);

    /* Monotonic through libc for over a second: across the Sentry's updates of the
     * parameter page (its first ones come 20, 100 and 400 ms after start). */
    struct timespec start, prev, now;
    CHECK(clock_gettime(CLOCK_MONOTONIC, &start) == 0);
    prev = start;
    long reads = 0;
    do {
        CHECK(clock_gettime(CLOCK_MONOTONIC, &now) == 0);
        CHECK(ns_of(&now) >= ns_of(&prev));
        prev = now;
        reads++;
    } while (ns_of(&now) - ns_of(&start) < 1200000000LL);
    agree(vclock, CLOCK_MONOTONIC);
    agree(vclock, CLOCK_REALTIME);

    /* A forked child keeps the vDSO (same address) and its clocks. */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        if (getauxval(AT_SYSINFO_EHDR) != (uintptr_t)eh)
            _exit(2);
        agree(vclock, CLOCK_MONOTONIC);
        _exit(0);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ok();
    return 0;
}
