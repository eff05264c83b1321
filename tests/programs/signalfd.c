/* signalfd (issue #10): blocked signals read as records, the mask, SIGKILL
 * left out, blocking and non-blocking reads, poll, sigqueue payloads. */
#define _GNU_SOURCE
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include "check.h"

static int sfd;

static void *sender(void *arg)
{
    (void)arg;
    usleep(50000);
    CHECK(kill(getpid(), SIGUSR2) == 0);
    return NULL;
}

int main(void)
{
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGUSR1);
    sigaddset(&mask, SIGUSR2);
    sigaddset(&mask, SIGRTMIN);
    CHECK(sigprocmask(SIG_BLOCK, &mask, NULL) == 0);
    sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    CHECK(sfd >= 0);
    struct signalfd_siginfo si[4];
    CHECK_ERR(read(sfd, si, sizeof si), EAGAIN);
    CHECK_ERR(read(sfd, si, sizeof si[0] - 1), EINVAL);

    CHECK(kill(getpid(), SIGUSR1) == 0);
    CHECK(syscall(SYS_tgkill, getpid(), gettid(), SIGUSR2) == 0);
    struct pollfd p = {sfd, POLLIN, 0};
    CHECK(poll(&p, 1, 0) == 1 && p.revents == POLLIN);
    /* Both records in one read, the thread's own first. */
    CHECK(read(sfd, si, sizeof si) == 2 * (ssize_t)sizeof si[0]);
    CHECK(si[0].ssi_signo == SIGUSR2 && si[1].ssi_signo == SIGUSR1);
    CHECK(si[1].ssi_pid == (uint32_t)getpid() && si[1].ssi_code == SI_USER);

    union sigval v = {.sival_int = 4242};
    CHECK(sigqueue(getpid(), SIGRTMIN, v) == 0);
    CHECK(read(sfd, si, sizeof si) == sizeof si[0]);
    CHECK(si[0].ssi_signo == (uint32_t)SIGRTMIN && si[0].ssi_code == SI_QUEUE);
    CHECK(si[0].ssi_int == 4242);

    /* A new mask; signals outside it stay pending. */
    sigset_t only1;
    sigemptyset(&only1);
    sigaddset(&only1, SIGUSR1);
    sigaddset(&only1, SIGKILL);                     /* silently left out */
    CHECK(signalfd(sfd, &only1, 0) == sfd);
    CHECK(kill(getpid(), SIGUSR2) == 0);
    CHECK_ERR(read(sfd, si, sizeof si), EAGAIN);
    sigset_t pend;
    CHECK(sigpending(&pend) == 0 && sigismember(&pend, SIGUSR2));
    CHECK(sigwaitinfo(&mask, NULL) == SIGUSR2);

    /* Blocking read, woken by a signal sent to the process. */
    int bfd = signalfd(-1, &mask, 0);
    CHECK(bfd >= 0);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, sender, NULL) == 0);
    CHECK(read(bfd, si, sizeof si[0]) == sizeof si[0] && si[0].ssi_signo == SIGUSR2);
    CHECK(pthread_join(th, NULL) == 0);

    CHECK_ERR(signalfd(0, &mask, 0), EINVAL);             /* not a signalfd */
    CHECK_ERR(syscall(SYS_signalfd4, -1, &mask, 4, 0), EINVAL);
    CHECK_ERR(signalfd(-1, &mask, 0x1234), EINVAL);
    ok();
    return 0;
}
