/* execve: /bin/true, ourselves with argv and envp, ENOENT, ENOEXEC for
 * garbage and for a truncated ELF.  The bad files are written into /tmp. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include "check.h"

extern char **environ;

/* Runs path with argv/envp in a child; returns its exit status, or
 * 1000 + errno if execve failed. */
static int spawn(const char *path, char *const argv[], char *const envp[])
{
    int p[2];
    CHECK(pipe2(p, O_CLOEXEC) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        execve(path, argv, envp);
        int e = errno;
        write(p[1], &e, sizeof e);
        _exit(127);
    }
    close(p[1]);
    int e = 0, status;
    ssize_t n = read(p[0], &e, sizeof e);
    close(p[0]);
    CHECK(waitpid(pid, &status, 0) == pid);
    if (n == sizeof e)
        return 1000 + e;
    CHECK(n == 0);
    CHECK(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0755);
    CHECK(fd >= 0);
    CHECK(write(fd, data, len) == (ssize_t)len);
    CHECK(fchmod(fd, 0755) == 0);
    CHECK(close(fd) == 0);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "child") == 0) {
        /* Exec'd by ourselves: check what the parent passed. */
        CHECK(argc == 4);
        CHECK(strcmp(argv[2], "two words") == 0);
        CHECK(strcmp(argv[3], "") == 0);
        CHECK(argv[4] == NULL);
        CHECK(getenv("PYVISOR_TEST") && strcmp(getenv("PYVISOR_TEST"), "yes") == 0);
        CHECK(getenv("OTHER") && strcmp(getenv("OTHER"), "a=b") == 0);
        CHECK(environ[0] && environ[1] && environ[2] == NULL);
        return 42;
    }

    char *true_argv[] = {"true", NULL};
    CHECK(spawn("/bin/true", true_argv, environ) == 0);

    char *self_argv[] = {argv[0], "child", "two words", "", NULL};
    char *self_envp[] = {"PYVISOR_TEST=yes", "OTHER=a=b", NULL};
    CHECK(spawn(argv[0], self_argv, self_envp) == 42);

    CHECK(spawn("/nonexistent/program", true_argv, environ) == 1000 + ENOENT);

    char dir[] = "/tmp/pyvisor-exec-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char garbage[256], truncated[256];
    snprintf(garbage, sizeof garbage, "%s/garbage", dir);
    snprintf(truncated, sizeof truncated, "%s/truncated", dir);

    unsigned char junk[512];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (unsigned char)(i * 37 + 11);
    junk[0] = 0x01;  /* not "#!" and not "\177ELF" */
    write_file(garbage, junk, sizeof junk);
    CHECK(spawn(garbage, true_argv, environ) == 1000 + ENOEXEC);

    /* Our own ELF header alone: the program headers are missing. */
    int fd = open(argv[0], O_RDONLY);
    CHECK(fd >= 0);
    unsigned char head[64];
    CHECK(read(fd, head, sizeof head) == sizeof head);
    CHECK(memcmp(head, "\177ELF", 4) == 0);
    close(fd);
    write_file(truncated, head, sizeof head);
    CHECK(spawn(truncated, true_argv, environ) == 1000 + ENOEXEC);

    /* A directory and a non-executable file are EACCES. */
    CHECK(spawn(dir, true_argv, environ) == 1000 + EACCES);
    CHECK(chmod(garbage, 0644) == 0);
    CHECK(spawn(garbage, true_argv, environ) == 1000 + EACCES);

    CHECK(unlink(garbage) == 0);
    CHECK(unlink(truncated) == 0);
    CHECK(rmdir(dir) == 0);
    ok();
    return 0;
}
