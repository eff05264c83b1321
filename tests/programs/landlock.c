/* Landlock (ABI 1-5): ruleset argument checks, path-beneath rules enforced on
 * open (read, write, directories), creation, removal, rename between
 * directories (REFER: EXDEV), truncate, execve; layers only narrow; a fork
 * inherits the domain; files opened before keep working; device ioctls
 * (IOCTL_DEV); TCP bind and connect by port (LANDLOCK_RULE_NET_PORT). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/landlock.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include "check.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <termios.h>

/* ABI 3-5 names that older headers lack. */
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
#define PV_ACCESS_FS_IOCTL_DEV (1ULL << 15)
#define PV_ACCESS_NET_BIND_TCP (1ULL << 0)
#define PV_ACCESS_NET_CONNECT_TCP (1ULL << 1)
#define PV_RULE_NET_PORT 2
struct pv_ruleset_attr { uint64_t fs, net, scoped; };
struct pv_net_port_attr { uint64_t allowed_access, port; };

static void enforce(int rs);

static struct sockaddr_in loopback(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sa;
}

static void net_child(int listen_port)
{
    struct pv_ruleset_attr attr = {.net = PV_ACCESS_NET_BIND_TCP | PV_ACCESS_NET_CONNECT_TCP};
    int rs = syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0);
    CHECK(rs >= 0);
    struct pv_net_port_attr np = {PV_ACCESS_NET_BIND_TCP, 0};
    CHECK(syscall(SYS_landlock_add_rule, rs, PV_RULE_NET_PORT, &np, 0) == 0);
    np.allowed_access = PV_ACCESS_NET_CONNECT_TCP;
    np.port = listen_port;
    CHECK(syscall(SYS_landlock_add_rule, rs, PV_RULE_NET_PORT, &np, 0) == 0);
    np.port = 70000;
    CHECK_ERR(syscall(SYS_landlock_add_rule, rs, PV_RULE_NET_PORT, &np, 0), EINVAL);
    enforce(rs);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = loopback(1);
    CHECK_ERR(bind(s, (struct sockaddr *)&sa, sizeof sa), EACCES);
    sa = loopback(0);
    CHECK(bind(s, (struct sockaddr *)&sa, sizeof sa) == 0);      /* port 0 is allowed */
    int c = socket(AF_INET, SOCK_STREAM, 0);
    sa = loopback(1);
    CHECK_ERR(connect(c, (struct sockaddr *)&sa, sizeof sa), EACCES);
    sa = loopback(listen_port);
    CHECK(connect(c, (struct sockaddr *)&sa, sizeof sa) == 0);
    int u = socket(AF_INET, SOCK_DGRAM, 0);                       /* UDP: not handled */
    sa = loopback(0);
    CHECK(bind(u, (struct sockaddr *)&sa, sizeof sa) == 0);
    _exit(0);
}

static void ioctl_child(void)
{
    struct pv_ruleset_attr attr = {.fs = PV_ACCESS_FS_IOCTL_DEV};
    int rs = syscall(SYS_landlock_create_ruleset, &attr, sizeof attr.fs, 0);
    CHECK(rs >= 0);
    int before = open("/dev/null", O_RDONLY);
    enforce(rs);
    int fd = open("/dev/null", O_RDONLY);
    CHECK(fd >= 0);
    struct termios tio;
    CHECK_ERR(ioctl(fd, TCGETS, &tio), EACCES);
    CHECK(ioctl(fd, FIOCLEX) == 0);                               /* generic: allowed */
    CHECK_ERR(ioctl(before, TCGETS, &tio), ENOTTY);               /* opened before */
    _exit(0);
}

static int create_ruleset(uint64_t fs)
{
    struct landlock_ruleset_attr attr = {.handled_access_fs = fs};
    return syscall(SYS_landlock_create_ruleset, &attr, sizeof attr.handled_access_fs, 0);
}

static int add_rule(int rs, const char *path, uint64_t allowed)
{
    int fd = open(path, O_PATH | O_CLOEXEC);
    CHECK(fd >= 0);
    struct landlock_path_beneath_attr pb = {.allowed_access = allowed, .parent_fd = fd};
    int r = syscall(SYS_landlock_add_rule, rs, LANDLOCK_RULE_PATH_BENEATH, &pb, 0);
    int e = errno;
    close(fd);
    errno = e;
    return r;
}

static void enforce(int rs)
{
    CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0);
    CHECK(syscall(SYS_landlock_restrict_self, rs, 0) == 0);
    close(rs);
}

#define ALL (LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE | \
             LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR | \
             LANDLOCK_ACCESS_FS_REMOVE_FILE | LANDLOCK_ACCESS_FS_REMOVE_DIR | \
             LANDLOCK_ACCESS_FS_MAKE_REG | LANDLOCK_ACCESS_FS_MAKE_DIR | \
             LANDLOCK_ACCESS_FS_MAKE_SYM | LANDLOCK_ACCESS_FS_REFER | \
             LANDLOCK_ACCESS_FS_TRUNCATE)

static char a[256], b[256];

static void path(char *out, const char *dir, const char *name)
{
    snprintf(out, 256, "%s/%s", dir, name);
}

