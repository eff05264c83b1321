/* PR_SET_PDEATHSIG fires when the parent *thread* exits; PR_SET_CHILD_SUBREAPER
 * adopts orphaned descendants (and is not inherited by fork); PR_SET_MM needs
 * CAP_SYS_RESOURCE.  Linux: kernel/exit.c forget_original_parent,
 * find_new_reaper; kernel/sys.c prctl_set_mm. */
#define _GNU_SOURCE
#include <linux/capability.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include "check.h"

static pid_t child;
static int ready[2];

static void *forker(void *arg)
{
    child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        CHECK(prctl(PR_SET_PDEATHSIG, SIGKILL) == 0);
        int sig = 0;
        CHECK(prctl(PR_GET_PDEATHSIG, &sig) == 0 && sig == SIGKILL);
        CHECK(write(ready[1], "r", 1) == 1);
        for (;;)
            pause();
    }
    char c;
    CHECK(read(ready[0], &c, 1) == 1);
    return arg;                  /* this thread exits: the child gets SIGKILL */
}

int main(void)
{
    int sig = -1;
    CHECK(prctl(PR_GET_PDEATHSIG, &sig) == 0 && sig == 0);
    CHECK_ERR(prctl(PR_SET_PDEATHSIG, 65), EINVAL);
    CHECK(pipe(ready) == 0);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, forker, NULL) == 0);
    CHECK(pthread_join(th, NULL) == 0);
    int st;
    CHECK(waitpid(child, &st, 0) == child);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);

    /* Subreaper: a grandchild orphaned by its parent comes to us. */
    int is = -1;
    CHECK(prctl(PR_GET_CHILD_SUBREAPER, &is) == 0 && is == 0);
    CHECK(prctl(PR_SET_CHILD_SUBREAPER, 42) == 0);
    CHECK(prctl(PR_GET_CHILD_SUBREAPER, &is) == 0 && is == 1);
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t me = getpid();
    pid_t mid = fork();
    if (mid == 0) {
        int x = -1;
        CHECK(prctl(PR_GET_CHILD_SUBREAPER, &x) == 0 && x == 0);
        pid_t g = fork();
        if (g == 0) {
            char c;
            CHECK(read(p[0], &c, 1) == 1);         /* until the middle one is gone */
            _exit(getppid() == me ? 7 : 8);
        }
        _exit(0);
    }
    CHECK(waitpid(mid, &st, 0) == mid && WIFEXITED(st));
    CHECK(write(p[1], "g", 1) == 1);
    pid_t g = wait(&st);                           /* the adopted grandchild */
    CHECK(g > 0 && g != mid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 7);
    CHECK_ERR(wait(&st), ECHILD);
    CHECK(prctl(PR_SET_CHILD_SUBREAPER, 0) == 0);

    /* PR_SET_MM: MAP_SIZE for anyone; the rest needs CAP_SYS_RESOURCE. */
    unsigned size = 0;
    CHECK(prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE, &size, 0, 0) == 0 && size == 104);
    CHECK_ERR(prctl(PR_SET_MM, PR_SET_MM_START_BRK, 0, 1, 0), EINVAL);
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    CHECK(syscall(SYS_capget, &h, d) == 0);
    d[CAP_SYS_RESOURCE / 32].effective &= ~(1u << (CAP_SYS_RESOURCE % 32));
    CHECK(syscall(SYS_capset, &h, d) == 0);
    CHECK_ERR(prctl(PR_SET_MM, 0, 0, 0, 0), EPERM);
    ok();
    return 0;
}
