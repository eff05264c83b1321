/* Futex kinds and robust lists: a private wake never wakes a shared waiter nor
 * the other way round (Linux's FUT_OFF_MMSHARED keys); a thread that exits
 * holding robust mutexes leaves them EOWNERDEAD and wakes a waiter
 * (exit_robust_list); get_robust_list of another thread.
 * Linux: kernel/futex/core.c. */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <time.h>
#include "check.h"

static atomic_int word = 1;
static int pipefd[2];
static pthread_mutex_t mtx[3];

static long futex(atomic_int *a, int op, int val, struct timespec *ts)
{
    return syscall(SYS_futex, a, op, val, ts, NULL, 0);
}

static void *waiter(void *arg)
{
    int op = (int)(long)arg & ~1;
    /* Long enough for the right wake to come, even on a loaded machine; short for
     * the wrong one, which must time out. */
    struct timespec ts = {(long)arg & 1 ? 10 : 0, 300000000};
    long r = futex(&word, FUTEX_WAIT | op, 1, &ts);
    return (void *)(r == 0 ? 0L : (long)errno);
}

static void *locker(void *arg)
{
    for (int i = 0; i < 3; i++)
        CHECK(pthread_mutex_lock(&mtx[i]) == 0);
    struct robust_list_head *head;
    size_t len;
    CHECK(syscall(SYS_get_robust_list, 0, &head, &len) == 0 && len == sizeof *head);
    CHECK(write(pipefd[1], &head, sizeof head) == sizeof head);
    long tid = syscall(SYS_gettid);
    CHECK(write(pipefd[1], &tid, sizeof tid) == sizeof tid);
    usleep(100000);                         /* the main thread blocks on mtx[0] */
    return arg;
}

int main(void)
{
    /* A wake of the other kind finds nobody; the waiter times out. */
    for (int priv = 0; priv < 2; priv++) {
        int op = priv ? FUTEX_PRIVATE_FLAG : 0;
        pthread_t th;
        CHECK(pthread_create(&th, NULL, waiter, (void *)(long)op) == 0);
        usleep(50000);
        int woken = 0;
        for (int i = 0; i < 20 && !woken; i++) {
            CHECK(futex(&word, FUTEX_WAKE | (op ^ FUTEX_PRIVATE_FLAG), 1, NULL) == 0);
            usleep(5000);
        }
        void *res;
        CHECK(pthread_join(th, &res) == 0);
        CHECK((long)res == ETIMEDOUT);
        /* The right kind wakes it. */
        CHECK(pthread_create(&th, NULL, waiter, (void *)(long)(op | 1)) == 0);
        long n = 0;
        for (int i = 0; i < 2000 && n == 0; i++) {
            usleep(5000);
            n = futex(&word, FUTEX_WAKE | op, 1, NULL);
        }
        CHECK(n == 1);
        CHECK(pthread_join(th, &res) == 0 && res == NULL);
    }

    /* Robust mutexes of a thread that exits while holding them. */
    pthread_mutexattr_t a;
    CHECK(pthread_mutexattr_init(&a) == 0);
    CHECK(pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST) == 0);
    for (int i = 0; i < 3; i++)
        CHECK(pthread_mutex_init(&mtx[i], &a) == 0);
    CHECK(pipe(pipefd) == 0);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, locker, NULL) == 0);
    struct robust_list_head *head, *mine, *theirs;
    long tid;
    size_t len;
    CHECK(read(pipefd[0], &head, sizeof head) == sizeof head);
    CHECK(read(pipefd[0], &tid, sizeof tid) == sizeof tid);
    CHECK(syscall(SYS_get_robust_list, 0, &mine, &len) == 0);
    CHECK(syscall(SYS_get_robust_list, tid, &theirs, &len) == 0);
    CHECK(theirs == head && mine != head);
    CHECK_ERR(syscall(SYS_get_robust_list, 1 << 29, &theirs, &len), ESRCH);
    /* Blocks until the owner dies. */
    CHECK(pthread_mutex_lock(&mtx[0]) == EOWNERDEAD);
    CHECK(pthread_join(th, NULL) == 0);
    for (int i = 1; i < 3; i++)
        CHECK(pthread_mutex_lock(&mtx[i]) == EOWNERDEAD);
    for (int i = 0; i < 3; i++) {
        CHECK(pthread_mutex_consistent(&mtx[i]) == 0);
        CHECK(pthread_mutex_unlock(&mtx[i]) == 0);
        CHECK(pthread_mutex_lock(&mtx[i]) == 0);
        CHECK(pthread_mutex_unlock(&mtx[i]) == 0);
    }
    ok();
    return 0;
}
