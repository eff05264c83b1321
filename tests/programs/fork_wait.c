/* fork, wait4, waitpid WNOHANG, exit codes, WIFSIGNALED, getpid/getppid,
 * vfork + _exit. */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include "check.h"

int main(void)
{
    int status;
    pid_t me = getpid();
    CHECK(me > 0);

    /* Exit codes pass through, and the child sees us as its parent. */
    for (int code = 0; code < 256; code += 85) {
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0)
            _exit(getppid() == me && getpid() != me ? code : 255 - code);
        struct rusage ru;
        CHECK(wait4(pid, &status, 0, &ru) == pid);
        CHECK(WIFEXITED(status));
        CHECK(WEXITSTATUS(status) == code);
    }

    /* WNOHANG returns 0 while the child runs; then it is reaped once. */
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        char c;
        close(p[1]);
        _exit(read(p[0], &c, 1) == 0 ? 7 : 8);
    }
    close(p[0]);
    CHECK(waitpid(pid, &status, WNOHANG) == 0);
    close(p[1]);
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 7);
    CHECK_ERR(waitpid(pid, &status, WNOHANG), ECHILD);
    CHECK_ERR(waitpid(-1, &status, 0), ECHILD);

    /* A killed child reports WIFSIGNALED with the signal. */
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        for (;;)
            pause();
    }
    CHECK(kill(pid, SIGKILL) == 0);
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

    /* waitpid(-1) collects several children, each once. */
    pid_t kids[3];
    for (int i = 0; i < 3; i++) {
        kids[i] = fork();
        CHECK(kids[i] >= 0);
        if (kids[i] == 0)
            _exit(10 + i);
    }
    int seen = 0;
    for (int i = 0; i < 3; i++) {
        pid_t w = waitpid(-1, &status, 0);
        CHECK(w > 0 && WIFEXITED(status));
        for (int j = 0; j < 3; j++)
            if (w == kids[j]) {
                CHECK(WEXITSTATUS(status) == 10 + j);
                seen |= 1 << j;
            }
    }
    CHECK(seen == 7);

    /* vfork: the parent is suspended until the child calls _exit. */
    volatile int shared = 0;
    pid = vfork();
    CHECK(pid >= 0);
    if (pid == 0) {
        shared = 42;  /* same memory as the parent until _exit */
        _exit(5);
    }
    CHECK(shared == 42);
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 5);

    CHECK(getpid() == me);
    ok();
    return 0;
}
