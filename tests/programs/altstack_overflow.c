/* A handler that keeps re-raising its signal on the alternate stack walks down
 * it; when the next frame would not fit, the task dies of SIGSEGV instead of
 * writing below the stack (Linux: get_sigframe's on-stack check). */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include "check.h"

#define ALT (64 * 1024)

struct shared {
    volatile long depth;
    volatile char *low;
    volatile int offstack;
};
static struct shared *sh;
static char *mem;

static void handler(int sig)
{
    char here;
    stack_t ss;
    sh->depth++;
    if (&here < sh->low)
        sh->low = &here;
    if (sigaltstack(NULL, &ss) != 0 || !(ss.ss_flags & SS_ONSTACK))
        sh->offstack = 1;
    raise(SIGUSR1);                      /* nests: SA_NODEFER */
}

int main(void)
{
    sh = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(sh != MAP_FAILED);
    mem = mmap(NULL, 2 * ALT, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(mem != MAP_FAILED);
    sh->low = mem + 2 * ALT;
    pid_t c = fork();
    if (c == 0) {
        stack_t ss = {.ss_sp = mem + ALT, .ss_size = ALT, .ss_flags = 0};
        CHECK(sigaltstack(&ss, NULL) == 0);
        struct sigaction sa = {0};
        sa.sa_handler = handler;
        sa.sa_flags = SA_ONSTACK | SA_NODEFER;
        sigemptyset(&sa.sa_mask);
        CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
        raise(SIGUSR1);
        _exit(0);                        /* not reached */
    }
    int st;
    CHECK(waitpid(c, &st, 0) == c);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
    CHECK(sh->depth > 3);                /* it did nest on the alternate stack */
    CHECK(!sh->offstack);
    CHECK(sh->low > mem + ALT);          /* never below it */
    ok();
    return 0;
}
