/* unshare(2), setns(2) and clone(2) with user, UTS, IPC and mount namespaces, and
 * /proc/PID/{uid_map,gid_map,setgroups} and /proc/PID/ns.  Prints what it sees; the test
 * compares it with Linux.
 *
 * Usage: namespaces DIR.  Run as root; natively in a mount namespace of its own
 * (unshare -m --propagation private): it mounts things.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <grp.h>
#include <mqueue.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ipc.h>
#include <sys/mount.h>
#include <sys/msg.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

static const char *err(long r)
{
    static char b[64];
    if (r >= 0) {
        snprintf(b, sizeof b, "%ld", r);
        return b;
    }
    return strerrorname_np(errno);
}

/* The path as printed: /proc/self/... or /proc/PID/... without the number. */
static const char *shown(const char *path)
{
    static char b[128];
    if (strncmp(path, "/proc/", 6) == 0 && path[6] >= '0' && path[6] <= '9') {
        snprintf(b, sizeof b, "/proc/PID%s", strchr(path + 6, '/'));
        return b;
    }
    return path;
}

static void put(const char *path, const char *s)
{
    int fd = open(path, O_WRONLY);
    if (fd < 0) {
        printf("open %s: %s\n", shown(path), strerrorname_np(errno));
        return;
    }
    long r = write(fd, s, strlen(s));
    printf("write %s '%s': %s\n", shown(path), s, err(r));
    close(fd);
}

static void show(const char *path)
{
    char buf[256] = "";
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    ssize_t n = read(fd, buf, sizeof buf - 1);
    CHECK(n >= 0);
    buf[n] = 0;
    close(fd);
    printf("%s: [%s]\n", shown(path), buf);
}

static ino_t ns_ino(const char *kind)
{
    char p[64];
    struct stat st;
    snprintf(p, sizeof p, "/proc/self/ns/%s", kind);
    CHECK(stat(p, &st) == 0);
    return st.st_ino;
}

