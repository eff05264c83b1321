/* POSIX ACLs (system.posix_acl_access / _default) on tmpfs and on an overlay
 * mounted from inside: validation errors, mode <-> ACL sync, chmod, default ACL
 * inheritance, enforcement for other users, SGID clearing, copy-up of ACLs.
 * Prints what it sees; the test compares it with Linux.
 *
 * Usage: posix_acl DIR (an empty directory).  Run as root; natively in a mount
 * namespace of its own (unshare -m --propagation private): it mounts things.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "check.h"

#define A "system.posix_acl_access"
#define D "system.posix_acl_default"
#define UO 1
#define U 2
#define GO 4
#define G 8
#define M 0x10
#define O 0x20
#define UNDEF 0xffffffffu

struct ent { uint16_t tag, perm; uint32_t id; };

static size_t build(char *buf, const struct ent *e, int n)
{
    uint32_t v = 2;
    memcpy(buf, &v, 4);
    memcpy(buf + 4, e, n * sizeof *e);
    return 4 + n * sizeof *e;
}

static const char *err(long r)
{
    static char b[64];
    if (r >= 0) {
        snprintf(b, sizeof b, "%ld", r);
        return b;
    }
    return strerrorname_np(errno);
}

static void show_acl(const char *what, const char *path, const char *name)
{
    unsigned char buf[512];
    ssize_t n = getxattr(path, name, buf, sizeof buf);
    printf("%s:", what);
    if (n < 0) {
        printf(" %s\n", strerrorname_np(errno));
        return;
    }
    for (ssize_t off = 4; off + 8 <= n; off += 8) {
        struct ent e;
        memcpy(&e, buf + off, 8);
        printf(" %x:%o:%d", e.tag, e.perm, (int)e.id);
    }
    printf("\n");
}

static unsigned mode_of(const char *p)
{
    struct stat st;
    CHECK(stat(p, &st) == 0);
    return st.st_mode & 07777;
}

/* open(2) of `p` with `flags` as uid/gid 65534 in a child: its errno name or "ok". */
static void as_nobody(const char *what, const char *p, int flags, int gid_too)
{
    int fds[2];
    char res[64] = "";
    CHECK(pipe(fds) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        if (gid_too) {
            CHECK(setgroups(0, NULL) == 0);
            CHECK(setgid(65534) == 0);
        }
        CHECK(setuid(65534) == 0);
        int fd = open(p, flags);
        const char *r = fd >= 0 ? "ok" : strerrorname_np(errno);
        CHECK(write(fds[1], r, strlen(r)) > 0);
        _exit(0);
    }
    close(fds[1]);
    CHECK(read(fds[0], res, sizeof res - 1) > 0);
    close(fds[0]);
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && st == 0);
    printf("%s: %s\n", what, res);
}

