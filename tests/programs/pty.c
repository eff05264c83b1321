/* Pseudo-terminals made by the program itself: /dev/ptmx, /dev/pts/N, the line
 * discipline, controlling terminals and job control.  Self-checking: the same
 * expectations hold natively and in the sandbox (Linux's n_tty and pty semantics). */
#define _GNU_SOURCE
#include "check.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>

#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif

static int open_master(char *name, size_t len)
{
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    CHECK(m >= 0);
    CHECK(grantpt(m) == 0);
    CHECK(unlockpt(m) == 0);
    CHECK(ptsname_r(m, name, len) == 0);
    return m;
}

/* Reads from the master until `want` bytes came or 2 s passed. */
static size_t read_all(int fd, char *buf, size_t want)
{
    size_t got = 0;
    while (got < want) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 2000) <= 0 || !(p.revents & POLLIN))
            break;
        ssize_t n = read(fd, buf + got, want - got);
        if (n <= 0)
            break;
        got += n;
    }
    buf[got] = 0;
    return got;
}

static void test_alloc(void)
{
    struct stat st;
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    CHECK(m >= 0);
    CHECK(fstat(m, &st) == 0);
    CHECK(S_ISCHR(st.st_mode) && major(st.st_rdev) == 5 && minor(st.st_rdev) == 2);
    int n = -1, lock = 0;
    CHECK(ioctl(m, TIOCGPTN, &n) == 0 && n >= 0);
    CHECK(ioctl(m, TIOCGPTLCK, &lock) == 0 && lock == 1);
    char name[64];
    snprintf(name, sizeof name, "/dev/pts/%d", n);
    CHECK(stat(name, &st) == 0);
    CHECK(S_ISCHR(st.st_mode) && major(st.st_rdev) == 136 + n / 256 &&
          (int)minor(st.st_rdev) == n % 256);
    CHECK_ERR(open(name, O_RDWR | O_NOCTTY), EIO);        /* locked */
    CHECK(grantpt(m) == 0);
    CHECK(stat(name, &st) == 0 && st.st_uid == getuid() && (st.st_mode & 0757) == 0600);
    CHECK(unlockpt(m) == 0);
    CHECK(ioctl(m, TIOCGPTLCK, &lock) == 0 && lock == 0);
    CHECK(strcmp(ptsname(m), name) == 0);
    int s = open(name, O_RDWR | O_NOCTTY);
    CHECK(s >= 0);
    CHECK(isatty(s) && isatty(m));
    CHECK(strcmp(ttyname(s), name) == 0);
    char link[64], target[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", s);
    ssize_t k = readlink(link, target, sizeof target - 1);
    CHECK(k > 0);
    target[k] = 0;
    CHECK(strcmp(target, name) == 0);
    /* The slave's ioctls are not the master's. */
    CHECK_ERR(ioctl(s, TIOCGPTN, &n), ENOTTY);
    /* TIOCGPTPEER opens the same slave without a path. */
    int p = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY);
    CHECK(p >= 0);
    struct stat a, b;
    CHECK(fstat(p, &a) == 0 && fstat(s, &b) == 0 && a.st_rdev == b.st_rdev);
    close(p);
    close(s);
    close(m);
    /* The name goes with the master. */
    CHECK_ERR(stat(name, &st), ENOENT);
}

static void test_canonical(void)
{
    char name[64], buf[256];
    int m = open_master(name, sizeof name);
    int s = open(name, O_RDWR | O_NOCTTY);
    CHECK(s >= 0);
    /* Nothing to read yet: no line. */
    CHECK(fcntl(s, F_SETFL, O_NONBLOCK) == 0);
    CHECK(write(m, "abcx\177d", 6) == 6);
    CHECK_ERR(read(s, buf, sizeof buf), EAGAIN);
    int avail = -1;
    CHECK(ioctl(s, FIONREAD, &avail) == 0 && avail == 0);
    CHECK(write(m, "\r", 1) == 1);                              /* ICRNL */
    struct pollfd ps = {s, POLLIN, 0};
    CHECK(poll(&ps, 1, 2000) == 1);
    CHECK(ioctl(s, FIONREAD, &avail) == 0 && avail == 5);
    CHECK(read(s, buf, sizeof buf) == 5 && memcmp(buf, "abcd\n", 5) == 0);
    CHECK(fcntl(s, F_SETFL, 0) == 0);
    /* The echo: erase as "\b \b", newline as "\r\n" (ONLCR). */
    CHECK(read_all(m, buf, 10) == 10 && memcmp(buf, "abcx\b \bd\r\n", 10) == 0);
    /* ^U kills the line, ^W a word; ^D ends a line without a newline, and at the start
     * of a line reads as end of file. */
    CHECK(write(m, "junk\025one two\027three\004", 19) == 19);
    CHECK(read(s, buf, sizeof buf) == 9 && memcmp(buf, "one three", 9) == 0);
    CHECK(write(m, "\004", 1) == 1);
    CHECK(read(s, buf, sizeof buf) == 0);
    /* Two lines are two reads. */
    CHECK(write(m, "l1\nl2\n", 6) == 6);
    CHECK(read(s, buf, sizeof buf) == 3 && memcmp(buf, "l1\n", 3) == 0);
    CHECK(read(s, buf, sizeof buf) == 3 && memcmp(buf, "l2\n", 3) == 0);
    /* IEXTEN's ^V quotes the next byte. */
    CHECK(write(m, "\026\025x\n", 4) == 4);
    CHECK(read(s, buf, sizeof buf) == 3 && memcmp(buf, "\025x\n", 3) == 0);
    /* Output processing: "\n" -> "\r\n". */
    CHECK(tcflush(m, TCIFLUSH) == 0);
    CHECK(write(s, "x\ny", 3) == 3);
    CHECK(read_all(m, buf, 4) == 4 && memcmp(buf, "x\r\ny", 4) == 0);
    /* Master reads EIO once the slave is closed, with POLLHUP. */
    close(s);
    struct pollfd pf = {m, POLLIN, 0};
    CHECK(poll(&pf, 1, 1000) == 1 && (pf.revents & POLLHUP));
    CHECK_ERR(read(m, buf, sizeof buf), EIO);
    close(m);
}

