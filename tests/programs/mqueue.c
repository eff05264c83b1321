/* POSIX message queues: open/unlink rules, priorities, limits, non-blocking and timed
 * send/receive, blocking between processes, mq_notify, mq_getsetattr, read and poll.
 * Self-checking: prints "ok". */
#define _GNU_SOURCE
#include <fcntl.h>
#include <mqueue.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "check.h"

static char qname[64];

static volatile sig_atomic_t got_sig, got_code, got_value;

static void on_usr1(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    got_sig = sig;
    got_code = si->si_code;
    got_value = si->si_value.sival_int;
}

int main(void)
{
    snprintf(qname, sizeof qname, "/pyvisor-mq-%d", getpid());
    struct mq_attr attr = { 0 };
    attr.mq_maxmsg = 3;
    attr.mq_msgsize = 16;

    /* open rules */
    CHECK_ERR(mq_open("noslash", O_RDWR), EINVAL);
    CHECK_ERR(mq_open("/a/b", O_RDWR), EACCES);
    CHECK_ERR(mq_open(qname, O_RDWR), ENOENT);
    struct mq_attr bad = attr;
    bad.mq_maxmsg = 0;
    CHECK_ERR(mq_open(qname, O_RDWR | O_CREAT, 0600, &bad), EINVAL);
    bad = attr;
    bad.mq_msgsize = -1;
    CHECK_ERR(mq_open(qname, O_RDWR | O_CREAT, 0600, &bad), EINVAL);
    char longname[300] = "/";
    memset(longname + 1, 'a', 260);
    longname[261] = 0;
    CHECK_ERR(mq_open(longname, O_RDWR | O_CREAT, 0600, &attr), ENAMETOOLONG);

    mqd_t q = mq_open(qname, O_RDWR | O_CREAT | O_EXCL | O_NONBLOCK, 0640 | S_IFIFO, &attr);
    CHECK(q >= 0);
    CHECK(fcntl(q, F_GETFD) == FD_CLOEXEC);
    CHECK_ERR(mq_open(qname, O_RDWR | O_CREAT | O_EXCL, 0600, &attr), EEXIST);
    CHECK_ERR(mq_open(qname, O_RDWR | O_WRONLY), EINVAL);
    mqd_t ro = mq_open(qname, O_RDONLY);
    CHECK(ro >= 0);

    struct mq_attr got;
    CHECK(mq_getattr(q, &got) == 0);
    CHECK(got.mq_maxmsg == 3 && got.mq_msgsize == 16 && got.mq_curmsgs == 0 &&
          got.mq_flags == O_NONBLOCK);
    struct stat st;
    CHECK(fstat(q, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0777) == 0640);

    /* status line and poll of an empty queue */
    char line[128] = { 0 };
    CHECK(read(q, line, sizeof line - 1) == 60);
    CHECK(strcmp(line, "QSIZE:0          NOTIFY:0     SIGNO:0     NOTIFY_PID:0     \n") == 0);
    struct pollfd pfd = { q, POLLIN | POLLOUT, 0 };
    CHECK(poll(&pfd, 1, 0) == 1 && pfd.revents == POLLOUT);
    struct pollfd norm = { q, POLLRDNORM | POLLWRNORM, 0 };
    CHECK(poll(&norm, 1, 0) == 1 && norm.revents == POLLWRNORM);

    /* send: limits and priorities */
    CHECK_ERR(mq_send(ro, "x", 1, 0), EBADF);
    CHECK_ERR(mq_send(q, "0123456789abcdefg", 17, 0), EMSGSIZE);
    CHECK_ERR(mq_send(q, "x", 1, 32768), EINVAL);
    CHECK(mq_send(q, "low", 3, 1) == 0);
    CHECK(mq_send(q, "high", 4, 9) == 0);
    CHECK(mq_send(q, "low2", 4, 1) == 0);
    CHECK_ERR(mq_send(q, "full", 4, 5), EAGAIN);
    CHECK(mq_getattr(q, &got) == 0 && got.mq_curmsgs == 3);
    memset(line, 0, sizeof line);
    CHECK(lseek(q, 0, SEEK_SET) == 0 && read(q, line, 20) == 20);
    CHECK(strncmp(line, "QSIZE:11         NOT", 20) == 0);
    pfd.revents = 0;
    CHECK(poll(&pfd, 1, 0) == 1 && pfd.revents == POLLIN);

    /* receive: highest priority first, FIFO among equals */
    char buf[64];
    unsigned prio = 0;
    CHECK_ERR(mq_receive(q, buf, 15, &prio), EMSGSIZE);
    CHECK_ERR(mq_receive(q + 100, buf, sizeof buf, &prio), EBADF);
    CHECK(mq_receive(q, buf, sizeof buf, &prio) == 4 && prio == 9 && !memcmp(buf, "high", 4));
    CHECK(mq_receive(ro, buf, sizeof buf, &prio) == 3 && prio == 1 && !memcmp(buf, "low", 3));
    CHECK(mq_receive(q, buf, sizeof buf, NULL) == 4 && !memcmp(buf, "low2", 4));
    CHECK_ERR(mq_receive(q, buf, sizeof buf, &prio), EAGAIN);

    /* mq_setattr: only O_NONBLOCK; timed receive on a blocking descriptor */
    struct mq_attr set = { 0 }, old;
    set.mq_flags = O_RDWR;
    CHECK_ERR(mq_setattr(q, &set, &old), EINVAL);
    set.mq_flags = 0;
    set.mq_maxmsg = 99;                          /* ignored */
    CHECK(mq_setattr(q, &set, &old) == 0 && old.mq_flags == O_NONBLOCK);
    CHECK(mq_getattr(q, &got) == 0 && got.mq_flags == 0 && got.mq_maxmsg == 3);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 20 * 1000 * 1000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    CHECK_ERR(mq_timedreceive(q, buf, sizeof buf, &prio, &ts), ETIMEDOUT);
    struct timespec bad_ts = { 0, 1000000000 };
    CHECK_ERR(mq_timedreceive(q, buf, sizeof buf, &prio, &bad_ts), EINVAL);
    struct timespec past = { 1, 0 };
    CHECK(mq_send(q, "a", 1, 0) == 0 && mq_send(q, "b", 1, 0) == 0 && mq_send(q, "c", 1, 0) == 0);
    CHECK_ERR(mq_timedsend(q, "d", 1, 0, &past), ETIMEDOUT);
    for (int i = 0; i < 3; i++)
        CHECK(mq_receive(q, buf, sizeof buf, NULL) == 1 && buf[0] == 'a' + i);

    /* notification: a signal when a message arrives in the empty queue */
    struct sigaction sa = { 0 };
    sa.sa_sigaction = on_usr1;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;     /* the parent may be in waitpid */
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
    struct sigevent sev = { 0 };
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = SIGUSR1;
    sev.sigev_value.sival_int = 77;
    CHECK(mq_notify(q, &sev) == 0);
    CHECK_ERR(mq_notify(q, &sev), EBUSY);
    memset(line, 0, sizeof line);
    CHECK(lseek(q, 0, SEEK_SET) == 0 && read(q, line, 59) == 59);
    char want[64];
    snprintf(want, sizeof want, "QSIZE:0          NOTIFY:0     SIGNO:10    NOTIFY_PID:%-6d", getpid());
    CHECK(strcmp(line, want) == 0);
    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        sev.sigev_notify = SIGEV_NONE;
        _exit(mq_notify(q, &sev) == -1 && errno == EBUSY && mq_send(q, "hi", 2, 3) == 0 ? 0 : 1);
    }
    int status;
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(got_sig == SIGUSR1 && got_code == SI_MESGQ && got_value == 77);
    CHECK(mq_notify(q, &sev) == 0);              /* one shot: free again */
    CHECK(mq_notify(q, NULL) == 0);
    CHECK(mq_receive(q, buf, sizeof buf, &prio) == 2 && prio == 3);
    sev.sigev_notify = 99;
    CHECK_ERR(mq_notify(q, &sev), EINVAL);

    /* blocking between processes: the child waits in receive until the parent sends */
    child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        ssize_t n = mq_receive(q, buf, sizeof buf, &prio);
        _exit(n == 5 && prio == 7 && !memcmp(buf, "wake!", 5) ? 0 : 1);
    }
    usleep(50 * 1000);
    CHECK(mq_send(q, "wake!", 5, 7) == 0);
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);

    /* unlink: the name goes, open descriptors keep working */
    CHECK(mq_unlink(qname) == 0);
    CHECK_ERR(mq_unlink(qname), ENOENT);
    CHECK_ERR(mq_open(qname, O_RDWR), ENOENT);
    CHECK(mq_send(q, "z", 1, 0) == 0);
    CHECK(mq_receive(ro, buf, sizeof buf, NULL) == 1);
    CHECK(mq_close(ro) == 0 && mq_close(q) == 0);
    ok();
    return 0;
}
