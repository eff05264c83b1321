/* The legacy vsyscall page: time() and gettimeofday() through it work, and a bad
 * pointer kills with SIGSEGV rather than returning EFAULT (Linux:
 * arch/x86/entry/vsyscall/vsyscall_64.c emulate_vsyscall). */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include "check.h"

typedef long (*time_fn)(long *);
typedef int (*gtod_fn)(struct timeval *, void *);
#define VTIME ((time_fn)0xffffffffff600400UL)
#define VGTOD ((gtod_fn)0xffffffffff600000UL)

static int dies_of_segv(int which)
{
    pid_t c = fork();
    if (c == 0) {
        if (which == 0)
            VTIME((long *)1);
        else
            VGTOD((struct timeval *)1, (void *)1);
        _exit(0);
    }
    int st;
    CHECK(waitpid(c, &st, 0) == c);
    return WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV;
}

int main(void)
{
    long t1 = time(NULL), t2 = 0;
    long r = VTIME(&t2);
    CHECK(r == t2 && t2 >= t1 && t2 - t1 < 60);
    struct timeval tv;
    CHECK(VGTOD(&tv, NULL) == 0 && tv.tv_sec >= t1);
    CHECK(dies_of_segv(0));
    CHECK(dies_of_segv(1));
    ok();
    return 0;
}
