/* Regression tests for waits that never ended in the sandbox (issue #10):
 * a pipe read whose fd another thread closes, SO_RCVTIMEO on read(2) of a
 * Unix socket, CPU time that getrusage/times/CPU clocks must show (programs
 * spin until it does), RLIMIT_CPU and ITIMER_VIRTUAL, blocking splice/tee,
 * POLLRDNORM/POLLWRNORM, FUTEX_WAKE of 0 and waitid without WEXITED. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/times.h>
#include <sys/wait.h>
#include <time.h>
#include "check.h"

static int pipefd[2];

static void *reader(void *arg)
{
    (void)arg;
    int v = 0;
    CHECK(read(pipefd[0], &v, sizeof v) == sizeof v);
    CHECK(v == 42);
    return NULL;
}

/* Closing the read end while another thread reads it: the read keeps the file,
 * so a write succeeds and wakes the reader (pipe_test ReadFromClosedFd). */
static void pipe_close_while_reading(void)
{
    CHECK(pipe(pipefd) == 0);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, reader, NULL) == 0);
    usleep(100000);
    CHECK(close(pipefd[0]) == 0);
    int v = 42;
    CHECK(write(pipefd[1], &v, sizeof v) == sizeof v);
    CHECK(pthread_join(th, NULL) == 0);
    close(pipefd[1]);
}

static void rcvtimeo_read(void)
{
    int types[] = {SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET};
    for (unsigned i = 0; i < 3; i++) {
        int sv[2];
        CHECK(socketpair(AF_UNIX, types[i], 0, sv) == 0);
        struct timeval tv = {0, 10000};
        CHECK(setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0);
        char buf[8];
        CHECK_ERR(read(sv[0], buf, sizeof buf), EAGAIN);
        struct timeval neg = {-1, 0};      /* negative: never block */
        CHECK(setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &neg, sizeof neg) == 0);
        CHECK_ERR(read(sv[0], buf, sizeof buf), EAGAIN);
        close(sv[0]);
        close(sv[1]);
    }
}

static int64_t ts_ns(struct timespec t) { return t.tv_sec * 1000000000LL + t.tv_nsec; }
static int64_t tv_ns(struct timeval t) { return t.tv_sec * 1000000000LL + t.tv_usec * 1000LL; }

static int64_t clock_ns(clockid_t c)
{
    struct timespec t;
    CHECK(clock_gettime(c, &t) == 0);
    return ts_ns(t);
}

static void spin_thread_cpu(int64_t ns)
{
    int64_t start = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    while (clock_ns(CLOCK_THREAD_CPUTIME_ID) - start < ns)
        ;
}

static void cpu_time(void)
{
    spin_thread_cpu(100000000);
    struct rusage ru;
    CHECK(getrusage(RUSAGE_SELF, &ru) == 0);
    CHECK(tv_ns(ru.ru_utime) + tv_ns(ru.ru_stime) >= 95000000);
    CHECK(ru.ru_maxrss > 0);
    CHECK(getrusage(RUSAGE_THREAD, &ru) == 0);
    CHECK(tv_ns(ru.ru_utime) + tv_ns(ru.ru_stime) >= 95000000);
    CHECK(clock_ns(CLOCK_PROCESS_CPUTIME_ID) >= 95000000);
    struct tms tm;
    CHECK(times(&tm) != (clock_t)-1);
    CHECK(tm.tms_utime + tm.tms_stime >= 9);          /* ticks of 10 ms */
    clockid_t pc;
    CHECK(clock_getcpuclockid(getpid(), &pc) == 0);
    CHECK(clock_ns(pc) >= 95000000);

    /* A waited-for child's time goes to RUSAGE_CHILDREN and wait4's rusage. */
    struct rusage before, after, child;
    CHECK(getrusage(RUSAGE_CHILDREN, &before) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        spin_thread_cpu(80000000);
        _exit(0);
    }
    int st;
    CHECK(wait4(pid, &st, 0, &child) == pid && WIFEXITED(st));
    CHECK(tv_ns(child.ru_utime) + tv_ns(child.ru_stime) >= 75000000);
    CHECK(getrusage(RUSAGE_CHILDREN, &after) == 0);
    CHECK(tv_ns(after.ru_utime) + tv_ns(after.ru_stime) -
          tv_ns(before.ru_utime) - tv_ns(before.ru_stime) >= 75000000);
}

static volatile sig_atomic_t vtalrm;
static void on_vtalrm(int sig) { (void)sig; vtalrm++; }

static void cpu_timers(void)
{
    /* ITIMER_VIRTUAL fires after user CPU time, not wall time. */
    signal(SIGVTALRM, on_vtalrm);
    struct itimerval it = {{0, 0}, {0, 50000}};
    CHECK(setitimer(ITIMER_VIRTUAL, &it, NULL) == 0);
    struct itimerval cur;
    CHECK(getitimer(ITIMER_VIRTUAL, &cur) == 0);
    CHECK(cur.it_value.tv_sec == 0 && cur.it_value.tv_usec > 0);
    while (!vtalrm)
        ;
    CHECK(getitimer(ITIMER_VIRTUAL, &cur) == 0);
    CHECK(cur.it_value.tv_sec == 0 && cur.it_value.tv_usec == 0);

    /* RLIMIT_CPU: SIGXCPU at the soft limit (0 s: at once) kills a spinning child,
     * whose CPU time keeps counting while it is a zombie. */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        struct rlimit rl = {0, 2};
        CHECK(setrlimit(RLIMIT_CPU, &rl) == 0);
        for (;;)
            ;
    }
    siginfo_t si;
    CHECK(waitid(P_PID, pid, &si, WEXITED | WNOWAIT) == 0);
    clockid_t cc;
    CHECK(clock_getcpuclockid(pid, &cc) == 0);
    CHECK(clock_ns(cc) >= 0);
    int st;
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGXCPU);
}