static int wait_ok(pid_t pid)
{
    int st;
    CHECK(waitpid(pid, &st, 0) == pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int userns_child(void *arg)
{
    (void)arg;
    printf("clone child uid %d gid %d\n", (int)getuid(), (int)getgid());
    return 0;
}

int main(int argc, char **argv)
{
    CHECK(argc == 2);
    setvbuf(stdout, NULL, _IONBF, 0);
    printf("unshare(0): %s\n", err(unshare(0)));
    printf("unshare(bad): %s\n", err(unshare(0x100)));
    ino_t user0 = ns_ino("user"), uts0 = ns_ino("uts"), ipc0 = ns_ino("ipc");
    ino_t mnt0 = ns_ino("mnt"), net0 = ns_ino("net");
    int fd_user = open("/proc/self/ns/user", O_RDONLY);
    CHECK(fd_user >= 0);
    printf("setns own userns: %s\n", err(setns(fd_user, CLONE_NEWUSER)));
    printf("setns wrong type: %s\n", err(setns(fd_user, CLONE_NEWUTS)));

    mqd_t pq = mq_open("/ns_parent_q", O_CREAT | O_RDWR, 0600, NULL);
    CHECK(pq >= 0);
    char lkdir[1200];
    snprintf(lkdir, sizeof lkdir, "%s/lk", argv[1]);
    CHECK(mkdir(lkdir, 0755) == 0 && mount("none", lkdir, "tmpfs", 0, NULL) == 0);
    CHECK(mount("", lkdir, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC |
                MS_NODEV, NULL) == 0);
    /* A user namespace: unmapped ids, then maps written by the process itself. */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        CHECK(unshare(CLONE_NEWUSER) == 0);
        printf("new userns differs: %d\n", ns_ino("user") != user0);
        printf("unmapped uid %d gid %d\n", (int)getuid(), (int)getgid());
        show("/proc/self/uid_map");
        show("/proc/self/setgroups");
        printf("setgroups before gid_map: %s\n", err(setgroups(0, NULL)));
        put("/proc/self/uid_map", "0 1 1");            /* not our id: EPERM */
        put("/proc/self/uid_map", "0 0 1 2");          /* malformed */
        put("/proc/self/setgroups", "maybe");
        put("/proc/self/gid_map", "0 0 1");            /* setgroups still allowed */
        put("/proc/self/setgroups", "deny");
        put("/proc/self/setgroups", "allow");
        put("/proc/self/uid_map", "0 0 1\n");
        put("/proc/self/uid_map", "0 0 1");            /* written once only */
        put("/proc/self/gid_map", "0 0 1");
        show("/proc/self/uid_map");
        show("/proc/self/setgroups");
        printf("mapped uid %d gid %d\n", (int)getuid(), (int)getgid());
        printf("setuid(0): %s setuid(5): %s\n", err(setuid(0)), err(setuid(5)));
        printf("setgroups after deny: %s\n", err(setgroups(0, NULL)));
        printf("sethostname in userns only: %s\n", err(sethostname("x", 1)));
        /* UTS, IPC and mount namespaces owned by the new user namespace. */
        CHECK(unshare(CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNS) == 0);
        printf("uts differs %d ipc differs %d mnt differs %d\n", ns_ino("uts") != uts0,
               ns_ino("ipc") != ipc0, ns_ino("mnt") != mnt0);
        printf("sethostname: %s\n", err(sethostname("inner", 5)));
        struct utsname u;
        CHECK(uname(&u) == 0);
        printf("hostname %s\n", u.nodename);
        int q = msgget(0x1234, IPC_CREAT | 0600);
        printf("msgget in new ipc ns: %s\n", q >= 0 ? "ok" : strerrorname_np(errno));
        char mnt[1200];
        snprintf(mnt, sizeof mnt, "%s/m", argv[1]);
        printf("mount tmpfs: %s\n", err(mount("none", mnt, "tmpfs", 0, NULL)));
        /* POSIX message queues follow the IPC namespace; an mqueue mount shows them. */
        char mqd[1300];
        snprintf(mqd, sizeof mqd, "%s/mq", mnt);
        CHECK(mkdir(mqd, 0755) == 0);
        printf("mount mqueue: %s\n", err(mount("none", mqd, "mqueue", 0, NULL)));
        mqd_t cq = mq_open("/ns_child_q", O_CREAT | O_RDWR, 0600, NULL);
        printf("mq_open here: %s, the parent's: %s\n", err(cq),
               err(mq_open("/ns_parent_q", O_RDWR)));
        char ent[1400];
        snprintf(ent, sizeof ent, "%s/ns_child_q", mqd);
        struct stat mst;
        printf("queue file in the mount: %s\n", err(stat(ent, &mst)));
        /* The parent's mount, copied into this less privileged namespace: its flags
         * and its place are locked. */
        char lk[1200];
        snprintf(lk, sizeof lk, "%s/lk", argv[1]);
        printf("clear nodev of a locked mount: %s\n",
               err(mount("", lk, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID |
                         MS_NOEXEC, NULL)));
        printf("keep its flags: %s\n",
               err(mount("", lk, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID |
                         MS_NOEXEC | MS_NODEV, NULL)));
        printf("umount it: %s\n", err(umount2(lk, 0)));
        printf("setns back to the parent's userns: %s\n",
               err(setns(fd_user, CLONE_NEWUSER)));
        fflush(stdout);
        _exit(0);
    }
    printf("child: %d\n", wait_ok(pid));
    struct utsname u;
    CHECK(uname(&u) == 0);
    printf("parent hostname unchanged: %d\n", strcmp(u.nodename, "inner") != 0);
    printf("parent msgget 0x1234: %s\n", err(msgget(0x1234, 0)));
    printf("parent mq_open of the child's: %s\n", err(mq_open("/ns_child_q", O_RDWR)));
    mq_unlink("/ns_parent_q");
    char probe[1200];
    snprintf(probe, sizeof probe, "%s/m", argv[1]);
    struct stat a, b;
    CHECK(stat(argv[1], &a) == 0 && stat(probe, &b) == 0);
    printf("parent sees the child's mount: %d\n", a.st_dev != b.st_dev);

    /* UTS: unshare, then setns back through a saved fd. */
    int fd_uts = open("/proc/self/ns/uts", O_RDONLY);
    CHECK(fd_uts >= 0);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int hf = open("/proc/sys/kernel/hostname", O_RDONLY);
        int hep = epoll_create1(0);
        struct epoll_event hev = {.events = 0}, hgot;
        CHECK(hf >= 0 && hep >= 0 && epoll_ctl(hep, EPOLL_CTL_ADD, hf, &hev) == 0);
        CHECK(unshare(CLONE_NEWUTS) == 0);
        CHECK(sethostname("other", 5) == 0);
        int hn = epoll_wait(hep, &hgot, 1, 1000);
        printf("hostname readers polled: %d err %d, then %d\n", hn,
               hn == 1 && (hgot.events & EPOLLERR) != 0, epoll_wait(hep, &hgot, 1, 0));
        char hb[80] = "";
        int h2 = open("/proc/sys/kernel/hostname", O_RDONLY);
        CHECK(h2 >= 0 && read(h2, hb, sizeof hb - 1) > 0);
        printf("/proc/sys/kernel/hostname: %s", hb);
        ino_t mine = ns_ino("uts");
        printf("setns uts back: %s\n", err(setns(fd_uts, CLONE_NEWUTS)));
        printf("back in the first: %d left the second: %d\n", ns_ino("uts") == uts0,
               ns_ino("uts") != mine);
        CHECK(uname(&u) == 0);
        printf("hostname is the parent's: %d\n", strcmp(u.nodename, "other") != 0);
        _exit(0);
    }
    printf("child: %d\n", wait_ok(pid));

    /* A parent with CAP_SETUID writes a child's maps (several extents). */
    int sync[2];
    CHECK(pipe(sync) == 0);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(sync[0]);
        CHECK(unshare(CLONE_NEWUSER) == 0);
        close(sync[1]);
        pause();
        _exit(0);
    }
    close(sync[1]);
    char c;
    CHECK(read(sync[0], &c, 1) == 0);
    char p[64];
    snprintf(p, sizeof p, "/proc/%d/uid_map", pid);
    put(p, "2 0 2\n4 6 2");
    show(p);
    snprintf(p, sizeof p, "/proc/%d/gid_map", pid);
    put(p, "0 0 1\n0 5 1");                             /* overlapping */
    put(p, "0 0 1");
    snprintf(p, sizeof p, "/proc/%d/setgroups", pid);
    put(p, "deny");                                     /* after gid_map */
    kill(pid, SIGKILL);
    printf("child: %d\n", wait_ok(pid));

    /* A network namespace: a stack of its own (ports free there), a loopback, and
     * setns back to the first. */
    int lst = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(lst >= 0 && bind(lst, (struct sockaddr *)&sin, sizeof sin) == 0 && listen(lst, 1) == 0);
    socklen_t sl = sizeof sin;
    CHECK(getsockname(lst, (struct sockaddr *)&sin, &sl) == 0);
    int fd_net = open("/proc/self/ns/net", O_RDONLY);
    CHECK(fd_net >= 0);
    int ulst = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un pua = {.sun_family = AF_UNIX};
    memcpy(pua.sun_path, "\0pyvisor-ns-test", 17);
    CHECK(bind(ulst, (struct sockaddr *)&pua, offsetof(struct sockaddr_un, sun_path) + 17) == 0);
    CHECK(listen(ulst, 1) == 0);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        struct sockaddr_in any = {.sin_family = AF_INET, .sin_port = sin.sin_port};
        int s1 = socket(AF_INET, SOCK_STREAM, 0);
        printf("bind the port here: %s\n", err(bind(s1, (struct sockaddr *)&any, sizeof any)));
        CHECK(unshare(CLONE_NEWNET) == 0);
        printf("net differs: %d, lo has an index: %d\n", ns_ino("net") != net0,
               if_nametoindex("lo") > 0);
        struct sockaddr_un ua = {.sun_family = AF_UNIX};
        memcpy(ua.sun_path, "\0pyvisor-ns-test", 17);
        socklen_t ul = offsetof(struct sockaddr_un, sun_path) + 17;
        int u1 = socket(AF_UNIX, SOCK_STREAM, 0);
        printf("abstract name of the first ns: %s\n",
               err(connect(u1, (struct sockaddr *)&ua, ul)));
        int u2 = socket(AF_UNIX, SOCK_STREAM, 0);
        printf("bind it here: %s\n", err(bind(u2, (struct sockaddr *)&ua, ul)));
        int s2 = socket(AF_INET, SOCK_STREAM, 0);
        printf("bind the port in the new ns: %s\n",
               err(bind(s2, (struct sockaddr *)&any, sizeof any)));
        printf("setns net back: %s\n", err(setns(fd_net, CLONE_NEWNET)));
        int s3 = socket(AF_INET, SOCK_STREAM, 0);
        printf("connect to the first ns's listener: %s\n",
               err(connect(s3, (struct sockaddr *)&sin, sizeof sin)));
        _exit(0);
    }
    printf("child: %d\n", wait_ok(pid));
    close(lst);

    /* clone(CLONE_NEWUSER). */
    static char stack[65536];
    pid = clone(userns_child, stack + sizeof stack, CLONE_NEWUSER | SIGCHLD, NULL);
    CHECK(pid > 0);
    printf("clone child: %d\n", wait_ok(pid));
    ok();
    return 0;
}
