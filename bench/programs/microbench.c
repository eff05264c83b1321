/*
 * microbench: system-call latency microbenchmarks for bench/run.py.
 *
 * Usage: microbench MODE N [PATH]
 *
 *   getppid   N x syscall(SYS_getppid) (raw syscall: no libc caching)
 *   clock     N x clock_gettime(CLOCK_MONOTONIC) through libc (the vDSO where there is one)
 *   openclose N x open(PATH, O_RDONLY) + close   (PATH: /etc/hostname)
 *   forkwait  N x fork + child _exit(0) + waitpid
 *   forkexec  N x fork + child execv(PATH) + waitpid (PATH: /bin/true)
 *   tcprr     N x 1-byte write + 1-byte read over loopback TCP, echoed by a child
 *   tcpstream N x 1 MiB (16 writes of 64 KiB) over loopback TCP to a child that reads
 *   tcpconnect N x (socket, connect, accept, close both) over loopback TCP
 *
 * A warm-up of N/10 iterations (at least one) runs first and is not timed.
 * The N timed iterations are measured with clock_gettime(CLOCK_MONOTONIC) and
 * the mean in nanoseconds per iteration is printed on one line on stdout.
 * Any failure prints a message on stderr and exits 1.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *path;

static void die(const char *what)
{
	fprintf(stderr, "microbench: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void wait_ok(pid_t pid)
{
	int status;

	for (;;) {
		pid_t r = waitpid(pid, &status, 0);
		if (r == pid)
			break;
		if (r < 0 && errno == EINTR)
			continue;
		die("waitpid");
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "microbench: child status 0x%x\n", status);
		exit(1);
	}
}

static void do_getppid(long n)
{
	for (long i = 0; i < n; i++)
		if (syscall(SYS_getppid) < 0)
			die("getppid");
}

static void do_clock(long n)
{
	struct timespec ts;

	for (long i = 0; i < n; i++)
		if (clock_gettime(CLOCK_MONOTONIC, &ts) < 0)
			die("clock_gettime");
}

static void do_openclose(long n)
{
	for (long i = 0; i < n; i++) {
		int fd = open(path, O_RDONLY);
		if (fd < 0)
			die(path);
		if (close(fd) < 0)
			die("close");
	}
}

static void do_forkwait(long n)
{
	for (long i = 0; i < n; i++) {
		pid_t pid = fork();
		if (pid < 0)
			die("fork");
		if (pid == 0)
			_exit(0);
		wait_ok(pid);
	}
}

static void do_forkexec(long n)
{
	char *const argv[] = {(char *)path, NULL};

	for (long i = 0; i < n; i++) {
		pid_t pid = fork();
		if (pid < 0)
			die("fork");
		if (pid == 0) {
			execv(path, argv);
			_exit(127);
		}
		wait_ok(pid);
	}
}

/* One loopback TCP connection to a forked child, made on first use: the child
 * echoes each byte (echo) or reads everything (sink) until EOF. */
static int tcp_fd = -1;
static pid_t tcp_child;

static int tcp_connect(int echo)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof(a);
	int one = 1, l = socket(AF_INET, SOCK_STREAM, 0);

	if (tcp_fd >= 0)
		return tcp_fd;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 1) < 0 ||
	    getsockname(l, (struct sockaddr *)&a, &len) < 0)
		die("listen");
	tcp_child = fork();
	if (tcp_child < 0)
		die("fork");
	if (tcp_child == 0) {
		static char buf[1 << 16];
		int c = socket(AF_INET, SOCK_STREAM, 0);
		ssize_t r;

		if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof(a)) < 0)
			die("connect");
		setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		while ((r = read(c, buf, echo ? 1 : sizeof(buf))) > 0)
			if (echo && write(c, buf, r) != r)
				die("write");
		_exit(r < 0);
	}
	tcp_fd = accept(l, NULL, NULL);
	if (tcp_fd < 0)
		die("accept");
	setsockopt(tcp_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	close(l);
	return tcp_fd;
}

static void tcp_done(void)
{
	if (tcp_fd >= 0) {
		shutdown(tcp_fd, SHUT_WR);
		wait_ok(tcp_child);
	}
}

static void do_tcprr(long n)
{
	int fd = tcp_connect(1);
	char c = 'x';

	for (long i = 0; i < n; i++)
		if (write(fd, &c, 1) != 1 || read(fd, &c, 1) != 1)
			die("ping-pong");
}

static void do_tcpstream(long n)
{
	static char buf[1 << 16];
	int fd = tcp_connect(0);

	for (long i = 0; i < n * 16; i++) {
		size_t off = 0;
		while (off < sizeof(buf)) {
			ssize_t w = write(fd, buf + off, sizeof(buf) - off);
			if (w <= 0)
				die("stream write");
			off += w;
		}
	}
}

/* One loopback TCP connection per iteration, in one process: socket + connect to a
 * listener, accept, close (the server's end first, so TIME_WAIT stays on the listener's
 * port and ephemeral ports are not used up). */
static void do_tcpconnect(long n)
{
	static int l = -1;
	static struct sockaddr_in a = {.sin_family = AF_INET};

	if (l < 0) {
		socklen_t len = sizeof(a);
		l = socket(AF_INET, SOCK_STREAM, 0);
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 128) < 0 ||
		    getsockname(l, (struct sockaddr *)&a, &len) < 0)
			die("listen");
	}
	for (long i = 0; i < n; i++) {
		int c = socket(AF_INET, SOCK_STREAM, 0), s;

		if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof(a)) < 0)
			die("connect");
		s = accept(l, NULL, NULL);
		if (s < 0)
			die("accept");
		close(s);
		close(c);
	}
}

static const struct {
	const char *name;
	void (*run)(long);
	const char *default_path;
} modes[] = {
	{"getppid", do_getppid, NULL},
	{"clock", do_clock, NULL},
	{"openclose", do_openclose, "/etc/hostname"},
	{"forkwait", do_forkwait, NULL},
	{"forkexec", do_forkexec, "/bin/true"},
	{"tcprr", do_tcprr, NULL},
	{"tcpstream", do_tcpstream, NULL},
	{"tcpconnect", do_tcpconnect, NULL},
};

int main(int argc, char **argv)
{
	struct timespec t0, t1;
	char *end;
	long n;
	size_t m;

	if (argc < 3 || argc > 4)
		goto usage;
	for (m = 0; m < sizeof(modes) / sizeof(modes[0]); m++)
		if (strcmp(argv[1], modes[m].name) == 0)
			break;
	if (m == sizeof(modes) / sizeof(modes[0]))
		goto usage;
	errno = 0;
	n = strtol(argv[2], &end, 10);
	if (errno || *end || n <= 0)
		goto usage;
	path = argc == 4 ? argv[3] : modes[m].default_path;

	modes[m].run(n / 10 > 0 ? n / 10 : 1);	/* warm-up */

	if (clock_gettime(CLOCK_MONOTONIC, &t0) < 0)
		die("clock_gettime");
	modes[m].run(n);
	if (clock_gettime(CLOCK_MONOTONIC, &t1) < 0)
		die("clock_gettime");

	double ns = (double)(t1.tv_sec - t0.tv_sec) * 1e9 +
		    (double)(t1.tv_nsec - t0.tv_nsec);
	tcp_done();
	printf("%.1f\n", ns / (double)n);
	return 0;

usage:
	fprintf(stderr, "usage: microbench getppid|clock|openclose|forkwait|forkexec|tcprr|tcpstream|tcpconnect N [PATH]\n");
	return 2;
}