static int spl[2], spl2[2];

static void *late_writer(void *arg)
{
    (void)arg;
    usleep(100000);
    CHECK(write(spl[1], "hello", 5) == 5);
    return NULL;
}

static void splice_tee(void)
{
    CHECK(pipe(spl) == 0 && pipe(spl2) == 0);
    pthread_t th;
    /* A blocking splice from an empty pipe waits for the writer. */
    CHECK(pthread_create(&th, NULL, late_writer, NULL) == 0);
    CHECK(splice(spl[0], NULL, spl2[1], NULL, 100, 0) == 5);
    CHECK(pthread_join(th, NULL) == 0);
    /* tee copies without consuming; then a splice moves it on. */
    CHECK(pthread_create(&th, NULL, late_writer, NULL) == 0);
    CHECK(tee(spl[0], spl2[1], 100, 0) == 5);
    CHECK(pthread_join(th, NULL) == 0);
    char buf[16];
    CHECK(read(spl2[0], buf, sizeof buf) == 10 && memcmp(buf, "hellohello", 10) == 0);
    CHECK(read(spl[0], buf, sizeof buf) == 5);
    CHECK_ERR(splice(spl[0], NULL, spl2[1], NULL, 10, SPLICE_F_NONBLOCK), EAGAIN);
    CHECK_ERR(splice(spl[0], NULL, spl[1], NULL, 10, 0), EINVAL);
    CHECK_ERR(tee(spl[0], spl[1], 10, 0), EINVAL);
    /* A file to a pipe, at an offset that is updated and not the file's. */
    char path[] = "/tmp/wakeups.XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    unlink(path);
    CHECK(write(fd, "0123456789", 10) == 10);
    loff_t off = 3;
    CHECK(splice(fd, &off, spl[1], NULL, 4, 0) == 4 && off == 7);
    CHECK(lseek(fd, 0, SEEK_CUR) == 10);
    CHECK(read(spl[0], buf, sizeof buf) == 4 && memcmp(buf, "3456", 4) == 0);
    CHECK_ERR(splice(fd, NULL, fd, NULL, 1, 0), EINVAL);
    CHECK_ERR(splice(spl[0], &off, fd, NULL, 1, 0), ESPIPE);
    close(fd);
    close(spl[0]); close(spl[1]); close(spl2[0]); close(spl2[1]);
}

static void *rdnorm_writer(void *arg)
{
    (void)arg;
    usleep(50000);
    CHECK(write(pipefd[1], "x", 1) == 1);
    return NULL;
}

static void poll_norm(void)
{
    CHECK(pipe(pipefd) == 0);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, rdnorm_writer, NULL) == 0);
    struct pollfd p = {pipefd[0], POLLRDNORM, 0};
    CHECK(poll(&p, 1, 5000) == 1 && p.revents == POLLRDNORM);
    CHECK(pthread_join(th, NULL) == 0);
    struct pollfd w = {pipefd[1], POLLWRNORM, 0};
    CHECK(poll(&w, 1, 5000) == 1 && w.revents == POLLWRNORM);
    close(pipefd[0]);
    /* No reader: POLLERR, and still POLLOUT (pipe_poll). */
    struct pollfd e = {pipefd[1], POLLOUT, 0};
    CHECK(poll(&e, 1, 0) == 1 && e.revents == (POLLOUT | POLLERR));
    close(pipefd[1]);
}

static int futex_word = 1;

static void *futex_waiter(void *arg)
{
    (void)arg;
    CHECK(syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 1, NULL, NULL, 0) == 0);
    return NULL;
}

static void futex_wake0(void)
{
    pthread_t th;
    CHECK(pthread_create(&th, NULL, futex_waiter, NULL) == 0);
    usleep(100000);
    /* Linux's futex_wake counts after waking: a count of 0 wakes one. */
    CHECK(syscall(SYS_futex, &futex_word, FUTEX_WAKE_PRIVATE, 0, NULL, NULL, 0) == 1);
    CHECK(pthread_join(th, NULL) == 0);
}

static void waitid_no_wexited(void)
{
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0)
        _exit(0);
    siginfo_t si;
    /* Only a zombie, and its exit not asked for: ECHILD, not a wait forever. */
    CHECK_ERR(waitid(P_ALL, 0, &si, WSTOPPED), ECHILD);
    CHECK(waitid(P_ALL, 0, &si, WEXITED) == 0 && si.si_pid == pid);
}

/* RLIMIT_FSIZE: a write crossing the limit is cut short without a signal; one
 * at the limit gets EFBIG and SIGXFSZ. */
static void fsize_limit(void)
{
    char path[] = "/tmp/wakeups_fsize.XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    unlink(path);
    struct rlimit old, rl = {100, RLIM_INFINITY};
    CHECK(getrlimit(RLIMIT_FSIZE, &old) == 0);
    CHECK(setrlimit(RLIMIT_FSIZE, &rl) == 0);
    signal(SIGXFSZ, SIG_IGN);
    char buf[150] = {0};
    CHECK(write(fd, buf, sizeof buf) == 100);
    CHECK_ERR(write(fd, buf, 1), EFBIG);
    CHECK(pwrite(fd, buf, 50, 60) == 40);
    CHECK(setrlimit(RLIMIT_FSIZE, &old) == 0);
    signal(SIGXFSZ, SIG_DFL);
    close(fd);
}

int main(void)
{
    fsize_limit();
    pipe_close_while_reading();
    rcvtimeo_read();
    cpu_time();
    cpu_timers();
    splice_tee();
    poll_norm();
    futex_wake0();
    waitid_no_wexited();
    ok();
    return 0;
}
