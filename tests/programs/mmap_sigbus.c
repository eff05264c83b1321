/* File mappings past end of file (Linux: mm/filemap.c, mm/truncate.c): a page wholly
 * past EOF raises SIGBUS (BUS_ADRERR at the page) on read or write, a write to a
 * read-only one SIGSEGV; syscalls reading or writing there fail with EFAULT; a
 * truncate makes mapped pages past the new end SIGBUS, private copies too; the file
 * growing back makes them usable again.  Also /dev/zero mappings, MAP_32BIT,
 * MAP_SHARED_VALIDATE, RLIMIT_AS and RLIMIT_DATA.  On tmpfs (/dev/shm) and /tmp. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include "check.h"

#define PG 4096L
#ifndef MAP_SYNC
#define MAP_SYNC 0x80000
#endif

/* The signal that kills a child doing `how` (0: read, 1: write) at p. */
static int access_signal(volatile char *p, int how)
{
    pid_t c = fork();
    CHECK(c >= 0);
    if (c == 0) {
        if (how)
            *p = 'w';
        else
            (void)*p;
        _exit(0);
    }
    int st;
    CHECK(waitpid(c, &st, 0) == c);
    return WIFSIGNALED(st) ? WTERMSIG(st) : 0;
}

static sigjmp_buf jb;
static siginfo_t last;

static void on_bus(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    last = *si;
    siglongjmp(jb, 1);
}

static void file_checks(const char *dir)
{
    char path[256];
    snprintf(path, sizeof path, "%s/mmap_sigbus.XXXXXX", dir);
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK(unlink(path) == 0);
    char half[PG / 2];
    memset(half, 'h', sizeof half);
    CHECK(write(fd, half, sizeof half) == (ssize_t)sizeof half);

    for (int shared = 0; shared < 2; shared++) {
        int fl = shared ? MAP_SHARED : MAP_PRIVATE;
        char *m = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, fl, fd, 0);
        CHECK(m != MAP_FAILED);
        CHECK(m[0] == 'h' && m[PG / 2] == 0 && m[PG - 1] == 0);   /* the EOF page */
        CHECK(access_signal(m + PG, 0) == SIGBUS);
        CHECK(access_signal(m + PG, 1) == SIGBUS);
        /* the siginfo */
        struct sigaction sa = {0}, old;
        sa.sa_sigaction = on_bus;
        sa.sa_flags = SA_SIGINFO;
        CHECK(sigaction(SIGBUS, &sa, &old) == 0);
        if (sigsetjmp(jb, 1) == 0) {
            (void)*(volatile char *)(m + PG + 8);
            CHECK(0);
        }
        CHECK(sigaction(SIGBUS, &old, NULL) == 0);
        CHECK(last.si_signo == SIGBUS && last.si_code == BUS_ADRERR);
        CHECK(last.si_addr == m + PG + 8);
        /* syscalls: EFAULT */
        int p[2];
        CHECK(pipe(p) == 0);
        CHECK_ERR(write(p[1], m + PG, PG), EFAULT);
        CHECK(write(p[1], m, 16) == 16);
        CHECK(read(p[0], m + PG, 16) == -1 && errno == EFAULT);
        close(p[0]);
        close(p[1]);
        int z = open("/dev/zero", O_RDONLY);
        CHECK(z >= 0);
        CHECK_ERR(read(z, m + PG, PG), EFAULT);
        close(z);
        /* the file grows over the page: usable, and coherent for shared maps */
        CHECK(ftruncate(fd, 2 * PG) == 0);
        CHECK(access_signal(m + PG, 0) == 0);
        CHECK(m[PG] == 0);
        CHECK(pwrite(fd, "x", 1, PG + 1) == 1);
        CHECK(m[PG + 1] == 'x');
        m[PG + 2] = 'y';
        char c;
        CHECK(pread(fd, &c, 1, PG + 2) == 1 && c == (shared ? 'y' : 0));
        /* a truncate: pages past the new end SIGBUS, private copies too */
        m[0] = 'p';
        CHECK(ftruncate(fd, PG / 2) == 0);
        CHECK(access_signal(m + PG, 0) == SIGBUS);
        CHECK(access_signal(m, 0) == 0);
        CHECK(ftruncate(fd, 0) == 0);
        CHECK(access_signal(m, 0) == SIGBUS);
        CHECK(access_signal(m, 1) == SIGBUS);
        CHECK(ftruncate(fd, PG / 2) == 0);
        CHECK(m[0] == (shared ? 0 : 0) && m[1] == 0);          /* fresh zeros */
        CHECK(pwrite(fd, half, sizeof half, 0) == (ssize_t)sizeof half);
        CHECK(munmap(m, 2 * PG) == 0);
    }

    /* read-only mapping: a write past EOF is SIGSEGV (the access check comes first) */
    char *r = mmap(NULL, 2 * PG, PROT_READ, MAP_SHARED, fd, 0);
    CHECK(r != MAP_FAILED);
    CHECK(access_signal(r + PG, 1) == SIGSEGV);
    CHECK(access_signal(r + PG, 0) == SIGBUS);
    CHECK(munmap(r, 2 * PG) == 0);

    /* an offset past the end */
    char *b = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 4 * PG);
    CHECK(b != MAP_FAILED);
    CHECK(access_signal(b, 1) == SIGBUS);
    CHECK(munmap(b, PG) == 0);

    /* a child's mapping is truncated by its parent while the child runs */
    char *s = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(s != MAP_FAILED);
    int go[2], done[2];
    CHECK(pipe(go) == 0 && pipe(done) == 0);
    pid_t c = fork();
    CHECK(c >= 0);
    if (c == 0) {
        char x;
        if (write(done[1], "r", 1) != 1 || read(go[0], &x, 1) != 1)
            _exit(2);
        (void)*(volatile char *)s;
        _exit(0);
    }
    char x;
    CHECK(read(done[0], &x, 1) == 1);
    CHECK(ftruncate(fd, 0) == 0);
    CHECK(write(go[1], "g", 1) == 1);
    int st;
    CHECK(waitpid(c, &st, 0) == c && WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS);

    /* ... and while the child spins in user code (no syscall to stop in) */
    CHECK(ftruncate(fd, PG) == 0);
    volatile int *flag = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                              -1, 0);
    CHECK(flag != MAP_FAILED);
    c = fork();
    CHECK(c >= 0);
    if (c == 0) {
        (void)*(volatile char *)s;      /* mapped and usable now */
        flag[0] = 1;
        while (flag[1] == 0)
            ;
        (void)getppid();
        (void)*(volatile char *)s;
        _exit(0);
    }
    while (flag[0] == 0)
        ;
    CHECK(ftruncate(fd, 0) == 0);
    flag[1] = 1;
    CHECK(waitpid(c, &st, 0) == c && WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS);
    close(fd);
}

