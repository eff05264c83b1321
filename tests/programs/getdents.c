/* getdents64 semantics that hold on every filesystem: whole records, EINVAL for
 * a buffer too small for one, resuming at any record's d_off (seekdir), and a
 * rewind (or a new open) that sees every change to the directory: creates,
 * unlinks, renames, hard links, mkdir/rmdir.  Run on /dev/shm (tmpfs) and /tmp.
 * Prints "ok" and exits 0, or names the failed check and exits 1. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

struct d64 {
	unsigned long long d_ino;
	long long d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "%s:%d: %s failed (errno %d)\n", \
	dir, __LINE__, #c, errno); exit(1); } } while (0)

static const char *dir;
#define NFILES 300

/* Reads the rest of the listing with buffers of `bufsz`; fills seen[] (index
 * from the name "fNNN..." or -1 for others); returns the number of records. */
static int read_all(int fd, size_t bufsz, int *seen, int *dots, int *others)
{
	char *buf = malloc(bufsz);
	int n = 0;
	for (;;) {
		long r = syscall(SYS_getdents64, fd, buf, bufsz);
		CHECK(r >= 0);
		if (r == 0)
			break;
		for (long off = 0; off < r;) {
			struct d64 *d = (struct d64 *)(buf + off);
			CHECK(d->d_reclen % 8 == 0 && d->d_reclen >= 20);
			CHECK(off + d->d_reclen <= r);
			if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, "..")) {
				CHECK(d->d_type == DT_DIR);
				(*dots)++;
			} else if (d->d_name[0] == 'f') {
				int i = atoi(d->d_name + 1);
				CHECK(i >= 0 && i < NFILES);
				CHECK(d->d_type == DT_REG);
				seen[i]++;
			} else {
				(*others)++;
			}
			off += d->d_reclen;
			n++;
		}
	}
	free(buf);
	return n;
}

static char *fname(int i)
{
	static char b[300];
	snprintf(b, sizeof b, "%s/f%03d-a-rather-long-name-to-fill-records-%0*d", dir, i, i % 7 + 1, 0);
	return b;
}

static int count(const char *path, int *others)
{
	int seen[NFILES] = {0}, dots = 0;
	*others = 0;
	int fd = open(path, O_RDONLY | O_DIRECTORY);
	CHECK(fd >= 0);
	int n = read_all(fd, 4096, seen, &dots, others);
	CHECK(dots == 2);
	for (int i = 0; i < NFILES; i++)
		CHECK(seen[i] <= 1);
	close(fd);
	return n;
}

static void run(const char *base)
{
	char path[200];
	snprintf(path, sizeof path, "%s/getdents-%d", base, getpid());
	dir = path;
	CHECK(mkdir(path, 0755) == 0);
	for (int i = 0; i < NFILES; i++) {
		int fd = open(fname(i), O_CREAT | O_WRONLY, 0644);
		CHECK(fd >= 0);
		close(fd);
	}

	/* Every record once, whatever the buffer size. */
	size_t sizes[] = {32768, 4096, 333, 100};
	for (unsigned k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
		int seen[NFILES] = {0}, dots = 0, others = 0;
		int fd = open(path, O_RDONLY | O_DIRECTORY);
		CHECK(fd >= 0);
		CHECK(read_all(fd, sizes[k], seen, &dots, &others) == NFILES + 2);
		CHECK(dots == 2 && others == 0);
		for (int i = 0; i < NFILES; i++)
			CHECK(seen[i] == 1);
		close(fd);
	}

	/* Too small for one record: EINVAL; just big enough: exactly one. */
	int fd = open(path, O_RDONLY | O_DIRECTORY);
	CHECK(fd >= 0);
	char buf[4096];
	errno = 0;
	CHECK(syscall(SYS_getdents64, fd, buf, 1) == -1 && errno == EINVAL);
	long r = syscall(SYS_getdents64, fd, buf, sizeof buf);
	CHECK(r > 0);
	/* The records after the first few, then seek back to the third's d_off. */
	struct d64 *d = (struct d64 *)buf;
	struct d64 *second = (struct d64 *)(buf + d->d_reclen);
	struct d64 *third = (struct d64 *)((char *)second + second->d_reclen);
	struct d64 *fourth = (struct d64 *)((char *)third + third->d_reclen);
	char want[300];
	strcpy(want, fourth->d_name);
	unsigned short one = fourth->d_reclen;
	CHECK(lseek(fd, third->d_off, SEEK_SET) == third->d_off);
	r = syscall(SYS_getdents64, fd, buf, one);
	CHECK(r == one);
	CHECK(!strcmp(((struct d64 *)buf)->d_name, want));
	/* Reading a directory with read(2) is EISDIR. */
	errno = 0;
	CHECK(read(fd, buf, sizeof buf) == -1 && errno == EISDIR);

	/* Changes are seen after a rewind and by a new open. */
	int others;
	char a[300], b[300];
	snprintf(a, sizeof a, "%s/new-file", path);
	CHECK(close(open(a, O_CREAT | O_WRONLY, 0644)) == 0);
	CHECK(count(path, &others) == NFILES + 3 && others == 1);
	CHECK(lseek(fd, 0, SEEK_SET) == 0);
	{
		int seen[NFILES] = {0}, dots = 0, oth = 0;
		CHECK(read_all(fd, sizeof buf, seen, &dots, &oth) == NFILES + 3 && oth == 1);
	}
	CHECK(unlink(fname(0)) == 0);
	CHECK(unlink(fname(1)) == 0);
	CHECK(count(path, &others) == NFILES + 1);
	snprintf(b, sizeof b, "%s/renamed", path);
	CHECK(rename(a, b) == 0);
	CHECK(count(path, &others) == NFILES + 1 && others == 1);
	snprintf(a, sizeof a, "%s/hardlink", path);
	CHECK(link(b, a) == 0);
	CHECK(count(path, &others) == NFILES + 2 && others == 2);
	snprintf(a, sizeof a, "%s/subdir", path);
	CHECK(mkdir(a, 0755) == 0);
	CHECK(count(path, &others) == NFILES + 3 && others == 3);
	CHECK(rmdir(a) == 0);
	CHECK(count(path, &others) == NFILES + 2 && others == 2);
	close(fd);

	/* Clean up. */
	for (int i = 2; i < NFILES; i++)
		CHECK(unlink(fname(i)) == 0);
	snprintf(a, sizeof a, "%s/hardlink", path);
	CHECK(unlink(a) == 0 && unlink(b) == 0);
	CHECK(count(path, &others) == 2 && others == 0);
	CHECK(rmdir(path) == 0);
}

int main(void)
{
	run("/dev/shm");
	run("/tmp");
	puts("ok");
	return 0;
}
