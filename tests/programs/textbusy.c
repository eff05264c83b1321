/* ETXTBSY: a running executable cannot be written, a file open for writing cannot run.
 *
 * Usage: textbusy DIR     (DIR: a writable directory for a copy of this program)
 *        textbusy --child  (what the copy runs: exits 7)
 *        textbusy --wait FD (the copy waits for EOF on FD, then exits 0)
 * Prints "ok" and exits 0 when every check holds.
 */
#include "check.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>

static char self[4096];

/* fork + execve(path, --child); the child's exec errno (as 100+errno) or exit status. */
static int run(const char *path)
{
    pid_t p = fork();
    CHECK(p >= 0);
    if (p == 0) {
        char *av[] = {(char *)path, "--child", NULL};
        execv(path, av);
        _exit(100 + errno);
    }
    int st;
    CHECK(waitpid(p, &st, 0) == p);
    CHECK(WIFEXITED(st));
    return WEXITSTATUS(st);
}

static void copy(const char *from, const char *to)
{
    int in = open(from, O_RDONLY);
    CHECK(in >= 0);
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0755);
    CHECK(out >= 0);
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0)
        CHECK(write(out, buf, n) == n);
    CHECK(n == 0);
    close(in);
    CHECK(close(out) == 0);
}

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "--child"))
        return 7;
    if (argc == 3 && !strcmp(argv[1], "--wait")) {
        char c;
        while (read(atoi(argv[2]), &c, 1) > 0)
            ;
        return 0;
    }
    CHECK(argc == 2);
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    CHECK(n > 0);
    self[n] = 0;

    /* Our own executable: not for writing, not even truncating; reading is fine. */
    CHECK_ERR(open("/proc/self/exe", O_WRONLY), ETXTBSY);
    CHECK_ERR(open("/proc/self/exe", O_RDWR), ETXTBSY);
    CHECK_ERR(open(self, O_WRONLY | O_TRUNC), ETXTBSY);
    CHECK_ERR(truncate("/proc/self/exe", 0), ETXTBSY);
    int r = open("/proc/self/exe", O_RDONLY);
    CHECK(r >= 0);
    close(r);

    /* A copy, held open for writing, cannot be executed; once closed, it can. */
    char copyp[4096];
    snprintf(copyp, sizeof copyp, "%s/textbusy-copy", argv[1]);
    copy(self, copyp);
    int w = open(copyp, O_WRONLY);
    CHECK(w >= 0);
    CHECK(run(copyp) == 100 + ETXTBSY);
    /* A duplicate of the writer keeps the file busy after the first fd is closed. */
    int w2 = dup(w);
    close(w);
    CHECK(run(copyp) == 100 + ETXTBSY);
    close(w2);
    CHECK(run(copyp) == 7);

    /* While a child runs the copy, it cannot be opened for writing; afterwards it can. */
    int pfd[2];
    CHECK(pipe(pfd) == 0);
    pid_t p = fork();
    CHECK(p >= 0);
    if (p == 0) {
        close(pfd[1]);
        char fdarg[16];
        snprintf(fdarg, sizeof fdarg, "%d", pfd[0]);
        char *av[] = {copyp, "--wait", fdarg, NULL};
        execv(copyp, av);
        _exit(100 + errno);
    }
    close(pfd[0]);
    /* Wait until the child has exec'd: its /proc/PID/exe names the copy. */
    char link[64], target[4096];
    snprintf(link, sizeof link, "/proc/%d/exe", p);
    for (int i = 0; i < 10000; i++) {
        ssize_t m = readlink(link, target, sizeof target - 1);
        if (m > 0) {
            target[m] = 0;
            if (strstr(target, "textbusy-copy"))
                break;
        }
        usleep(1000);
    }
    CHECK_ERR(open(copyp, O_WRONLY), ETXTBSY);
    /* A forked child of the runner holds its own copy of the address space: still busy. */
    r = open(copyp, O_RDONLY);
    CHECK(r >= 0);
    close(r);
    close(pfd[1]);
    int st;
    CHECK(waitpid(p, &st, 0) == p && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    w = open(copyp, O_WRONLY);
    CHECK(w >= 0);
    close(w);
    CHECK(unlink(copyp) == 0);
    ok();
    return 0;
}
