/* System V semaphores (issue #10): all-or-nothing semop, waits for a value
 * and for zero (GETNCNT/GETZCNT while waiting), IPC_NOWAIT, semtimedop's
 * timeout, SEM_UNDO applied at exit, SETVAL/SETALL/GETALL, removal (EIDRM). */
#define _GNU_SOURCE
#include <pthread.h>
#include <sys/sem.h>
#include <sys/wait.h>
#include <time.h>
#include "check.h"

union semun { int val; unsigned short *array; struct semid_ds *buf; };

static int sid;

static void *poster(void *arg)
{
    (void)arg;
    while (semctl(sid, 0, GETNCNT) < 1)
        usleep(1000);
    struct sembuf up = {0, 2, 0};
    CHECK(semop(sid, &up, 1) == 0);
    return NULL;
}

static void *remover(void *arg)
{
    (void)arg;
    while (semctl(sid, 1, GETZCNT) < 1)
        usleep(1000);
    CHECK(semctl(sid, 0, IPC_RMID) == 0);
    return NULL;
}

int main(void)
{
    sid = semget(IPC_PRIVATE, 2, 0600);
    CHECK(sid >= 0);
    CHECK_ERR(semget(IPC_PRIVATE, 0, 0600), EINVAL);
    unsigned short vals[2] = {3, 0};
    CHECK(semctl(sid, 0, SETALL, (union semun){.array = vals}) == 0);
    CHECK(semctl(sid, 0, GETVAL) == 3 && semctl(sid, 0, GETPID) == getpid());

    /* All or nothing: the second op cannot proceed, so the first is not done. */
    struct sembuf two[2] = {{0, -1, IPC_NOWAIT}, {1, -1, IPC_NOWAIT}};
    CHECK_ERR(semop(sid, two, 2), EAGAIN);
    CHECK(semctl(sid, 0, GETVAL) == 3);
    struct sembuf dec = {0, -3, 0};
    CHECK(semop(sid, &dec, 1) == 0 && semctl(sid, 0, GETVAL) == 0);
    struct sembuf bad = {5, 1, 0};
    CHECK_ERR(semop(sid, &bad, 1), EFBIG);
    struct sembuf big = {0, 32767, 0};
    CHECK(semop(sid, &big, 1) == 0);
    struct sembuf over = {0, 1, 0};
    CHECK_ERR(semop(sid, &over, 1), ERANGE);
    CHECK(semctl(sid, 0, SETVAL, (union semun){.val = 0}) == 0);
    CHECK_ERR(semctl(sid, 0, SETVAL, (union semun){.val = 40000}), ERANGE);

    /* A waiter for a value is counted in GETNCNT and woken by a post. */
    pthread_t th;
    CHECK(pthread_create(&th, NULL, poster, NULL) == 0);
    struct sembuf take = {0, -2, 0};
    CHECK(semop(sid, &take, 1) == 0);
    CHECK(pthread_join(th, NULL) == 0);
    CHECK(semctl(sid, 0, GETNCNT) == 0);

    /* semtimedop gives up with EAGAIN. */
    struct timespec ts = {0, 20000000};
    CHECK_ERR(semtimedop(sid, &take, 1, &ts), EAGAIN);

    /* SEM_UNDO: a child's operations are undone when it exits. */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        struct sembuf up = {1, 5, SEM_UNDO};
        _exit(semop(sid, &up, 1) == 0 && semctl(sid, 1, GETVAL) == 5 ? 0 : 1);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(semctl(sid, 1, GETVAL) == 0);
    CHECK(semctl(sid, 1, GETPID) == pid);

    /* Removal wakes a waiter for zero with EIDRM. */
    CHECK(semctl(sid, 1, SETVAL, (union semun){.val = 1}) == 0);
    CHECK(pthread_create(&th, NULL, remover, NULL) == 0);
    struct sembuf zero = {1, 0, 0};
    CHECK_ERR(semop(sid, &zero, 1), EIDRM);
    CHECK(pthread_join(th, NULL) == 0);
    CHECK_ERR(semctl(sid, 0, GETVAL), EINVAL);
    ok();
    return 0;
}
