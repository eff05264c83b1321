/* File-system microbenchmarks for bench/run.py (the fs rows).
 *
 *   fsbench MODE N DIR
 *
 * MODE is one of
 *   stat     stat(DIR/f4k)
 *   read4k   pread(fd, 4 KiB, offset 0) of DIR/f4k, opened once
 *   create   open(DIR/new, O_CREAT|O_EXCL|O_WRONLY) + write 100 bytes + close + unlink
 *   readdir  open DIR/d1000 + getdents64 until the end (1,000 entries + . and ..) + close
 *   prepare  only create the fixtures (DIR/f4k, DIR/d1000/0..999) and exit
 *
 * Unless DIR already holds the fixtures (made beforehand by `prepare`, e.g. on
 * the host so that a sandbox reaches them through its Gofer), they are made
 * first and removed at the end.  N/10 untimed warm-up iterations, then N timed
 * ones; prints the mean ns per iteration on its last line.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define ENTRIES 1000

static char dir[4096], f4k[4200], d1000[4200], newf[4200];
static int fd4k = -1;

static void die(const char *what)
{
	fprintf(stderr, "fsbench: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int have_fixtures(void)
{
	struct stat st;
	char last[4300];

	snprintf(last, sizeof(last), "%s/%d", d1000, ENTRIES - 1);
	return stat(f4k, &st) == 0 && st.st_size == 4096 && stat(last, &st) == 0;
}

static void make_fixtures(void)
{
	char buf[4096], name[4300];
	int fd;

	memset(buf, 'x', sizeof(buf));
	fd = open(f4k, O_CREAT | O_TRUNC | O_WRONLY, 0644);
	if (fd < 0 || write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf) || close(fd) < 0)
		die("create f4k");
	if (mkdir(d1000, 0755) < 0 && errno != EEXIST)
		die("mkdir d1000");
	for (int i = 0; i < ENTRIES; i++) {
		snprintf(name, sizeof(name), "%s/%d", d1000, i);
		fd = open(name, O_CREAT | O_WRONLY, 0644);
		if (fd < 0 || close(fd) < 0)
			die("create entry");
	}
}

static void remove_fixtures(void)
{
	char name[4300];

	for (int i = 0; i < ENTRIES; i++) {
		snprintf(name, sizeof(name), "%s/%d", d1000, i);
		unlink(name);
	}
	rmdir(d1000);
	unlink(f4k);
}

static void do_stat(long n)
{
	struct stat st;

	for (long i = 0; i < n; i++)
		if (stat(f4k, &st) < 0)
			die("stat");
}

static void do_read4k(long n)
{
	static char buf[4096];

	if (fd4k < 0 && (fd4k = open(f4k, O_RDONLY)) < 0)
		die("open f4k");
	for (long i = 0; i < n; i++)
		if (pread(fd4k, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf))
			die("pread");
}

static void do_create(long n)
{
	static const char data[100] = "small file";

	for (long i = 0; i < n; i++) {
		int fd = open(newf, O_CREAT | O_EXCL | O_WRONLY, 0644);

		if (fd < 0)
			die("create");
		if (write(fd, data, sizeof(data)) != (ssize_t)sizeof(data))
			die("write");
		if (close(fd) < 0 || unlink(newf) < 0)
			die("close/unlink");
	}
}

static void do_readdir(long n)
{
	static char buf[32768];

	for (long i = 0; i < n; i++) {
		long entries = 0, got;
		int fd = open(d1000, O_RDONLY | O_DIRECTORY);

		if (fd < 0)
			die("open d1000");
		while ((got = syscall(SYS_getdents64, fd, buf, sizeof(buf))) > 0)
			for (long off = 0; off < got;
			     off += ((struct dirent64 *)(buf + off))->d_reclen)
				entries++;
		if (got < 0)
			die("getdents64");
		close(fd);
		if (entries != ENTRIES + 2) {
			fprintf(stderr, "fsbench: %ld entries, not %d\n", entries, ENTRIES + 2);
			exit(1);
		}
	}
}

static const struct {
	const char *name;
	void (*run)(long);
} modes[] = {
	{"stat", do_stat},
	{"read4k", do_read4k},
	{"create", do_create},
	{"readdir", do_readdir},
	{"prepare", NULL},
};

int main(int argc, char **argv)
{
	struct timespec t0, t1;
	size_t m;
	char *end;
	long n;
	int mine = 0;

	if (argc != 4)
		goto usage;
	for (m = 0; m < sizeof(modes) / sizeof(modes[0]); m++)
		if (strcmp(argv[1], modes[m].name) == 0)
			break;
	if (m == sizeof(modes) / sizeof(modes[0]))
		goto usage;
	n = strtol(argv[2], &end, 10);
	if (*end || n <= 0)
		goto usage;
	snprintf(dir, sizeof(dir), "%s", argv[3]);
	snprintf(f4k, sizeof(f4k), "%s/f4k", dir);
	snprintf(d1000, sizeof(d1000), "%s/d1000", dir);
	snprintf(newf, sizeof(newf), "%s/new.%d", dir, (int)getpid());

	if (modes[m].run == NULL) {
		make_fixtures();
		return 0;
	}
	if (!have_fixtures()) {
		make_fixtures();
		mine = 1;
	}
	modes[m].run(n / 10 > 0 ? n / 10 : 1);	/* warm-up */
	if (clock_gettime(CLOCK_MONOTONIC, &t0) < 0)
		die("clock_gettime");
	modes[m].run(n);
	if (clock_gettime(CLOCK_MONOTONIC, &t1) < 0)
		die("clock_gettime");
	if (mine)
		remove_fixtures();
	printf("%.1f\n", ((double)(t1.tv_sec - t0.tv_sec) * 1e9 +
			  (double)(t1.tv_nsec - t0.tv_nsec)) / (double)n);
	return 0;
usage:
	fprintf(stderr, "usage: fsbench stat|read4k|create|readdir|prepare N DIR\n");
	return 2;
}
