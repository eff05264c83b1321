/* File locks between processes (issue #10): flock, POSIX record locks with
 * ranges, F_GETLK, blocking F_SETLKW, EDEADLK, release on close, OFD locks. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/wait.h>
#include "check.h"

static char path[] = "/tmp/locks.XXXXXX";

static int setlk(int fd, int cmd, short type, off_t start, off_t len)
{
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
    return fcntl(fd, cmd, &fl);
}

/* Runs fn in a child; returns its exit code. */
static int in_child(int (*fn)(int), int arg)
{
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0)
        _exit(fn(arg));
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st));
    return WEXITSTATUS(st);
}

static int child_flock_nb(int ex)
{
    int fd = open(path, O_RDWR);
    if (flock(fd, (ex ? LOCK_EX : LOCK_SH) | LOCK_NB) == 0)
        return 0;
    return errno == EWOULDBLOCK ? 1 : 2;
}

static int child_setlk(int spec)
{
    /* spec: type * 1000 + start; length 10 */
    int fd = open(path, O_RDWR);
    if (setlk(fd, F_SETLK, spec / 1000, spec % 1000, 10) == 0)
        return 0;
    return errno == EAGAIN ? 1 : 2;
}

static void flocks(int fd)
{
    CHECK(flock(fd, LOCK_SH) == 0);
    CHECK(in_child(child_flock_nb, 0) == 0);          /* shared with shared */
    CHECK(in_child(child_flock_nb, 1) == 1);          /* not exclusive */
    CHECK(flock(fd, LOCK_EX) == 0);                   /* conversion */
    CHECK(in_child(child_flock_nb, 0) == 1);
    /* Another description of the same file conflicts too, even in this process. */
    int fd2 = open(path, O_RDWR);
    CHECK_ERR(flock(fd2, LOCK_SH | LOCK_NB), EWOULDBLOCK);
    /* A dup shares the description, hence the lock. */
    int d = dup(fd);
    CHECK(flock(d, LOCK_EX | LOCK_NB) == 0);
    close(d);
    CHECK(in_child(child_flock_nb, 0) == 1);          /* still held through fd */
    CHECK(flock(fd, LOCK_UN) == 0);
    CHECK(flock(fd2, LOCK_EX | LOCK_NB) == 0);
    close(fd2);                                       /* last close releases it */
    CHECK(in_child(child_flock_nb, 1) == 0);
    CHECK_ERR(flock(fd, 0x40), EINVAL);
}

static void record_locks(int fd)
{
    CHECK(setlk(fd, F_SETLK, F_WRLCK, 0, 10) == 0);
    CHECK(setlk(fd, F_SETLK, F_RDLCK, 20, 10) == 0);
    CHECK(in_child(child_setlk, F_RDLCK * 1000 + 5) == 1);     /* overlaps the write lock */
    CHECK(in_child(child_setlk, F_RDLCK * 1000 + 20) == 0);    /* read + read */
    CHECK(in_child(child_setlk, F_WRLCK * 1000 + 25) == 1);
    CHECK(in_child(child_setlk, F_WRLCK * 1000 + 10) == 0);    /* the gap [10, 20) */
    /* Downgrade part of the write lock: the rest stays. */
    CHECK(setlk(fd, F_SETLK, F_RDLCK, 0, 5) == 0);
    CHECK(in_child(child_setlk, F_RDLCK * 1000 + 0) == 1);     /* [5, 10) still written */
    /* Unlock a middle piece: the lock splits. */
    CHECK(setlk(fd, F_SETLK, F_UNLCK, 5, 5) == 0);
    CHECK(in_child(child_setlk, F_WRLCK * 1000 + 500) == 0);
    /* F_GETLK from another process names us. */
    pid_t me = getpid();
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int cfd = open(path, O_RDWR);
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
        if (fcntl(cfd, F_GETLK, &fl) != 0 || fl.l_type != F_RDLCK || fl.l_pid != me ||
            fl.l_start != 0 || fl.l_len != 5)
            _exit(1);
        struct flock none = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 100,
                             .l_len = 1};
        if (fcntl(cfd, F_GETLK, &none) != 0 || none.l_type != F_UNLCK)
            _exit(2);
        _exit(0);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* Closing any fd of the file drops this process's record locks. */
    int other = open(path, O_RDONLY);
    close(other);
    CHECK(in_child(child_setlk, F_WRLCK * 1000 + 0) == 0);
    CHECK(in_child(child_setlk, F_WRLCK * 1000 + 20) == 0);
    /* Bad arguments. */
    CHECK_ERR(setlk(fd, F_SETLK, 7, 0, 1), EINVAL);
    CHECK_ERR(setlk(fd, F_SETLK, F_RDLCK, -5, 1), EINVAL);
    int ro = open(path, O_RDONLY);
    CHECK_ERR(setlk(ro, F_SETLK, F_WRLCK, 0, 1), EBADF);
    close(ro);
}

static void blocking_and_deadlock(int fd)
{
    /* We hold [0,1); the child holds [1,2) and then waits for [0,1). */
    CHECK(setlk(fd, F_SETLK, F_WRLCK, 0, 1) == 0);
    int ready[2];
    CHECK(pipe(ready) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int cfd = open(path, O_RDWR);
        if (setlk(cfd, F_SETLK, F_WRLCK, 1, 1) != 0)
            _exit(1);
        CHECK(write(ready[1], "x", 1) == 1);
        if (setlk(cfd, F_SETLKW, F_WRLCK, 0, 1) != 0)     /* sleeps until we unlock */
            _exit(2);
        _exit(0);
    }
    char c;
    CHECK(read(ready[0], &c, 1) == 1);
    usleep(100000);                                    /* let it block */
    /* Waiting for [1,2) now would close the cycle. */
    CHECK_ERR(setlk(fd, F_SETLKW, F_WRLCK, 1, 1), EDEADLK);
    CHECK(setlk(fd, F_SETLK, F_UNLCK, 0, 1) == 0);
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    close(ready[0]);
    close(ready[1]);
}

static void ofd_locks(void)
{
    int a = open(path, O_RDWR), b = open(path, O_RDWR);
    CHECK(a >= 0 && b >= 0);
    /* OFD locks belong to the description: two in one process conflict. */
    CHECK(setlk(a, F_OFD_SETLK, F_WRLCK, 0, 10) == 0);
    CHECK_ERR(setlk(b, F_OFD_SETLK, F_WRLCK, 5, 10), EAGAIN);
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
    CHECK(fcntl(b, F_OFD_GETLK, &fl) == 0 && fl.l_type == F_WRLCK && fl.l_pid == -1);
    struct flock badpid = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_pid = 1};
    CHECK_ERR(fcntl(b, F_OFD_SETLK, &badpid), EINVAL);
    close(a);                                          /* the description goes */
    CHECK(setlk(b, F_OFD_SETLK, F_WRLCK, 5, 10) == 0);
    close(b);
}

int main(void)
{
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK(write(fd, "0123456789", 10) == 10);
    flocks(fd);
    record_locks(fd);
    blocking_and_deadlock(fd);
    ofd_locks();
    close(fd);
    unlink(path);
    ok();
    return 0;
}