static void test_raw(void)
{
    char name[64], buf[256];
    int m = open_master(name, sizeof name);
    int s = open(name, O_RDWR | O_NOCTTY);
    CHECK(s >= 0);
    struct termios t;
    CHECK(tcgetattr(s, &t) == 0);
    CHECK(t.c_lflag & ICANON && t.c_lflag & ECHO && t.c_oflag & ONLCR && t.c_iflag & ICRNL);
    CHECK(t.c_cc[VINTR] == 3 && t.c_cc[VEOF] == 4 && t.c_cc[VMIN] == 1);
    cfmakeraw(&t);
    t.c_cc[VMIN] = 0;
    t.c_cc[VTIME] = 1;
    CHECK(tcsetattr(s, TCSANOW, &t) == 0);
    /* The master's termios requests act on the slave's. */
    struct termios mt;
    CHECK(tcgetattr(m, &mt) == 0 && !(mt.c_lflag & ICANON));
    /* VMIN 0, VTIME 1: nothing within 0.1 s reads as 0. */
    CHECK(read(s, buf, sizeof buf) == 0);
    CHECK(write(m, "a\rb\003", 4) == 4);
    CHECK(read(s, buf, sizeof buf) == 4 && memcmp(buf, "a\rb\003", 4) == 0);
    /* No echo, no output processing. */
    CHECK(write(s, "\n", 1) == 1);
    CHECK(read_all(m, buf, 1) == 1 && buf[0] == '\n');
    /* VMIN 3, VTIME 0: the read waits for 3 bytes. */
    t.c_cc[VMIN] = 3;
    t.c_cc[VTIME] = 0;
    CHECK(tcsetattr(s, TCSANOW, &t) == 0);
    CHECK(write(m, "12", 2) == 2);
    struct pollfd p = {s, POLLIN, 0};
    CHECK(poll(&p, 1, 100) == 0);
    CHECK(write(m, "3", 1) == 1);
    CHECK(poll(&p, 1, 1000) == 1);
    CHECK(read(s, buf, sizeof buf) == 3 && memcmp(buf, "123", 3) == 0);
    /* Packet mode: data comes after a 0 byte; a flush is reported. */
    int one = 1;
    CHECK(ioctl(m, TIOCPKT, &one) == 0);
    CHECK(write(s, "pk", 2) == 2);
    CHECK(read(m, buf, sizeof buf) == 3 && buf[0] == 0 && memcmp(buf + 1, "pk", 2) == 0);
    CHECK(tcflush(s, TCIFLUSH) == 0);
    CHECK(read(m, buf, sizeof buf) == 1 && (buf[0] & TIOCPKT_FLUSHREAD));
    close(s);
    close(m);
}

static volatile sig_atomic_t got_sig;

static void on_sig(int sig)
{
    got_sig = sig;
}

/* A child leading a session whose controlling terminal is the slave. */
static int master_fd = -1;

static pid_t spawn_on_tty(const char *name, void (*body)(int))
{
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(master_fd);
        CHECK(setsid() == getpid());
        CHECK_ERR(open("/dev/tty", O_RDWR), ENXIO);
        int s = open(name, O_RDWR);        /* a session leader's first terminal */
        CHECK(s >= 0);
        CHECK(tcgetpgrp(s) == getpgrp());
        CHECK(tcgetsid(s) == getpid());
        int tty = open("/dev/tty", O_RDWR);
        CHECK(tty >= 0);
        body(s);
        _exit(0);
    }
    return pid;
}

static void wait_for_sig(int sig)
{
    for (int i = 0; i < 500 && got_sig != sig; i++)
        usleep(10000);
}

static void body_intr(int s)
{
    char buf[16];
    read(s, buf, sizeof buf);               /* ^C kills us here */
    _exit(3);
}

