/* The new mount API: fsopen, fsconfig, fsmount, move_mount, open_tree.  Prints what
 * it sees; the test compares it with Linux.
 *
 * Usage: mount_api DIR.  Run as root; natively in a mount namespace of its own
 * (unshare -m --propagation private): it mounts things.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "check.h"

#ifndef FSCONFIG_SET_FLAG
#define FSCONFIG_SET_FLAG 0
#define FSCONFIG_SET_STRING 1
#define FSCONFIG_CMD_CREATE 6
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 4
#endif
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#define ATTR_RDONLY 1
#define ATTR_NODEV 4
#define ATTR_NOEXEC 8

static const char *err(long r)
{
    static char b[64];
    if (r >= 0) {
        snprintf(b, sizeof b, "ok");
        return b;
    }
    return strerrorname_np(errno);
}

static int fsopen_(const char *t, unsigned f) { return syscall(SYS_fsopen, t, f); }
static int fsconfig_(int fd, unsigned c, const char *k, const void *v, int a)
{
    return syscall(SYS_fsconfig, fd, c, k, v, a);
}
static int fsmount_(int fd, unsigned f, unsigned a) { return syscall(SYS_fsmount, fd, f, a); }
static int move_mount_(int fd, const char *p, int tfd, const char *tp, unsigned f)
{
    return syscall(SYS_move_mount, fd, p, tfd, tp, f);
}
static int open_tree_(int fd, const char *p, unsigned f) { return syscall(SYS_open_tree, fd, p, f); }

static int new_tmpfs(const char *src)
{
    int fs = fsopen_("tmpfs", 0);
    CHECK(fs >= 0);
    CHECK(fsconfig_(fs, FSCONFIG_SET_STRING, "source", src, 0) == 0);
    CHECK(fsconfig_(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) == 0);
    int m = fsmount_(fs, 0, 0);
    CHECK(m >= 0);
    close(fs);
    return m;
}

int main(int argc, char **argv)
{
    char a[1024], b[1024], p[1200];
    CHECK(argc == 2);
    setvbuf(stdout, NULL, _IONBF, 0);
    snprintf(a, sizeof a, "%s/a", argv[1]);
    snprintf(b, sizeof b, "%s/b", argv[1]);
    CHECK(mkdir(a, 0755) == 0 && mkdir(b, 0755) == 0);

    printf("fsopen bad flags: %s\n", err(fsopen_("tmpfs", 2)));
    printf("fsopen unknown fs: %s\n", err(fsopen_("nosuchfs", 0)));
    int fs = fsopen_("tmpfs", 0);
    printf("fsopen: %s\n", err(fs));
    printf("fsmount before create: %s\n", err(fsmount_(fs, 0, 0)));
    printf("source: %s\n", err(fsconfig_(fs, FSCONFIG_SET_STRING, "source", "src", 0)));
    printf("source again: %s\n", err(fsconfig_(fs, FSCONFIG_SET_STRING, "source", "x", 0)));
    printf("nr_inodes: %s\n", err(fsconfig_(fs, FSCONFIG_SET_STRING, "nr_inodes", "1234", 0)));
    printf("ro: %s\n", err(fsconfig_(fs, FSCONFIG_SET_FLAG, "ro", NULL, 0)));
    printf("create: %s\n", err(fsconfig_(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0)));
    printf("create again: %s\n", err(fsconfig_(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0)));
    printf("fsmount bad attrs: %s\n", err(fsmount_(fs, 0, 1u << 30)));
    int m = fsmount_(fs, 0, ATTR_NODEV | ATTR_NOEXEC);
    printf("fsmount: %s\n", err(m));
    printf("fsmount again: %s\n", err(fsmount_(fs, 0, 0)));
    struct statfs st;
    CHECK(fstatfs(m, &st) == 0);
    printf("files %ld rdonly %d nodev %d noexec %d\n", (long)st.f_files,
           !!(st.f_flags & ST_RDONLY), !!(st.f_flags & ST_NODEV), !!(st.f_flags & ST_NOEXEC));
    close(m);
    close(fs);

    /* A detached tmpfs, filled, then attached. */
    m = new_tmpfs("one");
    printf("mkdirat in detached: %s\n", err(mkdirat(m, "sub", 0755)));
    int f = openat(m, "file", O_CREAT | O_RDWR, 0644);
    printf("create in detached: %s\n", err(f));
    close(f);
    printf("move without empty path: %s\n", err(move_mount_(m, "", AT_FDCWD, a, 0)));
    printf("attach: %s\n", err(move_mount_(m, "", AT_FDCWD, a, MOVE_MOUNT_F_EMPTY_PATH)));
    snprintf(p, sizeof p, "%s/file", a);
    printf("file visible: %s\n", err(access(p, F_OK)));
    int m2 = new_tmpfs("two");
    snprintf(p, sizeof p, "%s/sub", a);
    printf("attach below: %s\n", err(move_mount_(m2, "", AT_FDCWD, p, MOVE_MOUNT_F_EMPTY_PATH)));
    snprintf(p, sizeof p, "%s/sub/marker", a);
    f = open(p, O_CREAT | O_RDWR, 0644);
    CHECK(f >= 0);
    close(f);
    snprintf(p, sizeof p, "%s/sub", a);
    printf("move into itself: %s\n", err(move_mount_(AT_FDCWD, a, AT_FDCWD, p, 0)));

    /* statx: STATX_MNT_ID is mountinfo's id; reserved bits and both sync flags fail. */
    struct statx sx;
    CHECK(statx(AT_FDCWD, a, 0, STATX_BASIC_STATS | STATX_MNT_ID, &sx) == 0);
    long mi_id = -1;
    FILE *mi = fopen("/proc/self/mountinfo", "r");
    char line[4096];
    while (mi && fgets(line, sizeof line, mi)) {
        long id;
        char mp[2048];
        if (sscanf(line, "%ld %*d %*s %*s %2047s", &id, mp) == 2 && !strcmp(mp, a))
            mi_id = id;
    }
    fclose(mi);
    printf("statx mnt_id: %d, is mountinfo's: %d\n", !!(sx.stx_mask & STATX_MNT_ID),
           (long)sx.stx_mnt_id == mi_id);
    printf("statx reserved mask: %s\n", err(statx(AT_FDCWD, a, 0, 0x80000000u, &sx)));
    printf("statx both sync flags: %s\n",
           err(statx(AT_FDCWD, a, AT_STATX_FORCE_SYNC | AT_STATX_DONT_SYNC, 0, &sx)));

    /* mount_setattr: flags and propagation; fspick: the filesystem's options. */
    struct { unsigned long long set, clr, prop, userns; } ma = {ATTR_RDONLY | ATTR_NODEV, 0, 0, 0};
    printf("mount_setattr short: %s\n", err(syscall(SYS_mount_setattr, AT_FDCWD, a, 0, &ma, 16)));
    printf("mount_setattr ro,nodev: %s\n", err(syscall(SYS_mount_setattr, AT_FDCWD, a, 0, &ma,
                                                          sizeof ma)));
    struct statfs sfa;
    CHECK(statfs(a, &sfa) == 0);
    printf("  rdonly %d nodev %d\n", !!(sfa.f_flags & ST_RDONLY), !!(sfa.f_flags & ST_NODEV));
    ma.set = 0;
    ma.clr = ATTR_RDONLY;
    ma.prop = MS_SHARED;
    printf("mount_setattr -ro shared: %s\n", err(syscall(SYS_mount_setattr, AT_FDCWD, a, 0,
                                                        &ma, sizeof ma)));
    CHECK(statfs(a, &sfa) == 0);
    printf("  rdonly %d nodev %d\n", !!(sfa.f_flags & ST_RDONLY), !!(sfa.f_flags & ST_NODEV));
    snprintf(p, sizeof p, "%s/sub", a);
    printf("mount_setattr not a mount root: %s\n",
           err(syscall(SYS_mount_setattr, AT_FDCWD, argv[1], 0, &ma, sizeof ma)));
    int pk = syscall(SYS_fspick, AT_FDCWD, a, 0);
    printf("fspick: %s\n", err(pk));
    printf("ro: %s\n", err(fsconfig_(pk, FSCONFIG_SET_FLAG, "ro", NULL, 0)));
    printf("reconfigure: %s\n", err(fsconfig_(pk, 7, NULL, NULL, 0)));
    CHECK(statfs(a, &sfa) == 0);
    printf("  rdonly %d\n", !!(sfa.f_flags & ST_RDONLY));
    CHECK(fsconfig_(pk, FSCONFIG_SET_FLAG, "rw", NULL, 0) == 0);
    CHECK(fsconfig_(pk, 7, NULL, NULL, 0) == 0);
    CHECK(statfs(a, &sfa) == 0);
    printf("  rdonly after rw %d\n", !!(sfa.f_flags & ST_RDONLY));
    close(pk);
    ma.prop = MS_PRIVATE;
    ma.clr = 0;
    CHECK(syscall(SYS_mount_setattr, AT_FDCWD, a, 0, &ma, sizeof ma) == 0);

    /* open_tree: plain, a copy, a recursive copy. */
    printf("recursive without clone: %s\n", err(open_tree_(AT_FDCWD, a, AT_RECURSIVE)));
    int t0 = open_tree_(AT_FDCWD, a, 0);
    struct stat sb;
    printf("open_tree: %s, dir %d\n", err(t0), fstat(t0, &sb) == 0 && S_ISDIR(sb.st_mode));
    int t1 = open_tree_(AT_FDCWD, a, OPEN_TREE_CLONE);
    printf("clone: %s sub %s sub/marker %s\n", err(t1), err(faccessat(t1, "sub", F_OK, 0)),
           err(faccessat(t1, "sub/marker", F_OK, 0)));
    int t2 = open_tree_(AT_FDCWD, a, OPEN_TREE_CLONE | AT_RECURSIVE);
    printf("recursive clone: %s sub/marker %s\n", err(t2),
           err(faccessat(t2, "sub/marker", F_OK, 0)));
    printf("attach the copy: %s\n", err(move_mount_(t2, "", AT_FDCWD, b,
                                                     MOVE_MOUNT_F_EMPTY_PATH)));
    snprintf(p, sizeof p, "%s/sub/marker", b);
    printf("copy's marker: %s\n", err(access(p, F_OK)));
    snprintf(p, sizeof p, "%s/sub", b);
    printf("umount copy: %s %s\n", err(umount(p)), err(umount(b)));
    snprintf(p, sizeof p, "%s/sub", a);
    printf("umount: %s %s\n", err(umount(p)), err(umount(a)));
    ok();
    return 0;
}
