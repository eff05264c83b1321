/* What a chrooted process sees: getcwd of a working directory left outside the
 * root ("(unreachable)..."), /proc/self/mounts and mountinfo with only the mounts
 * inside the root (their paths relative to it), and /proc/self/maps naming a
 * mapped file by its path inside the root.  Prints it; the test compares it with
 * Linux.
 *
 * Usage: chroot_view DIR.  Run as root; natively in a mount namespace of its own
 * (unshare -m --propagation private): it mounts things.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

static void dump(int proc, const char *name, int field)
{
    char buf[8192];
    int fd = openat(proc, name, O_RDONLY);
    CHECK(fd >= 0);
    ssize_t n = read(fd, buf, sizeof buf - 1);
    CHECK(n >= 0);
    buf[n] = 0;
    close(fd);
    printf("%s:", name);
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        char f[8][512];
        int k = sscanf(line, "%511s %511s %511s %511s %511s", f[0], f[1], f[2], f[3], f[4]);
        if (k > field)
            printf(" %s", f[field]);
    }
    printf("\n");
}

int main(int argc, char **argv)
{
    char outer[1024], inner[1100], file[1100];
    CHECK(argc == 2);
    setvbuf(stdout, NULL, _IONBF, 0);
    snprintf(outer, sizeof outer, "%s/outer", argv[1]);
    snprintf(inner, sizeof inner, "%s/inner", outer);
    CHECK(mkdir(outer, 0755) == 0);
    CHECK(mount("none", outer, "tmpfs", 0, "mode=0755") == 0);
    CHECK(mkdir(inner, 0755) == 0);
    CHECK(mount("none", inner, "tmpfs", 0, "mode=0755") == 0);
    snprintf(file, sizeof file, "%s/mapped", outer);
    int fd = open(file, O_CREAT | O_RDWR, 0644);
    CHECK(fd >= 0 && ftruncate(fd, 4096) == 0);
    close(fd);
    int proc = open("/proc", O_RDONLY | O_DIRECTORY);
    CHECK(proc >= 0);
    CHECK(chdir(argv[1]) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        CHECK(chroot(outer) == 0);
        char cwd[2048];
        CHECK(syscall(SYS_getcwd, cwd, sizeof cwd) > 0);    /* glibc refuses "(unr..." */
        const char *rest = strncmp(cwd, "(unreachable)", 13) == 0 ? cwd + 13 : cwd;
        printf("cwd unreachable: %d, rest is DIR: %d\n", rest != cwd,
               strcmp(rest, argv[1]) == 0);
        dump(proc, "self/mounts", 1);
        dump(proc, "self/mountinfo", 4);
        fd = open("/mapped", O_RDWR);
        CHECK(fd >= 0);
        void *m = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
        CHECK(m != MAP_FAILED);
        char buf[16384];
        int mf = openat(proc, "self/maps", O_RDONLY);
        ssize_t n = read(mf, buf, sizeof buf - 1);
        CHECK(n > 0);
        buf[n] = 0;
        printf("maps names /mapped: %d, the outside path: %d\n",
               strstr(buf, " /mapped\n") != NULL, strstr(buf, outer) != NULL);
        CHECK(chdir("/") == 0 && chroot("/inner") == 0);
        dump(proc, "self/mountinfo", 4);
        _exit(0);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ok();
    return 0;
}
