/* /proc/PID at the edges, after gVisor's proc tests (Linux: fs/proc/base.c,
 * task_mmu.c, array.c): io accounting per thread, ns links, smaps, anonymous
 * mapping names, ptrace read access for another user's maps/smaps/environ/io,
 * zombie and reaped processes (reads made at read time: empty maps, ESRCH once
 * reaped), task/TID/children, fdinfo's O_LARGEFILE, coredump_filter, comm of
 * another process, /proc/cmdline and /proc/devices.  Self-checking. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include "check.h"

#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41
#define PR_SET_VMA_ANON_NAME 0
#endif

static char *slurp(const char *path, ssize_t *len)
{
    static char buf[1 << 16];
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return NULL;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n < 0)
        return NULL;
    buf[n] = 0;
    if (len)
        *len = n;
    return buf;
}

static long field(const char *text, const char *name)
{
    const char *p = strstr(text, name);
    CHECK(p != NULL);
    return strtol(p + strlen(name), NULL, 10);
}

static long syscw_of_thread(void)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%ld/io", (long)syscall(SYS_gettid));
    char *t = slurp(path, NULL);
    CHECK(t != NULL);
    return field(t, "syscw:");
}

static void *writer(void *arg)
{
    (void)arg;
    long before = syscw_of_thread();
    int fd = open("/dev/null", O_WRONLY);
    CHECK(fd >= 0);
    for (int i = 0; i < 25; i++)
        CHECK(write(fd, "x", 1) == 1);
    close(fd);
    CHECK(syscw_of_thread() - before == 25);
    return NULL;
}

static char *in_maps(void *addr)
{
    static char line[512];
    FILE *f = fopen("/proc/self/maps", "r");
    CHECK(f != NULL);
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && lo == (unsigned long)addr) {
            fclose(f);
            line[strcspn(line, "\n")] = 0;
            char *name = line;
            for (int i = 0; i < 5 && name; i++) {       /* skip 5 fields */
                name = strchr(name, ' ');
                if (name)
                    while (*name == ' ')
                        name++;
            }
            return name ? name : (char *)"";
        }
    }
    fclose(f);
    return NULL;
}

