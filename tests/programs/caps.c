/* Capabilities in permission checks (issue #10).  Each case runs in a child that
 * drops one capability with capset (or PR_CAPBSET_DROP + exec, or a uid change)
 * and checks that the operation it guards is refused as Linux refuses it, while
 * the same operation with the capability succeeds.  Needs root (here and inside);
 * as another user it only checks what an unprivileged process sees. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include "check.h"

static char dir[64];

static void get_caps(uint64_t *eff, uint64_t *prm, uint64_t *inh)
{
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    CHECK(syscall(SYS_capget, &h, d) == 0);
    *eff = d[0].effective | (uint64_t)d[1].effective << 32;
    *prm = d[0].permitted | (uint64_t)d[1].permitted << 32;
    *inh = d[0].inheritable | (uint64_t)d[1].inheritable << 32;
}

static int set_caps(uint64_t eff, uint64_t prm, uint64_t inh)
{
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2] = {
        {(uint32_t)eff, (uint32_t)prm, (uint32_t)inh},
        {(uint32_t)(eff >> 32), (uint32_t)(prm >> 32), (uint32_t)(inh >> 32)},
    };
    return syscall(SYS_capset, &h, d);
}

/* Drops `cap` from the effective and permitted sets. */
static void drop(int cap)
{
    uint64_t eff, prm, inh;
    get_caps(&eff, &prm, &inh);
    CHECK(set_caps(eff & ~(1ULL << cap), prm & ~(1ULL << cap), inh) == 0);
}

