/* pthread_create/join, mutex, condition variable (futex), TLS, gettid,
 * a thread exiting does not end the process. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sys/syscall.h>
#include "check.h"

#define NTHREADS 4
#define ITERS 10000

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static long counter;
static int ready;
static __thread int tls_value = 7;
static pid_t tids[NTHREADS];

static void *incrementer(void *arg)
{
    int idx = (int)(long)arg;
    CHECK(tls_value == 7);  /* each thread starts from the initial image */
    tls_value = 100 + idx;
    tids[idx] = (pid_t)syscall(SYS_gettid);
    for (int i = 0; i < ITERS; i++) {
        pthread_mutex_lock(&lock);
        counter++;
        pthread_mutex_unlock(&lock);
    }
    CHECK(tls_value == 100 + idx);
    return (void *)(long)(idx * 2);
}

static void *waiter(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&lock);
    while (!ready)
        pthread_cond_wait(&cond, &lock);
    ready = 2;
    pthread_cond_signal(&cond);
    pthread_mutex_unlock(&lock);
    return NULL;
}

static void *exiter(void *arg)
{
    (void)arg;
    pthread_exit((void *)123);
}

int main(void)
{
    pid_t pid = getpid();
    CHECK(syscall(SYS_gettid) == pid);  /* the main thread's tid is the pid */

    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        CHECK(pthread_create(&th[i], NULL, incrementer, (void *)(long)i) == 0);
    for (int i = 0; i < NTHREADS; i++) {
        void *ret;
        CHECK(pthread_join(th[i], &ret) == 0);
        CHECK(ret == (void *)(long)(i * 2));
    }
    CHECK(counter == (long)NTHREADS * ITERS);
    CHECK(tls_value == 7);
    for (int i = 0; i < NTHREADS; i++) {
        CHECK(tids[i] > 0 && tids[i] != pid);
        for (int j = 0; j < i; j++)
            CHECK(tids[i] != tids[j]);
    }

    /* Condition variable handshake in both directions. */
    pthread_t w;
    CHECK(pthread_create(&w, NULL, waiter, NULL) == 0);
    usleep(10000);
    pthread_mutex_lock(&lock);
    ready = 1;
    pthread_cond_signal(&cond);
    while (ready != 2)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
    CHECK(pthread_join(w, NULL) == 0);

    /* pthread_exit in a thread leaves the process running. */
    pthread_t e;
    void *ret;
    CHECK(pthread_create(&e, NULL, exiter, NULL) == 0);
    CHECK(pthread_join(e, &ret) == 0);
    CHECK(ret == (void *)123);
    CHECK(getpid() == pid);

    ok();
    return 0;
}
