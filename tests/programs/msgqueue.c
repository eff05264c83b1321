/* System V message queues (issue #10): msgget keys and flags, send/receive by
 * type (first, exact, MSG_EXCEPT, lowest up to -type), truncation, MSG_COPY,
 * blocking in both directions, removal waking a waiter with EIDRM, msgctl. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sys/msg.h>
#include <sys/wait.h>
#include "check.h"

struct msg {
    long mtype;
    char mtext[64];
};

static int qid;

static void *late_sender(void *arg)
{
    (void)arg;
    usleep(50000);
    struct msg m = {5, "late"};
    CHECK(msgsnd(qid, &m, 5, 0) == 0);
    return NULL;
}

static void *remover(void *arg)
{
    (void)arg;
    usleep(50000);
    CHECK(msgctl(qid, IPC_RMID, NULL) == 0);
    return NULL;
}

int main(void)
{
    key_t key = 0x5eed0000 + getpid();
    qid = msgget(key, IPC_CREAT | IPC_EXCL | 0600);
    CHECK(qid >= 0);
    CHECK(msgget(key, 0) == qid);
    CHECK_ERR(msgget(key, IPC_CREAT | IPC_EXCL | 0600), EEXIST);
    CHECK_ERR(msgget(key + 1, 0), ENOENT);
    int priv = msgget(IPC_PRIVATE, 0600);
    CHECK(priv >= 0 && priv != qid);

    struct msg m;
    for (long t = 1; t <= 3; t++) {
        m.mtype = t;
        snprintf(m.mtext, sizeof m.mtext, "type%ld", t);
        CHECK(msgsnd(qid, &m, 6, IPC_NOWAIT) == 0);
    }
    struct msqid_ds ds;
    CHECK(msgctl(qid, IPC_STAT, &ds) == 0);
    CHECK(ds.msg_qnum == 3 && ds.msg_cbytes == 18 && ds.msg_lspid == getpid());
    CHECK((ds.msg_perm.mode & 0777) == 0600 && ds.msg_perm.__key == key);

    CHECK(msgrcv(qid, &m, sizeof m.mtext, 2, 0) == 6 && m.mtype == 2);    /* exact type */
    CHECK(msgrcv(qid, &m, sizeof m.mtext, 1, MSG_EXCEPT | IPC_NOWAIT) == 6 && m.mtype == 3);
    CHECK(msgrcv(qid, &m, sizeof m.mtext, 0, MSG_COPY | IPC_NOWAIT) == 6 && m.mtype == 1);
    CHECK_ERR(msgrcv(qid, &m, 2, 0, IPC_NOWAIT), E2BIG);                  /* too long */
    CHECK(msgrcv(qid, &m, 2, 0, MSG_NOERROR) == 2 && m.mtype == 1 &&
          memcmp(m.mtext, "ty", 2) == 0);
    CHECK_ERR(msgrcv(qid, &m, sizeof m.mtext, 0, IPC_NOWAIT), ENOMSG);

    /* Lowest type not above 3. */
    long types[] = {7, 3, 2, 9};
    for (int i = 0; i < 4; i++) {
        m.mtype = types[i];
        CHECK(msgsnd(qid, &m, 1, 0) == 0);
    }
    CHECK(msgrcv(qid, &m, 1, -3, 0) == 1 && m.mtype == 2);
    CHECK(msgrcv(qid, &m, 1, -3, 0) == 1 && m.mtype == 3);
    CHECK_ERR(msgrcv(qid, &m, 1, -3, IPC_NOWAIT), ENOMSG);
    CHECK(msgrcv(qid, &m, 1, 0, 0) == 1 && m.mtype == 7);
    CHECK(msgrcv(qid, &m, 1, 0, 0) == 1 && m.mtype == 9);

    /* A blocked receiver wakes for its type. */
    pthread_t th;
    CHECK(pthread_create(&th, NULL, late_sender, NULL) == 0);
    CHECK(msgrcv(qid, &m, sizeof m.mtext, 5, 0) == 5 && strcmp(m.mtext, "late") == 0);
    CHECK(pthread_join(th, NULL) == 0);

    /* A full queue blocks senders (EAGAIN with IPC_NOWAIT). */
    CHECK(msgctl(qid, IPC_STAT, &ds) == 0);
    ds.msg_qbytes = 10;
    CHECK(msgctl(qid, IPC_SET, &ds) == 0);
    m.mtype = 1;
    CHECK(msgsnd(qid, &m, 8, 0) == 0);
    CHECK_ERR(msgsnd(qid, &m, 8, IPC_NOWAIT), EAGAIN);

    /* Bad arguments. */
    m.mtype = 0;
    CHECK_ERR(msgsnd(qid, &m, 1, IPC_NOWAIT), EINVAL);
    m.mtype = 1;
    CHECK_ERR(msgsnd(qid, &m, 8193, IPC_NOWAIT), EINVAL);
    CHECK_ERR(msgsnd(-1, &m, 1, IPC_NOWAIT), EINVAL);
    CHECK_ERR(msgrcv(qid, &m, 1, 0, MSG_COPY), EINVAL);

    /* Removal wakes a blocked sender with EIDRM; the id is gone. */
    CHECK(pthread_create(&th, NULL, remover, NULL) == 0);
    CHECK_ERR(msgsnd(qid, &m, 8, 0), EIDRM);
    CHECK(pthread_join(th, NULL) == 0);
    CHECK_ERR(msgctl(qid, IPC_STAT, &ds), EINVAL);
    CHECK(msgctl(priv, IPC_RMID, NULL) == 0);
    ok();
    return 0;
}
