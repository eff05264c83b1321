/* Malformed and oversized arguments: huge argv/envp, symlink loops, long
 * paths, deep directories.
 *
 * Usage: limits ATTACK DIR
 *   DIR is a writable directory (natively the test's; in the sandbox a path
 *   under /tmp, which lands in the sandbox's own upper layer).
 *   Every result is reported; natively and in the sandbox they must agree.
 */
#include "sec.h"
#include <poll.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/time.h>

static const char *dir;

static long try_exec(char **av, char **ev)
{
    pid_t pid = fork();
    if (pid == 0) {
        execve("/bin/true", av, ev);
        _exit(100 + errno);   /* errno as the exit status */
    }
    int status;
    waitpid(pid, &status, 0);
    if (WIFEXITED(status) && WEXITSTATUS(status) >= 100) {
        errno = WEXITSTATUS(status) - 100;
        return -1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1000 - WTERMSIG(status);
}

static void mkpath(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", dir, name);
}

int main(int argc, char **argv)
{
    USAGE(argc, 3, "limits ATTACK DIR");
    const char *a = argv[1];
    dir = argv[2];
    mkdir(dir, 0755);
    char p[8192], q[8192];

    if (!strcmp(a, "argv")) {
        /* 3 MiB of arguments (1 KiB each), > ARG_MAX (stack limit / 4). */
        int n = 3 * 1024;
        char **av = calloc(n + 2, sizeof *av);
        char *s = malloc(1024);
        memset(s, 'A', 1023);
        s[1023] = 0;
        av[0] = "true";
        for (int i = 1; i <= n; i++)
            av[i] = s;
        char *ev[] = {NULL};
        res("argv_3mib", try_exec(av, ev));
        /* One argument of 200 KiB (> MAX_ARG_STRLEN, 128 KiB). */
        char *big = malloc(200 * 1024);
        memset(big, 'B', 200 * 1024 - 1);
        big[200 * 1024 - 1] = 0;
        char *av2[] = {"true", big, NULL};
        res("arg_200kib", try_exec(av2, ev));
        /* 3 MiB of environment. */
        char **ev3 = calloc(n + 1, sizeof *ev3);
        char *e = malloc(1024);
        memset(e, 'E', 1023);
        e[0] = 'X';
        e[1] = '=';
        e[1023] = 0;
        for (int i = 0; i < n; i++)
            ev3[i] = e;
        char *av3[] = {"true", NULL};
        res("envp_3mib", try_exec(av3, ev3));
        /* 4 million pointers to the same empty string (32 MiB of pointers). */
        long m = 4L << 20;
        char **many = malloc((m + 2) * sizeof *many);
        many[0] = "true";
        for (long i = 1; i <= m; i++)
            many[i] = "";
        many[m + 1] = NULL;
        res("argv_4m_pointers", try_exec(many, ev));
        /* An argv array that runs off the end of a mapping (no NULL). */
        char **edge = mmap(NULL, 8192, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        munmap((char *)edge + 4096, 4096);
        for (int i = 0; i < 512; i++)
            edge[i] = "x";
        res("argv_unterminated", try_exec(edge, ev));
        /* A pointer into unmapped memory in argv. */
        char *badp[] = {"true", (char *)0x10, NULL};
        res("argv_bad_pointer", try_exec(badp, ev));
        /* Just under the limit still works. */
        char **ok = calloc(101, sizeof *ok);
        ok[0] = "true";
        for (int i = 1; i < 100; i++)
            ok[i] = s;
        res("argv_100k", try_exec(ok, ev));
    } else if (!strcmp(a, "eloop")) {
        mkpath(p, sizeof p, "loop-a");
        mkpath(q, sizeof q, "loop-b");
        unlink(p);
        unlink(q);
        symlink(q, p);
        symlink(p, q);
        res("loop_pair", open(p, O_RDONLY));
        res("loop_pair_creat", open(p, O_CREAT | O_WRONLY, 0644));
        mkpath(p, sizeof p, "self");
        unlink(p);
        symlink("self", p);
        res("loop_self", open(p, O_RDONLY));
        res("loop_self_stat", stat(p, &(struct stat){0}));
        res("loop_self_chdir", chdir(p));
        /* Chains of 39 and 41 links to a real file: 40 is the limit. */
        mkpath(p, sizeof p, "real");
        close(open(p, O_CREAT | O_WRONLY, 0644));
        for (int i = 0; i <= 41; i++) {
            char from[64], to[64];
            snprintf(from, sizeof from, "%s/chain%d", dir, i);
            if (i == 0)
                snprintf(to, sizeof to, "real");
            else
                snprintf(to, sizeof to, "chain%d", i - 1);
            unlink(from);
            symlink(to, from);
        }
        mkpath(p, sizeof p, "chain39");
        res("chain_40", open(p, O_RDONLY));
        mkpath(p, sizeof p, "chain41");
        res("chain_42", open(p, O_RDONLY));
        /* A link to "." used 50 times in one path: 50 follows > 40. */
        mkpath(p, sizeof p, "dot");
        unlink(p);
        symlink(".", p);
        int len = snprintf(p, sizeof p, "%s", dir);
        for (int i = 0; i < 50; i++)
            len += snprintf(p + len, sizeof p - len, "/dot");
        snprintf(p + len, sizeof p - len, "/real");
        res("dot_links_50", open(p, O_RDONLY));
        len = snprintf(p, sizeof p, "%s", dir);
        for (int i = 0; i < 30; i++)
            len += snprintf(p + len, sizeof p - len, "/dot");
        snprintf(p + len, sizeof p - len, "/real");
        res("dot_links_30", open(p, O_RDONLY));
        /* O_NOFOLLOW on a link. */
        mkpath(p, sizeof p, "chain0");
        res("nofollow", open(p, O_RDONLY | O_NOFOLLOW));
    } else if (!strcmp(a, "longpath")) {
        /* 5000 bytes: ENAMETOOLONG before any lookup. */
        char *lp = malloc(5001);
        memset(lp, 'a', 5000);
        lp[0] = '/';
        lp[5000] = 0;
        res("path_5000", open(lp, O_RDONLY));
        res("path_5000_creat", open(lp, O_CREAT | O_WRONLY, 0644));
        res("path_5000_mkdir", mkdir(lp, 0755));
        /* A 256-byte component. */
        char comp[300];
        memset(comp, 'c', 256);
        comp[256] = 0;
        snprintf(p, sizeof p, "%s/%s", dir, comp);
        res("component_256", open(p, O_CREAT | O_WRONLY, 0644));
        comp[255] = 0;
        snprintf(p, sizeof p, "%s/%s", dir, comp);
        res("component_255", open(p, O_CREAT | O_WRONLY, 0644));
        /* Exactly PATH_MAX (4096 with the NUL) and one less, made of "./". */
        mkpath(q, sizeof q, "f");
        close(open(q, O_CREAT | O_WRONLY, 0644));
        if (chdir(dir) != 0)
            die("chdir");
        char *dots = malloc(4200);
        int k = 0;
        for (int i = 0; i < 2047; i++, k += 2)
            memcpy(dots + k, "./", 2);
        memcpy(dots + k, "f", 2);        /* "./" * 2047 + "f": 4095 bytes */
        res("path_4095", open(dots, O_RDONLY));
        k = 0;
        memcpy(dots, ".//", 3);
        k = 3;
        for (int i = 0; i < 2046; i++, k += 2)
            memcpy(dots + k, "./", 2);
        memcpy(dots + k, "f", 2);        /* ".//" + "./" * 2046 + "f": 4096 bytes */
        res("path_4096", open(dots, O_RDONLY));
        /* A path with 2000 ".." components still inside PATH_MAX. */
        char *ups = malloc(8200);
        int l = 0;
        for (int i = 0; i < 1300; i++)
            l += snprintf(ups + l, 8200 - l, "../");
        snprintf(ups + l, 8200 - l, "etc/hostname");
        res("dotdot_1300", open(ups, O_RDONLY));
    } else if (!strcmp(a, "deepdir")) {
        /* 3000 nested directories, made by mkdir + chdir. */
        if (chdir(dir) != 0)
            die("chdir");
        int depth = 0, e = 0;
        for (; depth < 3000; depth++) {
            if (mkdir("d", 0755) != 0 && errno != EEXIST) {
                e = errno;
                break;
            }
            if (chdir("d") != 0) {
                e = errno;
                break;
            }
        }
        kv("depth", "%d", depth);
        kv("depth_errno", "%s", ename(e));
        char cwd[4096];
        res("getcwd", syscall(SYS_getcwd, cwd, sizeof cwd));
        char *big = malloc(1 << 16);
        res("getcwd_64k", syscall(SYS_getcwd, big, 1 << 16));
        res("create_deep", open("file", O_CREAT | O_WRONLY, 0644));
        res("stat_dot", stat(".", &(struct stat){0}));
        res("open_proc_cwd", open("/proc/self/cwd", O_RDONLY | O_DIRECTORY));
        char link[256];
        res("readlink_proc_cwd", readlink("/proc/self/cwd", link, sizeof link));
        /* Climb out with ".." 3000 times, removing on the way. */
        unlink("file");
        int up = 0;
        for (; up < depth; up++) {
            if (chdir("..") != 0)
                break;
            if (rmdir("d") != 0)
                break;
        }
        kv("climbed", "%d", up);
    } else if (!strcmp(a, "mincore_huge")) {
        /* Found by the fuzzer: a huge length must give an error, not make the
         * kernel build a huge answer first. */
        char *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                       -1, 0);
        res("mincore_2p50", syscall(SYS_mincore, m, 1UL << 50, m));
        res("mincore_2p63", syscall(SYS_mincore, m, 1UL << 63, m));
        res("mincore_ok", syscall(SYS_mincore, m, 4096UL, m));
    } else if (!strcmp(a, "big_ids")) {
        /* Found by the fuzzer: ids above 2^31 (valid: uid_t is unsigned). */
        mkpath(p, sizeof p, "owned");
        int fd = open(p, O_CREAT | O_RDWR, 0644);
        res("fchown_big", fchown(fd, 3000000000U, 3000000001U));
        struct stat st;
        res("fstat", fstat(fd, &st));
        kv("st_uid", "%u", st.st_uid);
        kv("st_gid", "%u", st.st_gid);
        pid_t pid = fork();
        if (pid == 0) {
            res("setresgid_big", syscall(SYS_setresgid, 3000000000UL, 3000000000UL,
                                         3000000000UL));
            gid_t g[3] = {0};
            res("getresgid", getresgid(&g[0], &g[1], &g[2]));
            kv("gid", "%u", g[0]);
            res("setresuid_big", syscall(SYS_setresuid, 3000000000UL, 3000000000UL,
                                         3000000000UL));
            uid_t u[3] = {0};
            res("getresuid", getresuid(&u[0], &u[1], &u[2]));
            kv("uid", "%u", u[0]);
            kv("getuid", "%u", getuid());
            fflush(stdout);
            _exit(0);
        }
        int status;
        waitpid(pid, &status, 0);
        status_kv("child", status);
    } else if (!strcmp(a, "huge_timeout")) {
        /* A sleep or timer with a huge (valid) time, in a child the parent
         * kills after 0.3 s. Linux just waits. argv[3] names the call. */
        USAGE(argc, 4, "limits huge_timeout DIR CALL");
        const char *c = argv[3];
        pid_t pid = fork();
        if (pid == 0) {
            struct timespec big = {0x7fffffffffffffffL, 999999999};
            struct timeval bigtv = {0x7fffffffffffffffL, 999999};
            int pfd[2];
            pipe(pfd);
            if (!strcmp(c, "alarm")) {
                alarm(4000000000U);
                pause();
            } else if (!strcmp(c, "setitimer")) {
                struct itimerval v = {{0x7fffffffffffffffL, 0}, {0x7fffffffffffffffL, 0}};
                setitimer(ITIMER_REAL, &v, NULL);
                pause();
            } else if (!strcmp(c, "nanosleep")) {
                nanosleep(&big, NULL);
            } else if (!strcmp(c, "clock_nanosleep_abs")) {
                clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &big, NULL);
            } else if (!strcmp(c, "select")) {
                fd_set r;
                FD_ZERO(&r);
                FD_SET(pfd[0], &r);
                syscall(SYS_select, pfd[0] + 1, &r, NULL, NULL, &bigtv);
            } else if (!strcmp(c, "ppoll")) {
                struct pollfd pf = {pfd[0], POLLIN, 0};
                syscall(SYS_ppoll, &pf, 1, &big, NULL, 8);
            } else if (!strcmp(c, "poll")) {
                struct pollfd pf = {pfd[0], POLLIN, 0};
                poll(&pf, 1, 0x7fffffff);
            } else if (!strcmp(c, "futex")) {
                int word = 0;
                syscall(SYS_futex, &word, 0 /* FUTEX_WAIT */, 0, &big, NULL, 0);
            } else if (!strcmp(c, "rt_sigtimedwait")) {
                sigset_t set;
                sigemptyset(&set);
                sigaddset(&set, SIGUSR1);
                sigprocmask(SIG_BLOCK, &set, NULL);
                syscall(SYS_rt_sigtimedwait, &set, NULL, &big, 8);
            } else if (!strcmp(c, "epoll_wait")) {
                int ep = epoll_create1(0);
                struct epoll_event ev;
                epoll_wait(ep, &ev, 1, 0x7fffffff);
            }
            _exit(0);
        }
        usleep(300 * 1000);
        res("kill_child", kill(pid, SIGKILL));
        int status;
        waitpid(pid, &status, 0);
        status_kv("child", status);
    } else {
        fprintf(stderr, "unknown attack %s\n", a);
        return 2;
    }
    kv("alive", "%d", 1);
    return 0;
}
