/* Filling a tmpfs: what its size and nr_inodes let a program create, and the errno past.
 *
 * Usage: tmpfsfill DIR WHAT
 *   DIR is the root of a small, empty tmpfs (natively mounted by the test in a private
 *   mount namespace; in the sandbox an OCI tmpfs mount with the same options).
 *   WHAT: files (empty files), dirs, symlinks (4000-byte targets), names (files with
 *   255-byte names), links (hard links to one file), data (one file written 4 KiB at
 *   a time), mixed (data then files).
 * For each: how many were made before the first failure and its errno, then everything
 * is removed and the same is done again (the room must come back), then
 * statvfs's f_files/f_ffree/f_blocks/f_bfree.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

static const char *dir;
static char target[4001];

static const char *ename(int e)
{
    switch (e) {
    case 0: return "0";
    case ENOSPC: return "ENOSPC";
    case ENOMEM: return "ENOMEM";
    case EDQUOT: return "EDQUOT";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    default: {
        static char buf[32];
        snprintf(buf, sizeof buf, "E%d", e);
        return buf;
    }
    }
}

static void path(char *out, const char *what, long i)
{
    if (!strcmp(what, "names")) {
        int n = snprintf(out, 4096, "%s/%08ld", dir, i);
        memset(out + n, 'n', 255 - 8);
        out[n + 255 - 8] = 0;
    } else {
        snprintf(out, 4096, "%s/%s%ld", dir, what, i);
    }
}

/* Makes entries until one fails; returns how many; *err gets the errno. */
static long fill(const char *what, int *err, long *bytes)
{
    char p[4096];
    long i;
    *err = 0;
    *bytes = 0;
    if (!strcmp(what, "data") || !strcmp(what, "mixed")) {
        static char block[4096];
        memset(block, 'd', sizeof block);
        snprintf(p, sizeof p, "%s/data", dir);
        int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) {
            *err = errno;
            return 0;
        }
        for (;;) {
            ssize_t w = write(fd, block, sizeof block);
            if (w < 0) {
                *err = errno;
                break;
            }
            *bytes += w;
            if (*bytes >= (1L << 30))
                break;
        }
        close(fd);
        if (!strcmp(what, "data"))
            return 1;
        /* mixed: the data file holds all the space; empty files need none. */
        what = "files";
    }
    char base[4096];
    snprintf(base, sizeof base, "%s/base", dir);
    if (!strcmp(what, "links")) {
        int fd = open(base, O_WRONLY | O_CREAT, 0644);
        if (fd < 0) {
            *err = errno;
            return 0;
        }
        close(fd);
    }
    for (i = 0; i < 1000000; i++) {
        path(p, what, i);
        int r;
        if (!strcmp(what, "dirs")) {
            r = mkdir(p, 0755);
        } else if (!strcmp(what, "symlinks")) {
            r = symlink(target, p);
        } else if (!strcmp(what, "links")) {
            r = link(base, p);
        } else {
            r = open(p, O_WRONLY | O_CREAT | O_EXCL, 0644);
            if (r >= 0)
                r = close(r);
        }
        if (r < 0) {
            *err = errno;
            break;
        }
    }
    return i;
}

static void clear(const char *what, long n)
{
    char p[4096];
    const char *kind = !strcmp(what, "mixed") ? "files" : what;
    for (long i = 0; i < n; i++) {
        path(p, kind, i);
        if (!strcmp(kind, "dirs"))
            rmdir(p);
        else
            unlink(p);
    }
    snprintf(p, sizeof p, "%s/data", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/base", dir);
    unlink(p);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: tmpfsfill DIR files|dirs|symlinks|names|links|data|mixed\n");
        return 2;
    }
    dir = argv[1];
    const char *what = argv[2];
    memset(target, 't', 4000);
    int err;
    long bytes;
    long n = fill(what, &err, &bytes);
    printf("made=%ld\nerrno=%s\nbytes=%ld\n", n, ename(err), bytes);
    clear(what, n);
    long n2 = fill(what, &err, &bytes);
    printf("again=%ld\nagain_errno=%s\nagain_bytes=%ld\n", n2, ename(err), bytes);
    clear(what, n2);
    struct statvfs sv;
    if (statvfs(dir, &sv) == 0)
        printf("f_files=%lu\nf_ffree=%lu\nf_blocks=%lu\nf_bfree=%lu\nf_bsize=%lu\n",
               (unsigned long)sv.f_files, (unsigned long)sv.f_ffree,
               (unsigned long)sv.f_blocks, (unsigned long)sv.f_bfree,
               (unsigned long)sv.f_bsize);
    return 0;
}
