/* execveat: flag checks, AT_SYMLINK_NOFOLLOW, fd names (/dev/fd/N) and scripts
 * behind close-on-exec fds, AT_EXECFN of a script, exec unsharing a CLONE_FILES
 * table, setpgid after exec.  Linux: fs/exec.c, fs/binfmt_script.c. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include "check.h"

static char self[4096];
static char *noenv[] = {NULL, NULL};

/* Runs execveat in a child; returns the child's errno (0: it exec'd and exited 0). */
static int try_execveat(int dirfd, const char *path, char *const argv[], int flags)
{
    int p[2];
    CHECK(pipe2(p, O_CLOEXEC) == 0);
    pid_t c = fork();
    if (c == 0) {
        syscall(SYS_execveat, dirfd, path, argv, noenv, flags);
        int e = errno;
        CHECK(write(p[1], &e, sizeof e) == sizeof e);
        _exit(99);
    }
    close(p[1]);
    int e = 0, st;
    if (read(p[0], &e, sizeof e) != sizeof e)
        e = 0;
    close(p[0]);
    CHECK(waitpid(c, &st, 0) == c);
    if (!e)
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    return e;
}

static void write_file(const char *path, const char *text, int mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    CHECK(fd >= 0);
    CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    CHECK(close(fd) == 0);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "execfn") == 0) {
        /* As a script's interpreter: argv = self, execfn, script name. */
        const char *fn = (const char *)getauxval(AT_EXECFN);
        if (argc != 3 || strcmp(fn, argv[2]) != 0)
            return 3;
        const char *want = getenv("WANT");
        return want && strcmp(fn, want) != 0 ? 4 : 0;
    }
    if (argc > 1 && strcmp(argv[1], "true") == 0)
        return 0;
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    CHECK(n > 0);
    self[n] = 0;
    char dir[] = "/tmp/exec_at_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    CHECK(chdir(dir) == 0);

    char *tru[] = {"x", "true", NULL};
    CHECK(try_execveat(AT_FDCWD, self, tru, 0) == 0);
    CHECK(try_execveat(-1, "", tru, 0xFFFF) == EINVAL);
    CHECK(try_execveat(-1, "rel", tru, 0) == EBADF);
    CHECK(try_execveat(AT_FDCWD, "", tru, 0) == ENOENT);

    /* AT_SYMLINK_NOFOLLOW: a symlink at the end is ELOOP; the fd itself is fine. */
    CHECK(symlink(self, "link") == 0);
    CHECK(try_execveat(AT_FDCWD, "link", tru, AT_SYMLINK_NOFOLLOW) == ELOOP);
    CHECK(try_execveat(AT_FDCWD, "link", tru, 0) == 0);
    int fd = open("link", O_RDONLY | O_CLOEXEC);
    CHECK(fd >= 0);
    CHECK(try_execveat(fd, "", tru, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == 0);
    close(fd);

    /* A script named by a relative path: AT_EXECFN is that name. */
    char text[5000];
    snprintf(text, sizeof text, "#!%s execfn\n", self);
    write_file("script", text, 0755);
    char *sargv[] = {"./script", NULL};
    CHECK(try_execveat(AT_FDCWD, "./script", sargv, 0) == 0);
    /* Through a close-on-exec fd the script's name would be gone: ENOENT. */
    int dfd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CHECK(dfd >= 0);
    CHECK(try_execveat(dfd, "script", sargv, 0) == ENOENT);
    int sfd = open("script", O_RDONLY | O_CLOEXEC);
    CHECK(sfd >= 0);
    CHECK(try_execveat(sfd, "", sargv, AT_EMPTY_PATH) == ENOENT);
    close(sfd);
    close(dfd);
    /* Without close-on-exec it runs, named /dev/fd/N. */
    dfd = open(".", O_RDONLY | O_DIRECTORY);
    CHECK(dfd >= 0);
    char want[64];
    snprintf(want, sizeof want, "WANT=/dev/fd/%d/script", dfd);
    noenv[0] = want;
    CHECK(try_execveat(dfd, "script", sargv, 0) == 0);
    noenv[0] = NULL;
    close(dfd);

    /* A memfd script: the interpreter is given /dev/fd/N. */
    int mfd = syscall(SYS_memfd_create, "s", 0);
    CHECK(mfd >= 0);
    snprintf(text, sizeof text, "#!/bin/sh\n[ \"$0\" = /dev/fd/%d ] || exit 5\n", mfd);
    CHECK(write(mfd, text, strlen(text)) == (ssize_t)strlen(text));
    CHECK(try_execveat(mfd, "", sargv, AT_EMPTY_PATH) == 0);
    close(mfd);

    /* exec unshares a CLONE_FILES table: the parent's close-on-exec fd stays. */
    int keep = open(".", O_RDONLY | O_CLOEXEC);
    CHECK(keep >= 0);
    pid_t c = syscall(SYS_clone, SIGCHLD | CLONE_VFORK | CLONE_FILES, 0, 0, 0, 0);
    if (c == 0) {
        execve(self, tru, noenv);
        _exit(1);
    }
    int st;
    CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    struct stat sb;
    CHECK(fstat(keep, &sb) == 0);

    /* setpgid of a child: allowed before its exec, EACCES after. */
    int p[2];
    CHECK(pipe(p) == 0);
    c = fork();
    if (c == 0) {
        char ch;
        CHECK(read(p[0], &ch, 1) == 1);
        char *pause_argv[] = {"x", "true", NULL};
        execve(self, pause_argv, noenv);
        _exit(1);
    }
    CHECK(setpgid(c, c) == 0);
    CHECK(getpgid(c) == c);
    CHECK_ERR(setpgid(c, 0x3fffffff), EPERM);         /* no such group */
    CHECK(write(p[1], "x", 1) == 1);
    for (int i = 0; i < 1000; i++) {
        if (setpgid(c, c) == -1) {
            CHECK(errno == EACCES || errno == ESRCH);
            break;
        }
        usleep(1000);
    }
    CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0);

    unlink("link");
    unlink("script");
    CHECK(chdir("/") == 0);
    CHECK(rmdir(dir) == 0);
    ok();
    return 0;
}