static void suite(const char *dir, const char *label)
{
    char f[600], sub[600], child[700], cdir[700], sym[600];
    char buf[256];
    size_t n;
    printf("== %s\n", label);
    snprintf(f, sizeof f, "%s/file", dir);
    snprintf(sub, sizeof sub, "%s/sub", dir);
    snprintf(sym, sizeof sym, "%s/sym", dir);
    int fd = open(f, O_CREAT | O_RDWR, 0644);
    CHECK(fd >= 0);
    close(fd);
    CHECK(chmod(f, 0644) == 0);
    if (mkdir(sub, 0755) != 0)
        CHECK(errno == EEXIST);

    /* Malformed values. */
    struct ent good[] = {{UO, 6, UNDEF}, {U, 4, 0}, {GO, 4, UNDEF}, {M, 6, UNDEF},
                         {O, 4, UNDEF}};
    n = build(buf, good, 5);
    printf("short: %s\n", err(setxattr(f, A, buf, 1, 0)));
    printf("odd: %s\n", err(setxattr(f, A, buf, n - 1, 0)));
    uint32_t bad = 7;
    memcpy(buf, &bad, 4);
    printf("version: %s\n", err(setxattr(f, A, buf, n, 0)));
    struct ent nomask[] = {{UO, 6, UNDEF}, {U, 4, 0}, {GO, 4, UNDEF}, {O, 4, UNDEF}};
    n = build(buf, nomask, 4);
    printf("nomask: %s\n", err(setxattr(f, A, buf, n, 0)));
    struct ent order[] = {{GO, 4, UNDEF}, {UO, 6, UNDEF}, {O, 4, UNDEF}};
    n = build(buf, order, 3);
    printf("order: %s\n", err(setxattr(f, A, buf, n, 0)));
    struct ent perm[] = {{UO, 6, UNDEF}, {U, 10, 0}, {GO, 4, UNDEF}, {M, 6, UNDEF},
                         {O, 4, UNDEF}};
    n = build(buf, perm, 5);
    printf("perm: %s\n", err(setxattr(f, A, buf, n, 0)));
    printf("noacl: %s\n", err(getxattr(f, A, NULL, 0)));

    /* An extended ACL sets the mode; the ids of the base entries read back undefined. */
    struct ent ext[] = {{UO, 6, 5}, {U, 4, 0}, {GO, 4, 9}, {M, 7, UNDEF}, {O, 4, UNDEF}};
    n = build(buf, ext, 5);
    printf("set: %s", err(setxattr(f, A, buf, n, 0)));
    printf(" mode %o\n", mode_of(f));
    show_acl("get", f, A);
    printf("size: %s\n", err(getxattr(f, A, NULL, 0)));
    char list[256];
    ssize_t ln = listxattr(f, list, sizeof list);
    printf("list:");
    for (ssize_t i = 0; i < ln; i += strlen(list + i) + 1)
        printf(" %s", list + i);
    printf("\n");
    /* chmod rewrites USER_OBJ, MASK and OTHER. */
    CHECK(chmod(f, 0460) == 0);
    show_acl("chmod", f, A);
    printf("mode %o\n", mode_of(f));
    /* A minimal ACL folds into the mode and is not stored. */
    struct ent min[] = {{UO, 7, UNDEF}, {GO, 5, UNDEF}, {O, 4, UNDEF}};
    n = build(buf, min, 3);
    printf("minimal: %s", err(setxattr(f, A, buf, n, 0)));
    printf(" mode %o\n", mode_of(f));
    show_acl("after minimal", f, A);
    printf("remove none: %s\n", err(removexattr(f, A)));
    printf("default on file: %s\n", err(setxattr(f, D, buf, n, 0)));
    printf("remove default on file: %s\n", err(removexattr(f, D)));

    /* Enforcement for a user that is neither owner nor in the group. */
    CHECK(chmod(f, 0600) == 0);
    as_nobody("nobody 0600 read", f, O_RDONLY, 0);
    struct ent nob[] = {{UO, 6, UNDEF}, {U, 7, 65534}, {GO, 0, UNDEF}, {M, 4, UNDEF},
                        {O, 0, UNDEF}};
    n = build(buf, nob, 5);
    CHECK(setxattr(f, A, buf, n, 0) == 0);
    as_nobody("named user read", f, O_RDONLY, 0);
    as_nobody("named user write (mask)", f, O_WRONLY, 0);
    struct ent grp[] = {{UO, 6, UNDEF}, {GO, 0, UNDEF}, {G, 6, 65534}, {M, 6, UNDEF},
                        {O, 0, UNDEF}};
    n = build(buf, grp, 5);
    CHECK(setxattr(f, A, buf, n, 0) == 0);
    as_nobody("named group write", f, O_WRONLY, 1);
    as_nobody("not in the group", f, O_RDONLY, 0);

    /* SGID: cleared by setting an ACL when neither in the group nor CAP_FSETID... */
    CHECK(chown(f, 65534, 65534) == 0);
    CHECK(chmod(f, 02750) == 0);
    CHECK(setxattr(f, A, buf, n, 0) == 0);
    printf("sgid as root: %o\n", mode_of(f));

    /* Symlinks have no ACLs of their own. */
    unlink(sym);
    CHECK(symlink(f, sym) == 0);
    printf("lset on symlink: %s\n", err(lsetxattr(sym, A, buf, n, 0)));
    printf("lget on symlink: %s\n", err(lgetxattr(sym, A, NULL, 0)));
    printf("get through symlink: %s\n", err(getxattr(sym, A, NULL, 0)));

    /* Default ACL inheritance: no umask; files get an access ACL, dirs both. */
    struct ent dacl[] = {{UO, 7, UNDEF}, {U, 5, 0}, {GO, 5, UNDEF}, {M, 7, UNDEF},
                         {O, 5, UNDEF}};
    n = build(buf, dacl, 5);
    printf("set default: %s\n", err(setxattr(sub, D, buf, n, 0)));
    show_acl("default", sub, D);
    umask(077);
    snprintf(child, sizeof child, "%s/child", sub);
    fd = open(child, O_CREAT | O_RDWR, 0640);
    CHECK(fd >= 0);
    close(fd);
    printf("child mode %o\n", mode_of(child));
    show_acl("child access", child, A);
    show_acl("child default", child, D);
    snprintf(cdir, sizeof cdir, "%s/cdir", sub);
    CHECK(mkdir(cdir, 0751) == 0);
    printf("cdir mode %o\n", mode_of(cdir));
    show_acl("cdir access", cdir, A);
    show_acl("cdir default", cdir, D);
    umask(022);
    printf("empty value removes: %s\n", err(setxattr(sub, D, buf, 4, 0)));
    show_acl("default gone", sub, D);
}

