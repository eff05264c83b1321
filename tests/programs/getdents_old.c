/* The old getdents(2) (struct linux_dirent, d_type in the record's last byte) lists
 * the same entries with the same d_off and d_type as getdents64; both refuse O_PATH
 * fds (EBADF) and sizes above INT_MAX (EINVAL); a buffer that faults part way
 * returns the records before the fault (EFAULT only if none fit); getdents after
 * lseek(SEEK_END) on a /proc directory succeeds.  Linux: fs/readdir.c. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include "check.h"

struct d64 {
    unsigned long long d_ino;
    long long d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

struct dold {
    unsigned long d_ino;
    unsigned long d_off;
    unsigned short d_reclen;
    char d_name[];
};

#define N 60

int main(void)
{
    char dir[] = "/tmp/getdents_old.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256];
    for (int i = 0; i < N; i++) {
        snprintf(path, sizeof path, "%s/file_%035d.json", dir, i);
        int fd = open(path, O_CREAT | O_WRONLY, 0644);
        CHECK(fd >= 0);
        close(fd);
    }
    snprintf(path, sizeof path, "%s/sub", dir);
    CHECK(mkdir(path, 0755) == 0);

    static char b64[65536], bold[65536];
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    CHECK(fd >= 0);
    long n64 = syscall(SYS_getdents64, fd, b64, sizeof b64);
    CHECK(n64 > 0);
    CHECK(lseek(fd, 0, SEEK_SET) == 0);
    /* a small buffer: several calls, same records */
    long nold = 0, r;
    while ((r = syscall(SYS_getdents, fd, bold + nold, 300)) > 0)
        nold += r;
    CHECK(r == 0);
    CHECK(nold == n64);
    int count = 0;
    for (long o = 0; o < n64;) {
        struct d64 *a = (struct d64 *)(b64 + o);
        struct dold *b = (struct dold *)(bold + o);
        CHECK(a->d_reclen == b->d_reclen && b->d_reclen % 8 == 0);
        CHECK(a->d_ino == b->d_ino && (unsigned long)a->d_off == b->d_off);
        CHECK(strcmp(a->d_name, b->d_name) == 0);
        CHECK(a->d_type == (unsigned char)bold[o + b->d_reclen - 1]);
        CHECK(a->d_type == (strcmp(a->d_name, "sub") == 0 || a->d_name[0] == '.' ? DT_DIR : DT_REG));
        o += a->d_reclen;
        count++;
    }
    CHECK(count == N + 3);

    /* sizes and fd kinds */
    CHECK(lseek(fd, 0, SEEK_SET) == 0);
    CHECK_ERR(syscall(SYS_getdents, fd, bold, 0), EINVAL);
    CHECK_ERR(syscall(SYS_getdents, fd, bold, (uint32_t)INT32_MAX + 1), EINVAL);
    CHECK_ERR(syscall(SYS_getdents64, fd, b64, (uint32_t)-1), EINVAL);
    int op = open(dir, O_PATH | O_DIRECTORY);
    CHECK(op >= 0);
    CHECK_ERR(syscall(SYS_getdents, op, bold, sizeof bold), EBADF);
    CHECK_ERR(syscall(SYS_getdents64, op, b64, sizeof b64), EBADF);
    int reg = open(path, O_RDONLY | O_DIRECTORY);      /* "sub" */
    CHECK(reg >= 0);
    snprintf(path, sizeof path, "%s/file_%035d.json", dir, 0);
    int file = open(path, O_RDONLY);
    CHECK(file >= 0);
    CHECK_ERR(syscall(SYS_getdents, file, bold, sizeof bold), ENOTDIR);

    /* a buffer that claims a page but has 256 writable bytes before a guard page */
    char *m = mmap(NULL, 2 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED);
    CHECK(mprotect(m + 4096, 4096, PROT_NONE) == 0);
    int got = 0;
    for (int old = 0; old < 2; old++) {
        CHECK(lseek(fd, 0, SEEK_SET) == 0);
        got = 0;
        while ((r = syscall(old ? SYS_getdents : SYS_getdents64, fd, m + 4096 - 256, 4096)) > 0) {
            CHECK(r <= 256);
            for (long o = 0; o < r; o += ((struct dold *)(m + 4096 - 256 + o))->d_reclen)
                got++;
        }
        CHECK(r == 0);
        CHECK(got == N + 3);
        /* not one record fits before the fault */
        CHECK(lseek(fd, 0, SEEK_SET) == 0);
        CHECK_ERR(syscall(old ? SYS_getdents : SYS_getdents64, fd, m + 4096 - 8, 4096), EFAULT);
    }

    /* /proc directories after SEEK_END */
    int proc = open("/proc/self", O_RDONLY | O_DIRECTORY);
    CHECK(proc >= 0);
    CHECK(lseek(proc, 0, SEEK_END) >= 0);
    CHECK(syscall(SYS_getdents, proc, bold, 256) >= 0);
    CHECK(syscall(SYS_getdents64, proc, b64, 256) >= 0);

    for (int i = 0; i < N; i++) {
        snprintf(path, sizeof path, "%s/file_%035d.json", dir, i);
        CHECK(unlink(path) == 0);
    }
    snprintf(path, sizeof path, "%s/sub", dir);
    CHECK(rmdir(path) == 0);
    CHECK(rmdir(dir) == 0);
    ok();
    return 0;
}
