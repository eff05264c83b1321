/* Attacks on host files.
 *
 * Usage: files ATTACK PATH
 *   PATH is a host file the test created (in a world-readable temporary
 *   directory DIR) with known content. Each attack tries to change PATH or
 *   DIR; it reports what each call returned. Natively (as root) the calls
 *   succeed and the host changes; in the sandbox the host must not change
 *   (whatever the calls return: the sandbox may well let the program change
 *   its own copy-on-write view).
 */
#include "sec.h"
#include <libgen.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/uio.h>
#include <sys/xattr.h>

static const char *path;
static char dir[4096];

static void sub(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", dir, name);
}

static void write_via(const char *key, const char *p, int flags)
{
    char k[128];
    errno = 0;
    int fd = open(p, flags);
    snprintf(k, sizeof k, "%s_open", key);
    res(k, fd);
    if (fd >= 0) {
        snprintf(k, sizeof k, "%s_write", key);
        res(k, write(fd, "PWNED", 5));
        close(fd);
    }
}

/* What the program itself sees afterwards (its own view, not the host's). */
static void show_view(void)
{
    char buf[64] = {0};
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        kv("view", "absent:%s", ename(errno));
        return;
    }
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    for (ssize_t i = 0; i < n; i++)
        if (buf[i] < ' ' || buf[i] > '~')
            buf[i] = '.';
    kv("view", "%s", n >= 0 ? buf : "?");
}