static void body_winch(int s)
{
    signal(SIGWINCH, on_sig);
    CHECK(write(s, "R", 1) == 1);
    wait_for_sig(SIGWINCH);
    CHECK(got_sig == SIGWINCH);
    struct winsize ws;
    CHECK(ioctl(s, TIOCGWINSZ, &ws) == 0 && ws.ws_row == 33 && ws.ws_col == 101);
    _exit(4);
}

static void body_hup(int s)
{
    signal(SIGHUP, on_sig);
    CHECK(write(s, "R", 1) == 1);
    wait_for_sig(SIGHUP);
    CHECK(got_sig == SIGHUP);
    char buf[4];
    CHECK(read(s, buf, sizeof buf) == 0);    /* hung up: end of file */
    CHECK_ERR(write(s, "x", 1), EIO);
    _exit(5);
}

static void body_jobs(int s)
{
    /* A background group reading its terminal stops with SIGTTIN; writing with
     * TOSTOP, SIGTTOU; SIGTTIN ignored makes the read EIO. */
    pid_t c = fork();
    CHECK(c >= 0);
    if (c == 0) {
        setpgid(0, 0);
        char buf[4];
        read(s, buf, sizeof buf);
        _exit(9);
    }
    setpgid(c, c);
    int st;
    CHECK(waitpid(c, &st, WUNTRACED) == c && WIFSTOPPED(st) && WSTOPSIG(st) == SIGTTIN);
    kill(c, SIGKILL);
    CHECK(waitpid(c, &st, 0) == c);

    struct termios t;
    CHECK(tcgetattr(s, &t) == 0);
    t.c_lflag |= TOSTOP;
    CHECK(tcsetattr(s, TCSANOW, &t) == 0);
    c = fork();
    CHECK(c >= 0);
    if (c == 0) {
        setpgid(0, 0);
        write(s, "bg", 2);
        _exit(9);
    }
    setpgid(c, c);
    CHECK(waitpid(c, &st, WUNTRACED) == c && WIFSTOPPED(st) && WSTOPSIG(st) == SIGTTOU);
    kill(c, SIGKILL);
    CHECK(waitpid(c, &st, 0) == c);

    c = fork();
    CHECK(c >= 0);
    if (c == 0) {
        setpgid(0, 0);
        signal(SIGTTIN, SIG_IGN);
        char buf[4];
        CHECK_ERR(read(s, buf, sizeof buf), EIO);
        /* tcsetpgrp from the background with SIGTTOU ignored is allowed. */
        signal(SIGTTOU, SIG_IGN);
        CHECK(tcsetpgrp(s, getpgrp()) == 0);
        CHECK(tcgetpgrp(s) == getpgrp());
        _exit(7);
    }
    setpgid(c, c);
    CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 7);
    /* The foreground is the child's group now; take it back (SIGTTOU ignored). */
    signal(SIGTTOU, SIG_IGN);
    CHECK(tcsetpgrp(s, getpgrp()) == 0);
    CHECK_ERR(tcsetpgrp(s, 999999), ESRCH);
    /* TIOCNOTTY by the leader: no terminal any more. */
    signal(SIGHUP, SIG_IGN);
    CHECK(ioctl(s, TIOCNOTTY) == 0);
    CHECK_ERR(open("/dev/tty", O_RDWR), ENXIO);
    CHECK_ERR(tcgetpgrp(s), ENOTTY);
    /* TIOCSCTTY takes it again. */
    CHECK(ioctl(s, TIOCSCTTY, 0) == 0);
    CHECK(tcgetpgrp(s) == getpgrp());
    _exit(6);
}

static void test_session(void)
{
    char name[64], buf[64];
    int st;
    struct sigaction sa = {0};
    sa.sa_handler = on_sig;
    sigaction(SIGHUP, &sa, NULL);

    /* ^C: SIGINT to the foreground group, echoed as ^C. */
    int m = master_fd = open_master(name, sizeof name);
    pid_t pid = spawn_on_tty(name, body_intr);
    usleep(100000);
    CHECK(write(m, "\003", 1) == 1);
    CHECK(waitpid(pid, &st, 0) == pid && WIFSIGNALED(st) && WTERMSIG(st) == SIGINT);
    CHECK(read_all(m, buf, 2) == 2 && memcmp(buf, "^C", 2) == 0);
    close(m);

    /* A new size: SIGWINCH to the foreground group. */
    m = master_fd = open_master(name, sizeof name);
    pid = spawn_on_tty(name, body_winch);
    CHECK(read_all(m, buf, 1) == 1);
    struct winsize ws = {33, 101, 0, 0};
    CHECK(ioctl(m, TIOCSWINSZ, &ws) == 0);
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 4);
    close(m);

    /* Closing the master hangs up the session. */
    m = master_fd = open_master(name, sizeof name);
    pid = spawn_on_tty(name, body_hup);
    CHECK(read_all(m, buf, 1) == 1);
    close(m);
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 5);

    m = master_fd = open_master(name, sizeof name);
    pid = spawn_on_tty(name, body_jobs);
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 6);
    close(m);
}

int main(void)
{
    test_alloc();
    test_canonical();
    test_raw();
    test_session();
    ok();
    return 0;
}