int main(void)
{
    /* io: per thread, exactly the write calls made */
    pthread_t th;
    CHECK(pthread_create(&th, NULL, writer, NULL) == 0);
    CHECK(pthread_join(th, NULL) == 0);
    char *io = slurp("/proc/self/io", NULL);
    CHECK(io && strstr(io, "rchar:") && strstr(io, "syscr:") && strstr(io, "read_bytes:"));

    /* global files */
    ssize_t n;
    CHECK(slurp("/proc/cmdline", &n) != NULL && n > 0);
    char *dev = slurp("/proc/devices", NULL);
    CHECK(dev && strncmp(dev, "Character devices:\n", 19) == 0);
    char *mem = strstr(dev, "  1 mem\n"), *blk = strstr(dev, "\n\nBlock devices:\n");
    CHECK(mem && blk && mem < blk);

    /* ns: symlinks named kind:[inode], which lead somewhere */
    struct stat st;
    CHECK(lstat("/proc/self/ns/pid", &st) == 0 && S_ISLNK(st.st_mode));
    char link[64] = {0};
    CHECK(readlink("/proc/self/ns/pid", link, sizeof link - 1) > 0);
    CHECK(strncmp(link, "pid:[", 5) == 0);
    CHECK(access("/proc/self/ns/net", F_OK) == 0);
    CHECK(access("/proc/self/ns/user", F_OK) == 0);

    /* maps names, smaps */
    char *a = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *s = mmap(NULL, 4096, PROT_READ, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(a != MAP_FAILED && s != MAP_FAILED);
    CHECK(strcmp(in_maps(s), "/dev/zero (deleted)") == 0);
    int fd = open("/proc/self/exe", O_RDONLY);
    CHECK(fd >= 0);
    char *f = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
    CHECK(f != MAP_FAILED);
    /* Kernels built without CONFIG_ANON_VMA_NAME refuse PR_SET_VMA (EINVAL): the
     * program says which it saw (tests/syscalls/test_programs.py requires the
     * sandbox to support it). */
    if (prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, a, 4096, "test") == 0) {
        printf("anon_names=supported\n");
        CHECK(strcmp(in_maps(a), "[anon:test]") == 0);
        CHECK(prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, a, 4096, "") == 0);
        CHECK(strcmp(in_maps(a), "[anon:]") == 0);
        CHECK(prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, a, 4096, NULL) == 0);
        CHECK(strcmp(in_maps(a), "") == 0);
        CHECK_ERR(prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, a, 4096, "bad$name"), EINVAL);
        CHECK_ERR(prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, a + 1, 4096, "x"), EINVAL);
        CHECK_ERR(prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, f, 4096, "x"), EBADF);
    } else {
        CHECK(errno == EINVAL);
        printf("anon_names=unsupported\n");
    }
    fflush(stdout);
    char *sm = slurp("/proc/self/smaps", NULL);
    CHECK(sm && strstr(sm, "\nSize:") && strstr(sm, "\nRss:") && strstr(sm, "VmFlags:"));

    /* fdinfo: open(2) adds O_LARGEFILE, pipe2 does not */
    int p[2];
    CHECK(pipe(p) == 0);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    char *fi = slurp(path, NULL);
    CHECK(fi && strstr(fi, "flags:\t0100000\n"));
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", p[0]);
    fi = slurp(path, NULL);
    CHECK(fi && strstr(fi, "flags:\t00\n"));               /* "0%o", as Linux */
    CHECK(slurp("/proc/self/coredump_filter", &n) != NULL && n == 9);

    /* the task directory links: 2 + threads */
    CHECK(stat("/proc/self/task", &st) == 0 && st.st_nlink == 3);

    /* a child: children, another user's view, zombie, reaped */
    int go[2], ready[2];
    CHECK(pipe(go) == 0 && pipe(ready) == 0);
    pid_t c = fork();
    CHECK(c >= 0);
    if (c == 0) {
        char x;
        if (write(ready[1], "r", 1) != 1 || read(go[0], &x, 1) != 1)
            _exit(2);
        _exit(0);
    }
    char x;
    CHECK(read(ready[0], &x, 1) == 1);
    snprintf(path, sizeof path, "/proc/self/task/%d/children", getpid());
    char want[32];
    snprintf(want, sizeof want, "%d ", c);
    char *ch = slurp(path, NULL);
    CHECK(ch && strcmp(ch, want) == 0);
    snprintf(path, sizeof path, "/proc/%d", c);
    int dir = open(path, O_RDONLY | O_DIRECTORY);
    CHECK(dir >= 0);
    /* comm of another process: EINVAL */
    snprintf(path, sizeof path, "/proc/%d/task/%d/comm", getpid(), getpid());
    pid_t c2 = fork();
    CHECK(c2 >= 0);
    if (c2 == 0) {
        int cf = open(path, O_WRONLY);
        if (cf < 0 || write(cf, "x", 1) != -1 || errno != EINVAL)
            _exit(1);
        /* another user: no ptrace access to the child's memory views */
        if (setuid(65534) != 0)
            _exit(3);
        const char *names[] = {"maps", "smaps", "environ", "auxv", "io"};
        for (int i = 0; i < 5; i++)
            if (openat(dir, names[i], O_RDONLY) != -1 || errno != EACCES)
                _exit(10 + i);
        if (openat(dir, "status", O_RDONLY) < 0)
            _exit(20);
        _exit(0);
    }
    int st2;
    CHECK(waitpid(c2, &st2, 0) == c2 && WIFEXITED(st2) && WEXITSTATUS(st2) == 0);

    int maps = openat(dir, "maps", O_RDONLY);
    int stat_fd = openat(dir, "status", O_RDONLY);
    int cmd = openat(dir, "cmdline", O_RDONLY);
    CHECK(maps >= 0 && stat_fd >= 0 && cmd >= 0);
    CHECK(write(go[1], "g", 1) == 1);
    siginfo_t si;
    CHECK(waitid(P_PID, c, &si, WEXITED | WNOWAIT) == 0);      /* a zombie now */
    static char buf[4096];
    CHECK(read(maps, buf, sizeof buf) == 0);
    CHECK(read(cmd, buf, sizeof buf) == 0);
    ssize_t got = read(stat_fd, buf, sizeof buf - 1);
    CHECK(got > 0);
    buf[got] = 0;
    CHECK(field(buf, "Threads:") == 1);
    CHECK(readlinkat(dir, "exe", link, sizeof link) == -1 && errno == ENOENT);
    CHECK(readlinkat(dir, "ns/net", link, sizeof link) == -1 && errno == ENOENT);
    int late = openat(dir, "stat", O_RDONLY);
    CHECK(late >= 0);
    CHECK(waitpid(c, &st2, 0) == c);                           /* reaped */
    CHECK_ERR(read(late, buf, sizeof buf), ESRCH);
    CHECK_ERR(readlinkat(dir, "exe", link, sizeof link), ESRCH);
    snprintf(path, sizeof path, "/proc/self/task/%d/children", getpid());
    ch = slurp(path, NULL);
    CHECK(ch && strcmp(ch, "") == 0);
    ok();
    return 0;
}