int main(int argc, char **argv)
{
    USAGE(argc, 3, "files ATTACK PATH");
    const char *a = argv[1];
    path = argv[2];
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    snprintf(dir, sizeof dir, "%s", dirname(tmp));
    char p2[4096], p3[8192];

    if (!strcmp(a, "write")) {
        write_via("write", path, O_WRONLY);
    } else if (!strcmp(a, "append")) {
        write_via("append", path, O_WRONLY | O_APPEND);
    } else if (!strcmp(a, "pwritev")) {
        int fd = res("open", open(path, O_RDWR));
        char b1[] = "PW", b2[] = "NED";
        struct iovec iov[2] = {{b1, 2}, {b2, 3}};
        res("pwritev", pwritev(fd, iov, 2, 1));
        res("pwrite", pwrite(fd, "X", 1, 0));
        res("fsync", fsync(fd));
    } else if (!strcmp(a, "trunc")) {
        int fd = res("open_trunc", open(path, O_WRONLY | O_TRUNC));
        if (fd >= 0)
            close(fd);
    } else if (!strcmp(a, "truncate")) {
        res("truncate", truncate(path, 1));
        int fd = open(path, O_RDWR);
        res("ftruncate", ftruncate(fd, 100000));
        res("fallocate", fallocate(fd, 0, 0, 1 << 20));
    } else if (!strcmp(a, "creat")) {
        /* O_CREAT over an existing file, creat() and O_TMPFILE+linkat. */
        int fd = res("creat", creat(path, 0777));
        if (fd >= 0)
            res("creat_write", write(fd, "PWNED", 5));
        fd = res("o_tmpfile", open(dir, O_TMPFILE | O_RDWR, 0600));
        if (fd >= 0) {
            char pp[64];
            snprintf(pp, sizeof pp, "/proc/self/fd/%d", fd);
            sub(p2, sizeof p2, "from-tmpfile");
            res("tmpfile_link", linkat(AT_FDCWD, pp, AT_FDCWD, p2, AT_SYMLINK_FOLLOW));
        }
    } else if (!strcmp(a, "unlink")) {
        res("unlink", unlink(path));
        res("rmdir", rmdir(dir));
    } else if (!strcmp(a, "rename")) {
        snprintf(p2, sizeof p2, "%s.moved", path);
        res("rename", rename(path, p2));
        /* And replace it with a file of our own. */
        int fd = open("/tmp/.pyvisor-sec-replacement", O_CREAT | O_WRONLY, 0644);
        if (fd >= 0) {
            write(fd, "PWNED", 5);
            close(fd);
        }
        res("rename_over", rename("/tmp/.pyvisor-sec-replacement", path));
        sub(p3, sizeof p3, "renamed-dir");
        char d2[4096];
        snprintf(d2, sizeof d2, "%s", dir);
        res("rename_dir", rename(d2, p3));
    } else if (!strcmp(a, "chmod")) {
        res("chmod", chmod(path, 04777));
        res("chmod_dir", chmod(dir, 0777 | S_ISVTX));
    } else if (!strcmp(a, "chown")) {
        res("chown", chown(path, 12345, 12345));
        res("lchown", lchown(path, 23456, 23456));
    } else if (!strcmp(a, "utime")) {
        struct timespec ts[2] = {{12345, 0}, {12345, 0}};
        res("utimensat", utimensat(AT_FDCWD, path, ts, 0));
        res("utimes_dir", utimensat(AT_FDCWD, dir, ts, 0));
    } else if (!strcmp(a, "xattr")) {
        res("setxattr", setxattr(path, "user.pyvisor", "PWNED", 5, 0));
        res("setxattr_trusted", setxattr(path, "trusted.pyvisor", "PWNED", 5, 0));
        res("setxattr_security", setxattr(path, "security.capability",
                                          "\x01\x00\x00\x02\xff\xff\xff\xff\x00\x00\x00\x00"
                                          "\x00\x00\x00\x00\x00\x00\x00\x00",
                                          20, 0));
    } else if (!strcmp(a, "link")) {
        sub(p2, sizeof p2, "hardlink");
        res("link", link(path, p2));
        write_via("via_link", p2, O_WRONLY);
    } else if (!strcmp(a, "create")) {
        sub(p2, sizeof p2, "created");
        int fd = res("create", open(p2, O_CREAT | O_EXCL | O_WRONLY, 04755));
        if (fd >= 0)
            res("create_write", write(fd, "PWNED", 5));
        sub(p2, sizeof p2, "newdir");
        res("mkdir", mkdir(p2, 0777));
        sub(p2, sizeof p2, "newlink");
        res("symlink", symlink("/etc/shadow", p2));
        sub(p2, sizeof p2, "fifo");
        res("mkfifo", mknod(p2, S_IFIFO | 0666, 0));
        sub(p2, sizeof p2, "sock");
        res("mknod_sock", mknod(p2, S_IFSOCK | 0666, 0));
    } else if (!strcmp(a, "dotdot")) {
        /* ".." above the root is the root: these are all PATH itself. */
        res("chdir_up", chdir("/../../../.."));
        char cwd[4096] = "";
        getcwd(cwd, sizeof cwd);
        kv("cwd", "%s", cwd);
        snprintf(p2, sizeof p2, "/../../..%s", path);
        write_via("dotdot", p2, O_WRONLY);
        snprintf(p2, sizeof p2, "../../../../../../../../../../../../..%s", path);
        write_via("dotdot_rel", p2, O_WRONLY | O_APPEND);
        int rfd = open("/..", O_RDONLY | O_DIRECTORY);
        res("open_rootdotdot", rfd);
        res("openat_dotdot", openat(rfd, path + 1, O_WRONLY | O_APPEND));
        struct stat a1, a2;
        stat("/", &a1);
        stat("/..", &a2);
        kv("root_is_dotdot", "%d", a1.st_ino == a2.st_ino && a1.st_dev == a2.st_dev);
        /* "/../../etc/shadow" is just /etc/shadow (of the sandbox's view). */
        struct stat s1, s2;
        int r1 = stat("/../../etc/shadow", &s1), r2 = stat("/etc/shadow", &s2);
        kv("shadow_same", "%d", r1 == 0 && r2 == 0 && s1.st_ino == s2.st_ino &&
                                    s1.st_dev == s2.st_dev);
    } else if (!strcmp(a, "symlink")) {
        /* A symlink we make, pointing at PATH, absolute and relative. */
        snprintf(p2, sizeof p2, "/tmp/.pyvisor-sec-lnk-%d", getpid());
        unlink(p2);
        res("symlink", symlink(path, p2));
        write_via("via_symlink", p2, O_WRONLY | O_APPEND);
        snprintf(p3, sizeof p3, "../../../../../../../../..%s", path);
        unlink(p2);
        res("symlink_rel", symlink(p3, p2));
        write_via("via_symlink_rel", p2, O_WRONLY | O_APPEND);
        unlink(p2);
        /* A symlink to the directory, then a file created through it. */
        res("symlink_dir", symlink(dir, p2));
        snprintf(p3, sizeof p3, "%s/through-symlink", p2);
        int fd = res("create_via_dirlink", open(p3, O_CREAT | O_WRONLY, 0644));
        if (fd >= 0)
            close(fd);
        unlink(p2);
    } else if (!strcmp(a, "procroot")) {
        snprintf(p2, sizeof p2, "/proc/self/root%s", path);
        write_via("self_root", p2, O_WRONLY | O_APPEND);
        snprintf(p2, sizeof p2, "/proc/1/root%s", path);
        write_via("init_root", p2, O_WRONLY | O_APPEND);
        snprintf(p2, sizeof p2, "/proc/self/cwd/../../../../../../../..%s", path);
        write_via("self_cwd", p2, O_WRONLY | O_APPEND);
        snprintf(p2, sizeof p2, "/proc/thread-self/root%s", path);
        write_via("thread_self_root", p2, O_WRONLY | O_APPEND);
        char link[4096] = "";
        ssize_t n = readlink("/proc/self/root", link, sizeof link - 1);
        kv("self_root_link", "%s", n >= 0 ? link : ename(errno));
    } else if (!strcmp(a, "procfd")) {
        /* Reopen a read-only (or O_PATH) fd for writing through /proc. */
        int fd = res("open_ro", open(path, O_RDONLY));
        snprintf(p2, sizeof p2, "/proc/self/fd/%d", fd);
        write_via("reopen_rw", p2, O_RDWR | O_APPEND);
        int pfd = res("open_path", open(path, O_PATH));
        snprintf(p2, sizeof p2, "/proc/self/fd/%d", pfd);
        write_via("reopen_path", p2, O_WRONLY | O_APPEND);
        snprintf(p2, sizeof p2, "/proc/1/fd/%d", fd);
        write_via("reopen_init", p2, O_WRONLY | O_APPEND);
        snprintf(p2, sizeof p2, "/dev/fd/%d", fd);
        write_via("reopen_devfd", p2, O_WRONLY | O_APPEND);
        res("fchmod_ro", fchmod(fd, 04777));
        res("fchown_ro", fchown(fd, 12345, 12345));
    } else if (!strcmp(a, "mmap")) {
        /* A shared writable mapping: the file pages must be the sandbox's
         * copy, never the host's. */
        int fd = res("open", open(path, O_RDWR));
        char *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        kv("mmap", "%s", m == MAP_FAILED ? ename(errno) : "ok");
        if (m != MAP_FAILED) {
            memcpy(m, "PWNED", 5);
            res("msync", msync(m, 4096, MS_SYNC));
            munmap(m, 4096);
        }
        close(fd);
        /* Read-only open, shared mapping, then ask for write access. */
        fd = res("open_ro", open(path, O_RDONLY));
        m = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
        kv("mmap_ro", "%s", m == MAP_FAILED ? ename(errno) : "ok");
        if (m != MAP_FAILED) {
            if (res("mprotect_w", mprotect(m, 4096, PROT_READ | PROT_WRITE)) == 0) {
                memcpy(m + 5, "PWNED", 5);
                msync(m, 4096, MS_SYNC);
            }
            munmap(m, 4096);
        }
        /* A private mapping written: copy-on-write, never the file. */
        m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
        if (m != MAP_FAILED) {
            memcpy(m, "PRIVATE", 7);
            msync(m, 4096, MS_SYNC);
            munmap(m, 4096);
        }
    } else if (!strcmp(a, "copy")) {
        /* Data moved into PATH by copy_file_range and sendfile. */
        int src = open("/proc/self/exe", O_RDONLY);
        int dst = res("open", open(path, O_WRONLY));
        loff_t off = 0;
        res("copy_file_range", copy_file_range(src, NULL, dst, &off, 16, 0));
        res("lseek", lseek(dst, 100, SEEK_SET));
        res("sendfile", sendfile(dst, src, NULL, 16));
        res("dup2_1", dup2(dst, 1) < 0 ? -1 : 0);
        /* stdout is now PATH: what we print goes to it. */
        printf("PWNED-VIA-STDOUT\n");
        fflush(stdout);
        return 0;
    } else {
        fprintf(stderr, "unknown attack %s\n", a);
        return 2;
    }
    show_view();
    return 0;
}
