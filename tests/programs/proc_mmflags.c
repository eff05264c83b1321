/* /proc/PID/smaps (every entry has its counters, [vsyscall] too; a mapping only
 * this process maps has private pages; VmFlags from the VMA's may-flags), and
 * the integer files coredump_filter and oom_score_adj (kstrtoint parsing, NUL
 * ends the number, inherited at fork).  Linux: fs/proc/task_mmu.c, base.c. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include "check.h"

static char buf[1 << 20];

static const char *smaps_entry(void *addr)
{
    int fd = open("/proc/self/smaps", O_RDONLY);
    CHECK(fd >= 0);
    size_t n = 0;
    ssize_t r;
    while ((r = read(fd, buf + n, sizeof buf - 1 - n)) > 0)
        n += r;
    buf[n] = 0;
    close(fd);
    char head[32];
    snprintf(head, sizeof head, "%lx-", (unsigned long)addr);
    char *p = strstr(buf, head);
    CHECK(p != NULL);
    char *next = strstr(p + 1, "\nVmFlags:");
    CHECK(next != NULL);
    next = strchr(next + 1, '\n');
    CHECK(next != NULL);
    next[1] = 0;
    return p;
}

static long field(const char *entry, const char *name)
{
    const char *p = strstr(entry, name);
    CHECK(p != NULL);
    return strtol(p + strlen(name) + 1, NULL, 10);
}

static int has_flag(const char *entry, const char *flag)
{
    const char *p = strstr(entry, "VmFlags:");
    CHECK(p != NULL);
    char f[8];
    snprintf(f, sizeof f, " %s ", flag);
    return strstr(p, f) != NULL;
}

static void write_str(const char *path, const char *s, size_t n, int want_errno)
{
    int fd = open(path, O_WRONLY);
    CHECK(fd >= 0);
    if (want_errno)
        CHECK_ERR(write(fd, s, n), want_errno);
    else
        CHECK(write(fd, s, n) == (ssize_t)n);
    close(fd);
}

static long read_num(const char *path, int base)
{
    char b[64] = {0};
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    CHECK(read(fd, b, sizeof b - 1) > 0);
    close(fd);
    return strtol(b, NULL, base);
}

int main(void)
{
    long pg = sysconf(_SC_PAGESIZE);
    char *sh = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE,
                    -1, 0);
    CHECK(sh != MAP_FAILED);
    const char *e = smaps_entry(sh);
    CHECK(field(e, "Size:") == 2 * pg / 1024);
    CHECK(field(e, "Shared_Clean:") == 0 && field(e, "Shared_Dirty:") == 0);
    CHECK(field(e, "Private_Clean:") + field(e, "Private_Dirty:") == field(e, "Rss:"));
    CHECK(field(e, "Anonymous:") == 0);
    CHECK(has_flag(e, "rd") && has_flag(e, "wr") && has_flag(e, "sh") && has_flag(e, "ms"));
    CHECK(has_flag(e, "mr") && has_flag(e, "mw") && has_flag(e, "me") && !has_flag(e, "ex"));

    char *wo = mmap(NULL, pg, PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    CHECK(wo != MAP_FAILED);
    e = smaps_entry(wo);
    CHECK(has_flag(e, "wr") && !has_flag(e, "rd") && !has_flag(e, "sh") && !has_flag(e, "ms"));
    CHECK(field(e, "Anonymous:") == field(e, "Rss:"));

    char path[] = "/tmp/proc_mmflags_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0 && ftruncate(fd, pg) == 0);
    close(fd);
    fd = open(path, O_RDONLY);
    char *ro = mmap(NULL, pg, PROT_READ, MAP_SHARED, fd, 0);
    CHECK(ro != MAP_FAILED);
    e = smaps_entry(ro);
    CHECK(has_flag(e, "rd") && has_flag(e, "mr") && has_flag(e, "me") && has_flag(e, "ms"));
    CHECK(!has_flag(e, "sh") && !has_flag(e, "mw") && !has_flag(e, "wr"));
    unlink(path);

    e = smaps_entry((void *)0xffffffffff600000UL);                  /* [vsyscall] */
    CHECK(field(e, "Size:") == 4 && field(e, "Rss:") == 0 && has_flag(e, "ex"));

    /* coredump_filter: kstrtouint, base 0; NUL ends the number. */
    const char *cf = "/proc/self/coredump_filter";
    write_str(cf, "100", 3, 0);
    CHECK(read_num(cf, 16) == 100);
    write_str(cf, "7\0garbage", 9, 0);
    CHECK(read_num(cf, 16) == 7);
    write_str(cf, "0x1f\n", 5, 0);
    CHECK(read_num(cf, 16) == 0x1f);
    write_str(cf, "017", 3, 0);
    CHECK(read_num(cf, 16) == 017);
    write_str(cf, "12z", 3, EINVAL);
    write_str(cf, " 5", 2, EINVAL);
    write_str(cf, "4", 1, 0);
    const char *oa = "/proc/self/oom_score_adj";
    write_str(oa, " 5\0", 3, 0);
    CHECK(read_num(oa, 10) == 5);
    write_str(oa, "1001", 4, EINVAL);
    write_str(oa, "12\n", 3, 0);
    pid_t c = fork();
    if (c == 0) {
        if (read_num(cf, 16) != 4 || read_num(oa, 10) != 12)
            _exit(1);
        write_str(cf, "10", 2, 0);
        _exit(0);
    }
    int st;
    CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(read_num(cf, 16) == 4);
    write_str(oa, "0", 1, 0);
    ok();
    return 0;
}