static int in_child(void (*fn)(void))
{
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        fn();
        _exit(0);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void path(char *out, const char *name)
{
    snprintf(out, 128, "%s/%s", dir, name);
}

static void dac(void)
{
    char p[128], d[128];
    path(p, "secret");
    path(d, "closed");
    CHECK(open(p, O_RDONLY) >= 0);                     /* 0600, someone else's: root may */
    drop(CAP_DAC_OVERRIDE);
    CHECK(open(p, O_RDONLY) >= 0);                     /* reading: CAP_DAC_READ_SEARCH */
    CHECK_ERR(open(p, O_WRONLY), EACCES);
    char f[160];
    snprintf(f, sizeof f, "%s/x", d);
    CHECK(access(f, F_OK) == -1 && errno == ENOENT);   /* searching: DAC_READ_SEARCH */
    CHECK_ERR(open(f, O_CREAT | O_WRONLY, 0600), EACCES);
    drop(CAP_DAC_READ_SEARCH);
    CHECK_ERR(open(p, O_RDONLY), EACCES);
    CHECK_ERR(access(f, F_OK), EACCES);
}

static void owner(void)
{
    char p[128];
    path(p, "secret");
    CHECK(chmod(p, 0640) == 0);
    CHECK(chown(p, 1234, 1234) == 0);
    drop(CAP_FOWNER);
    CHECK_ERR(chmod(p, 0600), EPERM);                  /* not the owner */
    CHECK_ERR(utimensat(AT_FDCWD, p, (struct timespec[2]){{0, 0}, {0, 0}}, 0), EPERM);
    drop(CAP_CHOWN);
    CHECK_ERR(chown(p, 0, -1), EPERM);
    CHECK_ERR(chown(p, -1, 0), EPERM);
    CHECK(chown(p, -1, -1) == 0);
}

static void fsetid(void)
{
    char p[128];
    path(p, "mine");
    struct stat st;
    CHECK(chmod(p, 02755) == 0 && stat(p, &st) == 0 && (st.st_mode & 07777) == 02755);
    drop(CAP_FSETID);
    /* The file's group (1234) is not ours: the set-group-ID bit is dropped, silently. */
    CHECK(chmod(p, 02755) == 0 && stat(p, &st) == 0 && (st.st_mode & 07777) == 0755);
}

static pid_t victim;

static void kill_cap(void)
{
    CHECK(kill(victim, 0) == 0);
    drop(CAP_KILL);
    CHECK_ERR(kill(victim, 0), EPERM);
    CHECK_ERR(kill(victim, SIGTERM), EPERM);
    CHECK(kill(getpid(), 0) == 0);
}

static void setuid_cap(void)
{
    drop(CAP_SETGID);
    CHECK_ERR(setgid(4321), EPERM);
    CHECK_ERR(setgroups(0, NULL), EPERM);
    drop(CAP_SETUID);
    CHECK_ERR(setuid(4321), EPERM);
    CHECK_ERR(setresuid(-1, 4321, -1), EPERM);
    CHECK(setresuid(-1, 0, -1) == 0);                  /* among its own ids */
}

static void nice_cap(void)
{
    CHECK(setpriority(PRIO_PROCESS, 0, -5) == 0);
    CHECK(getpriority(PRIO_PROCESS, 0) == -5);
    drop(CAP_SYS_NICE);
    CHECK_ERR(setpriority(PRIO_PROCESS, 0, -10), EACCES);
    CHECK(setpriority(PRIO_PROCESS, 0, 5) == 0 && getpriority(PRIO_PROCESS, 0) == 5);
    CHECK_ERR(setpriority(PRIO_PROCESS, 0, 4), EACCES); /* RLIMIT_NICE is 0 */
    CHECK_ERR(setpriority(PRIO_PROCESS, victim, 5), EPERM);
}

static int have(int cap)
{
    uint64_t eff, prm, inh;
    get_caps(&eff, &prm, &inh);
    return (eff >> cap) & 1;
}

static void rlimit_cap(void)
{
    struct rlimit rl = {1000, 2000};
    CHECK(setrlimit(RLIMIT_FSIZE, &rl) == 0);
    rl.rlim_max = 3000;
    if (have(CAP_SYS_RESOURCE))       /* some hosts' root lacks it; the sandbox's has it */
        CHECK(setrlimit(RLIMIT_FSIZE, &rl) == 0);      /* raising: CAP_SYS_RESOURCE */
    drop(CAP_SYS_RESOURCE);
    rl.rlim_max = 1500;
    CHECK(setrlimit(RLIMIT_FSIZE, &rl) == 0);          /* lowering: anyone */
    rl.rlim_max = 2500;
    CHECK_ERR(setrlimit(RLIMIT_FSIZE, &rl), EPERM);
}

static void chroot_mknod_cap(void)
{
    char p[128];
    path(p, "node");
    drop(CAP_SYS_CHROOT);
    CHECK_ERR(chroot(dir), EPERM);
    drop(CAP_MKNOD);
    CHECK_ERR(mknod(p, S_IFCHR | 0600, makedev(1, 3)), EPERM);
    CHECK(mknod(p, S_IFIFO | 0600, 0) == 0);           /* FIFOs need nothing */
    CHECK(unlink(p) == 0);
}

static void bind_cap(void)
{
    FILE *f = fopen("/proc/sys/net/ipv4/ip_unprivileged_port_start", "r");
    int start = 1024;
    if (f) {
        CHECK(fscanf(f, "%d", &start) == 1);
        fclose(f);
    }
    if (start <= 80)
        return;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(80),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int s = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(s >= 0);
    drop(CAP_NET_BIND_SERVICE);
    CHECK_ERR(bind(s, (struct sockaddr *)&a, sizeof a), EACCES);
    a.sin_port = 0;
    CHECK(bind(s, (struct sockaddr *)&a, sizeof a) == 0);
    close(s);
}

static void capset_rules(void)
{
    uint64_t eff, prm, inh;
    get_caps(&eff, &prm, &inh);
    uint64_t bit = 1ULL << CAP_SYS_ADMIN;
    CHECK(set_caps(eff & ~bit, prm, inh) == 0);          /* effective only: may return */
    CHECK(set_caps(eff, prm, inh) == 0);
    CHECK(set_caps(eff & ~bit, prm & ~bit, inh) == 0);
    CHECK_ERR(set_caps(eff, prm, inh), EPERM);           /* permitted never grows */
    CHECK_ERR(set_caps(eff, prm & ~bit, inh), EPERM);    /* effective within permitted */
    CHECK_ERR(sethostname("x", 1), EPERM);               /* CAP_SYS_ADMIN */
}

/* Becoming another user drops every capability; keepcaps keeps the permitted set. */
static void uid_change(void)
{
    uint64_t eff, prm, inh;
    CHECK(prctl(PR_GET_KEEPCAPS) == 0 && prctl(PR_SET_KEEPCAPS, 1) == 0);
    CHECK(prctl(PR_GET_KEEPCAPS) == 1);
    CHECK(setresuid(4321, 4321, 4321) == 0);
    get_caps(&eff, &prm, &inh);
    CHECK(eff == 0 && prm != 0);
    CHECK_ERR(open("/proc/1/environ", O_RDONLY | O_DIRECTORY), ENOTDIR);
    CHECK(set_caps(1ULL << CAP_KILL, prm, 0) == 0);      /* raise one from permitted */
    CHECK(kill(victim, 0) == 0);
    CHECK_ERR(setuid(0), EPERM);                         /* no CAP_SETUID in effective */
}

static void uid_change_plain(void)
{
    uint64_t eff, prm, inh;
    CHECK(setresuid(-1, 4321, -1) == 0);                 /* euid only: permitted stays */
    get_caps(&eff, &prm, &inh);
    CHECK(eff == 0 && prm != 0);
    CHECK_ERR(kill(victim, 0), EPERM);
    CHECK(seteuid(0) == 0);                              /* back: effective = permitted */
    get_caps(&eff, &prm, &inh);
    CHECK(eff == prm && kill(victim, 0) == 0);
    CHECK(setuid(4321) == 0);                            /* every root id gone */
    get_caps(&eff, &prm, &inh);
    CHECK(eff == 0 && prm == 0);
    CHECK_ERR(kill(victim, 0), EPERM);
}

/* The bounding set limits what root gets at exec. */
static void bounding(void)
{
    CHECK(prctl(PR_CAPBSET_READ, CAP_NET_RAW) == 1);
    CHECK_ERR(prctl(PR_CAPBSET_READ, 64), EINVAL);
    CHECK(prctl(PR_CAPBSET_DROP, CAP_NET_RAW) == 0);
    CHECK(prctl(PR_CAPBSET_READ, CAP_NET_RAW) == 0);
    uint64_t eff, prm, inh;
    get_caps(&eff, &prm, &inh);
    CHECK(eff & (1ULL << CAP_NET_RAW));                  /* not until exec */
    execl("/proc/self/exe", "caps", "after-exec", (char *)NULL);
    _exit(99);
}

/* The ambient set carries a capability across exec into a non-root program. */
static void ambient(void)
{
    uint64_t eff, prm, inh, kill_bit = 1ULL << CAP_KILL;
    CHECK_ERR(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_KILL, 0, 0), EPERM);
    get_caps(&eff, &prm, &inh);
    CHECK(set_caps(eff, prm, inh | kill_bit) == 0);
    CHECK(prctl(PR_SET_KEEPCAPS, 1) == 0);
    CHECK(setresuid(4321, 4321, 4321) == 0);
    CHECK(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, CAP_KILL, 0, 0) == 0);
    CHECK(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_KILL, 0, 0) == 0);
    CHECK(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, CAP_KILL, 0, 0) == 1);
    CHECK_ERR(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, 99, 0, 0), EINVAL);
    CHECK_ERR(prctl(PR_CAP_AMBIENT, 9, CAP_KILL, 0, 0), EINVAL);
    char v[16];
    snprintf(v, sizeof v, "%d", victim);
    execl("/proc/self/exe", "caps", "ambient-exec", v, (char *)NULL);
    _exit(99);
}

