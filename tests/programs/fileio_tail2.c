/* More of the file-I/O tail: fallocate's checks in vfs_fallocate's order,
 * RLIMIT_FSIZE on truncate and fallocate (SIGXFSZ + EFBIG), sendfile (a file
 * sent to itself, a negative count, an O_APPEND output), madvise's length
 * wrap, relatime access times (read, getdents, following a symlink), and the
 * sticky bit on unlink and rename. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include "check.h"

#define KERNEL_O_LARGEFILE 0100000   /* glibc defines O_LARGEFILE as 0 on 64-bit */

static long long atime_of(const char *p, int follow)
{
    struct stat st;
    CHECK((follow ? stat(p, &st) : lstat(p, &st)) == 0);
    return st.st_atim.tv_sec * 1000000000LL + st.st_atim.tv_nsec;
}

int main(void)
{
    char dir[] = "/tmp/fileio2XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    CHECK(chmod(dir, 0755) == 0);
    char path[256], link[256];
    snprintf(path, sizeof path, "%s/f", dir);
    snprintf(link, sizeof link, "%s/l", dir);
    int fd = open(path, O_RDWR | O_CREAT, 0644);
    CHECK(fd >= 0);

    /* fallocate */
    CHECK(fallocate(fd, 0, 0, 10) == 0);
    struct stat st;
    CHECK(fstat(fd, &st) == 0 && st.st_size == 10);
    CHECK(fallocate(fd, 0, 0, 5) == 0);
    CHECK(fstat(fd, &st) == 0 && st.st_size == 10);
    CHECK(fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 100) == 0);
    CHECK(fstat(fd, &st) == 0 && st.st_size == 10);
    CHECK_ERR(fallocate(fd, 0, -1, 10), EINVAL);
    CHECK_ERR(fallocate(fd, 0, 0, 0), EINVAL);
    CHECK_ERR(fallocate(fd, 0x1000, 0, 1), EOPNOTSUPP);
    CHECK_ERR(fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0, 1), EOPNOTSUPP);   /* needs KEEP_SIZE */
    CHECK_ERR(fallocate(-1, 0, 0, 1), EBADF);
    CHECK_ERR(fallocate(fd, 0, INT64_MAX - 1, 10), EFBIG);
    int p[2];
    CHECK(pipe(p) == 0);
    CHECK_ERR(fallocate(p[1], 0, 0, 10), ESPIPE);
    int dn = open("/dev/null", O_RDWR);
    CHECK_ERR(fallocate(dn, 0, 0, 10), ENODEV);
    int tfd = timerfd_create(CLOCK_MONOTONIC, 0);
    CHECK_ERR(fallocate(tfd, 0, 0, 10), ENODEV);
    int ro = open(path, O_RDONLY);
    CHECK_ERR(fallocate(ro, 0, 0, 10), EBADF);

    /* RLIMIT_FSIZE: SIGXFSZ and EFBIG */
    sigset_t xfsz;
    sigemptyset(&xfsz);
    sigaddset(&xfsz, SIGXFSZ);
    CHECK(sigprocmask(SIG_BLOCK, &xfsz, NULL) == 0);
    struct rlimit old, lim = {1024, RLIM_INFINITY};
    CHECK(getrlimit(RLIMIT_FSIZE, &old) == 0);
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    struct timespec ts = {5, 0};
    CHECK_ERR(ftruncate(fd, 1025), EFBIG);
    CHECK(sigtimedwait(&xfsz, NULL, &ts) == SIGXFSZ);
    CHECK_ERR(truncate(path, 2000), EFBIG);
    CHECK(sigtimedwait(&xfsz, NULL, &ts) == SIGXFSZ);
    CHECK_ERR(fallocate(fd, 0, 0, 1025), EFBIG);
    CHECK(sigtimedwait(&xfsz, NULL, &ts) == SIGXFSZ);
    CHECK(ftruncate(fd, 1024) == 0);
    CHECK(ftruncate(fd, 10) == 0);
    CHECK(setrlimit(RLIMIT_FSIZE, &old) == 0);

    /* sendfile */
    int m = memfd_create("m", 0);
    CHECK(write(m, "x", 1) == 1);
    off_t off = 0;
    CHECK(sendfile(m, m, &off, 100000) == 100000);       /* the file grows as it is read */
    CHECK(off == 100000);
    CHECK(fstat(m, &st) == 0 && st.st_size == 100001);
    char tail[4];
    CHECK(pread(m, tail, 4, 99997) == 4 && memcmp(tail, "xxxx", 4) == 0);
    int m3 = memfd_create("m3", 0);
    CHECK(write(m3, "abc", 3) == 3);
    off = 0;
    CHECK(sendfile(m3, m3, &off, 10) == 10);              /* the pattern repeats */
    char pat[14] = {0};
    CHECK(pread(m3, pat, sizeof pat, 0) == 13 && memcmp(pat, "abcabcabcabca", 13) == 0);
    CHECK_ERR(sendfile(fd, m, NULL, (size_t)-1), EINVAL);
    int ap = open(path, O_WRONLY | O_APPEND);
    CHECK_ERR(sendfile(ap, m, NULL, 10), EINVAL);

    /* madvise: the rounded length must not wrap */
    void *pg = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(madvise(pg, 0, MADV_DONTFORK) == 0);
    CHECK_ERR(madvise(0, SIZE_MAX - 2048, MADV_DONTFORK), EINVAL);
    CHECK_ERR(madvise((char *)pg + 1, 4096, MADV_NORMAL), EINVAL);

    /* relatime: reads move an atime that is not after the mtime */
    CHECK(symlink("f", link) == 0);
    long long a0 = atime_of(path, 1);
    usleep(30000);
    char buf[4];
    CHECK(pread(fd, buf, 4, 0) == 4);
    long long a1 = atime_of(path, 1);
    CHECK(a1 > a0);
    usleep(30000);
    CHECK(pread(fd, buf, 4, 0) == 4);
    CHECK(atime_of(path, 1) == a1);                      /* now after the mtime: kept */
    int nfd = open(path, O_RDONLY | O_NOATIME);
    CHECK(nfd >= 0);
    long long d0 = atime_of(dir, 1);
    usleep(30000);
    DIR *dp = opendir(dir);
    CHECK(dp != NULL);
    while (readdir(dp) != NULL)
        ;
    closedir(dp);
    CHECK(atime_of(dir, 1) > d0);
    long long l0 = atime_of(link, 0);
    usleep(30000);
    CHECK(stat(link, &st) == 0);                         /* follows the link */
    CHECK(atime_of(link, 0) > l0);

    /* the sticky bit */
    char sdir[256], victim[256], moved[256];
    snprintf(sdir, sizeof sdir, "%s/s", dir);
    snprintf(victim, sizeof victim, "%s/s/v", dir);
    snprintf(moved, sizeof moved, "%s/s/w", dir);
    CHECK(mkdir(sdir, 0777) == 0);
    CHECK(chmod(sdir, 0777 | S_ISVTX) == 0);
    CHECK(close(open(victim, O_CREAT | O_WRONLY, 0666)) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        if (setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534))
            _exit(2);
        CHECK_ERR(unlink(victim), EPERM);
        CHECK_ERR(rename(victim, moved), EPERM);
        CHECK(close(open(moved, O_CREAT | O_WRONLY, 0666)) == 0);   /* its own file */
        CHECK_ERR(rename(moved, victim), EPERM);                    /* replaces another's */
        CHECK(unlink(moved) == 0);
        _exit(0);
    }
    int ws;
    CHECK(waitpid(pid, &ws, 0) == pid && WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
    CHECK(unlink(victim) == 0);
    CHECK(rmdir(sdir) == 0);

    /* readv/writev stop at the first fault: a partial count, or EFAULT */
    char *two = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(two != MAP_FAILED);
    memset(two, 'a', 8192);
    CHECK(mprotect(two + 4096, 4096, PROT_NONE) == 0);
    struct iovec pv[2] = {{two, 4096}, {two, 8192}};
    CHECK(pwritev(fd, pv, 2, 0) == 8192);
    CHECK(lseek(fd, 0, SEEK_SET) == 0);
    CHECK(readv(fd, pv, 2) == 8192);
    CHECK(lseek(fd, 0, SEEK_CUR) == 8192);
    struct iovec none[1] = {{two + 4096, 10}};
    CHECK_ERR(pwritev(fd, none, 1, 0), EFAULT);
    CHECK_ERR(preadv(fd, none, 1, 0), EFAULT);
    struct iovec wild[2] = {{(void *)~0UL, 0}, {two, 10}};
    CHECK_ERR(preadv(fd, wild, 2, 0), EFAULT);

    /* F_GETFL: open forces O_LARGEFILE; O_PATH keeps only its own flags */
    int gf = open(path, O_RDWR | O_APPEND | O_NONBLOCK);
    CHECK(fcntl(gf, F_GETFL) == (O_RDWR | O_APPEND | O_NONBLOCK | KERNEL_O_LARGEFILE));
    CHECK(fcntl(gf, F_SETFL, O_RDONLY | O_DIRECT) == 0);
    CHECK(fcntl(gf, F_GETFL) == (O_RDWR | O_DIRECT | KERNEL_O_LARGEFILE));
    int pf = open(dir, O_RDWR | O_APPEND | O_PATH | O_NOFOLLOW | O_DIRECTORY);
    CHECK(fcntl(pf, F_GETFL) == (O_PATH | O_NOFOLLOW | O_DIRECTORY));
    int pp[2];
    CHECK(pipe(pp) == 0);
    CHECK(fcntl(pp[0], F_GETFL) == O_RDONLY);

    /* a write by someone without CAP_FSETID drops setuid, setgid (with g+x) and the
     * file capabilities */
    char priv[256];
    snprintf(priv, sizeof priv, "%s/priv", dir);
    int pfd = open(priv, O_CREAT | O_WRONLY, 0777);
    CHECK(pfd >= 0);
    close(pfd);
    CHECK(chmod(priv, 06777) == 0);
    /* struct vfs_cap_data, revision 2: cap_net_raw permitted */
    uint32_t cap[5] = {0x02000000, 1u << 13, 0, 0, 0};
    CHECK(setxattr(priv, "security.capability", cap, sizeof cap, 0) == 0);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        if (setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534))
            _exit(2);
        int w = open(priv, O_WRONLY);
        if (w < 0 || write(w, "x", 1) != 1)
            _exit(3);
        _exit(0);
    }
    CHECK(waitpid(pid, &ws, 0) == pid && WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
    CHECK(stat(priv, &st) == 0 && (st.st_mode & 07777) == 0777);
    char capbuf[32];
    CHECK_ERR(getxattr(priv, "security.capability", capbuf, sizeof capbuf), ENODATA);
    CHECK(chmod(priv, 06777) == 0);
    CHECK(write(open(priv, O_WRONLY), "y", 1) == 1);            /* root keeps them */
    CHECK(stat(priv, &st) == 0 && (st.st_mode & 07777) == 06777);
    unlink(priv);

    unlink(link);
    unlink(path);
    rmdir(dir);
    ok();
    return 0;
}