int main(void)
{
    file_checks("/dev/shm");
    file_checks("/tmp");

    /* /dev/zero: private is anonymous memory, shared is shared across fork */
    int z = open("/dev/zero", O_RDWR);
    CHECK(z >= 0);
    char *p = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, z, 0);
    char *s = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, z, 0);
    CHECK(p != MAP_FAILED && s != MAP_FAILED);
    CHECK(p[PG + 5] == 0 && s[5] == 0);
    p[1] = 'a';
    pid_t c = fork();
    CHECK(c >= 0);
    if (c == 0) {
        s[0] = 'c';
        p[1] = 'c';
        _exit(0);
    }
    int st;
    CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st));
    CHECK(s[0] == 'c' && p[1] == 'a');
    int full = open("/dev/full", O_RDWR);
    CHECK(full >= 0);
    CHECK_ERR(mmap(NULL, PG, PROT_READ, MAP_PRIVATE, full, 0), ENODEV);

    /* MAP_32BIT: in the low 2 GiB */
    char *lo = mmap(NULL, PG, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
    CHECK(lo != MAP_FAILED && (uintptr_t)lo + PG <= (1UL << 32));

    /* MAP_SHARED_VALIDATE */
    CHECK_ERR(mmap(NULL, PG, PROT_READ, MAP_SHARED_VALIDATE | MAP_ANONYMOUS, -1, 0), EINVAL);
    int f = open("/dev/shm", O_TMPFILE | O_RDWR, 0600);
    CHECK(f >= 0 && ftruncate(f, PG) == 0);
    CHECK_ERR(mmap(NULL, PG, PROT_READ, MAP_SHARED_VALIDATE | MAP_SYNC, f, 0), EOPNOTSUPP);
    char *v = mmap(NULL, PG, PROT_READ, MAP_SHARED_VALIDATE, f, 0);
    CHECK(v != MAP_FAILED);

    /* RLIMIT_AS and RLIMIT_DATA, in a child */
    c = fork();
    CHECK(c >= 0);
    if (c == 0) {
        struct rlimit rl = {RLIM_INFINITY, RLIM_INFINITY};
        FILE *fs = fopen("/proc/self/status", "r");
        CHECK(fs != NULL);
        char line[256];
        long vm = -1;
        while (fgets(line, sizeof line, fs))
            if (sscanf(line, "VmSize: %ld kB", &vm) == 1)
                break;
        fclose(fs);
        CHECK(vm > 0);
        rl.rlim_cur = vm * 1024 + (20 << 20);
        CHECK(setrlimit(RLIMIT_AS, &rl) == 0);
        CHECK_ERR(mmap(NULL, 200 << 20, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), ENOMEM);
        char *ok10 = mmap(NULL, 10 << 20, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        CHECK(ok10 != MAP_FAILED);
        rl.rlim_cur = 0;
        CHECK(setrlimit(RLIMIT_DATA, &rl) == 0);
        void *cur = sbrk(0);
        CHECK(cur != (void *)-1);
        CHECK_ERR(brk((char *)cur + 8192), ENOMEM);
        _exit(0);
    }
    CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ok();
    return 0;
}