static void after_ambient_exec(pid_t v)
{
    uint64_t eff, prm, inh, kill_bit = 1ULL << CAP_KILL;
    get_caps(&eff, &prm, &inh);
    CHECK(eff == kill_bit && prm == kill_bit && (inh & kill_bit));
    CHECK(prctl(PR_GET_KEEPCAPS) == 0);                  /* cleared by exec */
    CHECK(kill(v, 0) == 0);
    CHECK(set_caps(0, prm, 0) == 0);                     /* dropping inheritable: */
    CHECK(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, CAP_KILL, 0, 0) == 0);
}

static void after_exec(void)
{
    uint64_t eff, prm, inh;
    get_caps(&eff, &prm, &inh);
    CHECK(!(eff & (1ULL << CAP_NET_RAW)) && !(prm & (1ULL << CAP_NET_RAW)));
    CHECK(eff & (1ULL << CAP_NET_ADMIN));
    CHECK(prctl(PR_CAPBSET_READ, CAP_NET_RAW) == 0);
    drop(CAP_SETPCAP);
    CHECK_ERR(prctl(PR_CAPBSET_DROP, CAP_NET_ADMIN), EPERM);
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "after-exec") == 0) {
        after_exec();
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "ambient-exec") == 0) {
        after_ambient_exec(atoi(argv[2]));
        return 0;
    }
    if (getuid() != 0) {
        uint64_t eff, prm, inh;
        get_caps(&eff, &prm, &inh);
        CHECK(eff == 0 && prm == 0);
        CHECK_ERR(chroot("/"), EPERM);
        ok();
        return 0;
    }
    snprintf(dir, sizeof dir, "/tmp/caps-%d", getpid());
    CHECK(mkdir(dir, 0755) == 0);
    char p[128];
    path(p, "secret");
    int fd = open(p, O_CREAT | O_WRONLY, 0600);
    CHECK(fd >= 0 && fchown(fd, 1234, 1234) == 0);
    close(fd);
    path(p, "closed");
    CHECK(mkdir(p, 0700) == 0 && chown(p, 1234, 1234) == 0);
    path(p, "mine");
    fd = open(p, O_CREAT | O_WRONLY, 0755);
    CHECK(fd >= 0 && fchown(fd, 0, 1234) == 0);
    close(fd);
    CHECK(setgroups(0, NULL) == 0);

    int ready[2];
    CHECK(pipe(ready) == 0);
    fflush(stdout);
    victim = fork();
    CHECK(victim >= 0);
    if (victim == 0) {
        CHECK(setresuid(5555, 5555, 5555) == 0);
        CHECK(write(ready[1], "r", 1) == 1);
        pause();
        _exit(0);
    }
    char c;
    CHECK(read(ready[0], &c, 1) == 1);

    void (*cases[])(void) = {dac, owner, fsetid, kill_cap, setuid_cap, nice_cap, rlimit_cap,
                             chroot_mknod_cap, bind_cap, capset_rules, uid_change,
                             uid_change_plain, bounding, ambient};
    const char *names[] = {"dac", "owner", "fsetid", "kill", "setuid", "nice", "rlimit",
                           "chroot-mknod", "bind", "capset", "uid-keepcaps", "uid", "bounding",
                           "ambient"};
    int failed = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = in_child(cases[i]);
        printf("%s %s\n", names[i], rc == 0 ? "ok" : "FAILED");
        failed |= rc != 0;
    }
    kill(victim, SIGKILL);
    waitpid(victim, NULL, 0);
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    if (failed)
        return 1;
    ok();
    return 0;
}