static void child(int before)
{
    char p[256], q[256];
    int rs = create_ruleset(ALL);
    CHECK(rs >= 0);
    CHECK(add_rule(rs, a, ALL) == 0);
    /* b: files may be made and removed there, nothing else (no REFER) */
    CHECK(add_rule(rs, b, LANDLOCK_ACCESS_FS_MAKE_REG | LANDLOCK_ACCESS_FS_REMOVE_FILE) == 0);
    enforce(rs);

    path(p, a, "f");
    int fd = open(p, O_RDWR);
    CHECK(fd >= 0);
    CHECK(write(fd, "x", 1) == 1);
    CHECK(ftruncate(fd, 0) == 0);
    close(fd);
    path(p, b, "f");
    CHECK_ERR(open(p, O_RDONLY), EACCES);
    CHECK_ERR(open(p, O_WRONLY), EACCES);
    CHECK_ERR(open(b, O_RDONLY | O_DIRECTORY), EACCES);
    CHECK(open(b, O_PATH) >= 0);                          /* no right needed */
    CHECK(open(a, O_RDONLY | O_DIRECTORY) >= 0);
    CHECK_ERR(truncate(p, 0), EACCES);
    path(q, b, "new");
    CHECK_ERR(mkdir(q, 0755), EACCES);
    CHECK_ERR(symlink("x", q), EACCES);
    path(q, a, "new");
    CHECK(mkdir(q, 0755) == 0);
    CHECK(rmdir(q) == 0);
    CHECK(close(open(q, O_CREAT | O_WRONLY, 0644)) == 0);
    path(p, a, "renamed");
    CHECK(rename(q, p) == 0);                             /* within the tree */
    path(q, b, "moved");
    CHECK_ERR(rename(p, q), EXDEV);                       /* out of it: REFER */
    CHECK_ERR(link(p, q), EXDEV);
    CHECK(unlink(p) == 0);
    /* a file opened before the restriction keeps working */
    char c;
    CHECK(pread(before, &c, 1, 0) == 1 && c == 'b');
    /* execve of a program outside the tree */
    char *argv[] = {"true", NULL};
    CHECK_ERR(execve("/bin/true", argv, NULL), EACCES);

    /* a fork inherits the domain; a second layer only narrows */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        char r[256];
        path(r, a, "f");
        int rs2 = create_ruleset(LANDLOCK_ACCESS_FS_READ_FILE);
        if (rs2 < 0)
            _exit(3);
        if (open(r, O_RDONLY) < 0)
            _exit(4);
        enforce(rs2);
        _exit(open(r, O_RDONLY) < 0 && errno == EACCES ? 0 : 5);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    _exit(0);
}

int main(void)
{
    int abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
    CHECK(abi >= 5);
    struct landlock_ruleset_attr attr = {.handled_access_fs = LANDLOCK_ACCESS_FS_READ_FILE};
    CHECK_ERR(syscall(SYS_landlock_create_ruleset, &attr, sizeof attr.handled_access_fs, 0xffff),
              EINVAL);
    attr.handled_access_fs = 1ULL << 63;
    CHECK_ERR(syscall(SYS_landlock_create_ruleset, &attr, sizeof attr.handled_access_fs, 0),
              EINVAL);
    CHECK_ERR(syscall(SYS_landlock_create_ruleset, &attr, 4, 0), EINVAL);
    CHECK_ERR(syscall(SYS_landlock_restrict_self, -1, 0), EBADF);

    char root[] = "/tmp/landlockXXXXXX";
    CHECK(mkdtemp(root) != NULL);
    path(a, root, "a");
    path(b, root, "b");
    CHECK(mkdir(a, 0755) == 0 && mkdir(b, 0755) == 0);
    char p[256];
    path(p, a, "f");
    CHECK(close(open(p, O_CREAT | O_WRONLY, 0644)) == 0);
    path(p, b, "f");
    int before = open(p, O_CREAT | O_RDWR, 0644);
    CHECK(before >= 0 && write(before, "b", 1) == 1);

    int rs = create_ruleset(LANDLOCK_ACCESS_FS_READ_FILE);
    CHECK(rs >= 0);
    CHECK(fcntl(rs, F_GETFD) == FD_CLOEXEC);
    CHECK_ERR(add_rule(rs, a, LANDLOCK_ACCESS_FS_WRITE_FILE), EINVAL);   /* not handled */
    CHECK_ERR(add_rule(rs, a, 0), ENOMSG);
    struct landlock_path_beneath_attr pb = {.allowed_access = 4, .parent_fd = -1};
    CHECK_ERR(syscall(SYS_landlock_add_rule, rs, LANDLOCK_RULE_PATH_BENEATH, &pb, 0), EBADF);
    CHECK_ERR(syscall(SYS_landlock_add_rule, rs, 0xffff, &pb, 0), EINVAL);
    CHECK_ERR(syscall(SYS_landlock_add_rule, before, LANDLOCK_RULE_PATH_BENEATH, &pb, 0),
              EBADFD);
    close(rs);

    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0)
        child(before);
    int st;
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* the parent is not restricted */
    CHECK(close(open(p, O_RDONLY)) == 0);

    /* TCP ports */
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = loopback(0);
    socklen_t sl = sizeof sa;
    CHECK(bind(l, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(l, 4) == 0);
    CHECK(getsockname(l, (struct sockaddr *)&sa, &sl) == 0);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0)
        net_child(ntohs(sa.sin_port));
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    close(l);

    /* device ioctls */
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0)
        ioctl_child();
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);

    unlink(p);
    path(p, a, "f");
    unlink(p);
    rmdir(a);
    rmdir(b);
    rmdir(root);
    ok();
    return 0;
}