int main(int argc, char **argv)
{
    char layers[600], lower[700], upper[700], work[700], merged[700], opts[2400];
    char p[800];
    CHECK(argc == 2);
    setvbuf(stdout, NULL, _IONBF, 0);
    umask(022);
    snprintf(layers, sizeof layers, "%s/layers", argv[1]);
    CHECK(mkdir(layers, 0755) == 0);
    CHECK(mount("tmpfs", layers, "tmpfs", 0, "mode=0755") == 0);
    char t[700];
    snprintf(t, sizeof t, "%s/t", layers);
    CHECK(mkdir(t, 0755) == 0);
    suite(t, "tmpfs");

    /* security.capability goes with a write or a change of owner. */
    struct { uint32_t magic, p0, i0, p1, i1; } vcap = {0x02000001, 1u << 7, 0, 0, 0};
    char capf[800];
    snprintf(capf, sizeof capf, "%s/capfile", t);
    int cfd = open(capf, O_CREAT | O_RDWR, 0755);
    CHECK(cfd >= 0);
    printf("set security.capability: %s\n",
           err(setxattr(capf, "security.capability", &vcap, sizeof vcap, 0)));
    printf("after a write: %s\n", err(write(cfd, "x", 1) == 1 ?
           getxattr(capf, "security.capability", NULL, 0) : -1));
    CHECK(setxattr(capf, "security.capability", &vcap, sizeof vcap, 0) == 0);
    printf("after chown: %s\n", err(chown(capf, 1, 1) == 0 ?
           getxattr(capf, "security.capability", NULL, 0) : -1));
    close(cfd);

    /* An overlay: a lower file with an ACL, copied up by a chmod; an upper file. */
    snprintf(lower, sizeof lower, "%s/lower", layers);
    snprintf(upper, sizeof upper, "%s/upper", layers);
    snprintf(work, sizeof work, "%s/work", layers);
    snprintf(merged, sizeof merged, "%s/merged", argv[1]);
    CHECK(mkdir(lower, 0755) == 0 && mkdir(upper, 0755) == 0 && mkdir(work, 0755) == 0);
    CHECK(mkdir(merged, 0755) == 0);
    snprintf(p, sizeof p, "%s/low", lower);
    int fd = open(p, O_CREAT | O_RDWR, 0644);
    CHECK(fd >= 0);
    close(fd);
    char buf[64];
    struct ent e[] = {{UO, 6, UNDEF}, {U, 4, 0}, {GO, 4, UNDEF}, {M, 4, UNDEF}, {O, 0, UNDEF}};
    size_t n = build(buf, e, 5);
    CHECK(setxattr(p, A, buf, n, 0) == 0);
    snprintf(opts, sizeof opts, "lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work);
    printf("mount overlay: %s\n", err(mount("overlay", merged, "overlay", 0, opts)));
    struct statfs sf;
    CHECK(statfs(merged, &sf) == 0);
    printf("overlay magic %lx\n", (long)sf.f_type);
    snprintf(p, sizeof p, "%s/low", merged);
    show_acl("lower acl through overlay", p, A);
    printf("remove absent below: %s\n", err(removexattr(p, D)));
    CHECK(chmod(p, 0640) == 0);
    show_acl("after copy-up chmod", p, A);
    snprintf(p, sizeof p, "%s/low", upper);
    show_acl("in upper", p, A);
    snprintf(p, sizeof p, "%s/low", lower);
    show_acl("lower unchanged", p, A);
    suite(merged, "overlay");
    CHECK(umount2(merged, MNT_DETACH) == 0);
    CHECK(umount2(layers, MNT_DETACH) == 0);
    ok();
    return 0;
}
