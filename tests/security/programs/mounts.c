/* Mounts, roots, device nodes, /proc/sys and /sys.
 *
 * Usage: mounts ATTACK MODE DIR [ARGS...]
 *   MODE is "native" or "sandbox". Attacks that would change the host when
 *   run natively (mount, umount, pivot_root, sethostname) first move into a
 *   private mount/UTS namespace in a throwaway child; natively that step is
 *   required (the attack is abandoned if it fails), in the sandbox it is only
 *   tried (the sandbox refuses it) and the attack goes on regardless.
 *   DIR is a world-readable host directory of the test.
 */
#include "sec.h"
#include <sched.h>
#include <dirent.h>
#include <sys/mount.h>
#include <sys/sysmacros.h>

static int native;
static const char *dir;

/* Enter private mount and UTS namespaces (in the calling child). */
static int private_ns(void)
{
    long r = unshare(CLONE_NEWNS | CLONE_NEWUTS);
    res("unshare", r);
    if (r == 0)
        r = res("make_private", mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL));
    if (r != 0 && native) {
        fprintf(stderr, "no private namespace natively: not attacking the host\n");
        return -1;
    }
    return 0;
}

static void write_file(const char *key, const char *p, const char *data)
{
    char k[128];
    int fd = open(p, O_WRONLY);
    snprintf(k, sizeof k, "%s_open", key);
    res(k, fd);
    if (fd >= 0 && data) {
        snprintf(k, sizeof k, "%s_write", key);
        res(k, write(fd, data, strlen(data)));
    }
    if (fd >= 0)
        close(fd);
}

static void attack(const char *a, char **args, int nargs)
{
    char p[4096], q[4096];
    if (!strcmp(a, "mount_tmpfs")) {
        if (private_ns())
            return;
        if (res("mount", mount("none", dir, "tmpfs", 0, "size=1m")) == 0) {
            snprintf(p, sizeof p, "%s/on-tmpfs", dir);
            res("create_on_mount", open(p, O_CREAT | O_WRONLY, 0644));
        }
        res("mount_proc", mount("proc", dir, "proc", 0, NULL));
        res("mount_sysfs", mount("sysfs", dir, "sysfs", 0, NULL));
        res("mount_devtmpfs", mount("devtmpfs", dir, "devtmpfs", 0, NULL));
    } else if (!strcmp(a, "bind_root")) {
        /* Bind the root (or /proc) somewhere: a second view of the host. */
        if (private_ns())
            return;
        res("bind_root", mount("/", dir, NULL, MS_BIND | MS_REC, NULL));
        snprintf(p, sizeof p, "%s/etc/passwd", dir);
        res("sees_passwd", access(p, R_OK));
        res("bind_proc", mount("/proc", dir, NULL, MS_BIND, NULL));
    } else if (!strcmp(a, "remount")) {
        /* Make the read-only lower layer (the host root) writable. */
        if (private_ns())
            return;
        if (!native)  /* natively this would remount the host's ext4 superblock */
            res("remount_rw", mount(NULL, "/", NULL, MS_REMOUNT, NULL));
        res("remount_bind_rw", mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND, NULL));
        res("make_shared", mount(NULL, "/", NULL, MS_REC | MS_SHARED, NULL));
        if (nargs > 0) {
            snprintf(p, sizeof p, "%s", args[0]);
            write_file("write_target", p, "PWNED");
        }
    } else if (!strcmp(a, "umount")) {
        if (private_ns())
            return;
        res("umount_shm", umount2("/dev/shm", MNT_DETACH));
        res("umount_proc", umount2("/proc", MNT_DETACH));
        res("umount_root", umount2("/", MNT_DETACH));
        res("umount_dir", umount2(dir, 0));
    } else if (!strcmp(a, "pivot_root")) {
        if (private_ns())
            return;
        res("bind_self", mount(dir, dir, NULL, MS_BIND, NULL));
        snprintf(p, sizeof p, "%s/old", dir);
        mkdir(p, 0755);
        res("pivot_root", syscall(SYS_pivot_root, dir, p));
        res("pivot_root_dot", syscall(SYS_pivot_root, ".", "."));
    } else if (!strcmp(a, "chroot")) {
        /* chroot(DIR) then climb: we must stay in DIR (which holds "marker"
         * but no etc/). */
        res("chroot", chroot(dir));
        res("chdir_root", chdir("/"));
        res("chdir_up", chdir("../../../../.."));
        char cwd[4096] = "";
        getcwd(cwd, sizeof cwd);
        kv("cwd", "%s", cwd);
        res("marker", access("/marker", F_OK));
        res("marker_dotdot", access("/../../../marker", F_OK));
        res("passwd", access("/etc/passwd", F_OK));
        res("passwd_dotdot", access("../../../../etc/passwd", F_OK));
        res("proc", access("/proc/self/status", F_OK));
    } else if (!strcmp(a, "chroot_escape")) {
        /* The classic escape: chroot into a subdirectory while the cwd stays
         * above it, climb with "..", chroot("."). Linux allows it to root; in
         * the sandbox it may reach the sandbox's root, never the host's
         * writable files. args[0] is a host file outside the jail. */
        snprintf(p, sizeof p, "%s/jail", dir);
        res("chdir_jail", chdir(p));
        res("chroot_jail", chroot(p));
        mkdir("sub", 0755);
        res("chroot_sub", chroot("sub"));
        for (int i = 0; i < 64; i++)
            chdir("..");
        res("chroot_dot", chroot("."));
        char cwd[4096] = "";
        getcwd(cwd, sizeof cwd);
        kv("cwd", "%s", cwd);
        int escaped = nargs > 0 && access(args[0], F_OK) == 0;
        kv("escaped", "%d", escaped);
        if (nargs > 0)
            write_file("write_outside", args[0], "PWNED");
    } else if (!strcmp(a, "mknod")) {
        /* Device nodes of the host's disk and memory, then read through one. */
        snprintf(p, sizeof p, "%s/vda", dir);
        res("mknod_blk", mknod(p, S_IFBLK | 0600, makedev(254, 0)));
        int fd = open(p, O_RDONLY);
        res("open_blk", fd);
        if (fd >= 0) {
            char buf[4096];
            ssize_t n = read(fd, buf, sizeof buf);
            res("read_blk", n);
            int nz = 0;
            for (ssize_t i = 0; i < n; i++)
                nz |= buf[i] != 0;
            kv("blk_nonzero", "%d", nz);
            close(fd);
        }
        snprintf(q, sizeof q, "%s/mem", dir);
        res("mknod_mem", mknod(q, S_IFCHR | 0600, makedev(1, 1)));
        snprintf(q, sizeof q, "%s/kmsg", dir);
        res("mknod_kmsg", mknod(q, S_IFCHR | 0600, makedev(1, 11)));
        fd = res("open_kmsg_node", open(q, O_RDONLY | O_NONBLOCK));
        if (fd >= 0) {
            char rec[8192];
            res("read_kmsg_node", read(fd, rec, sizeof rec));
            close(fd);
        }
        if (!native)  /* natively this would be the host's /dev */
            res("mknod_dev_sda", mknod("/dev/pyvisor-sda", S_IFBLK | 0600, makedev(8, 0)));
        res("mknodat_chr", mknodat(AT_FDCWD, "/tmp/.pyvisor-sec-kmem", S_IFCHR | 0600,
                                   makedev(1, 2)));
        unlink("/tmp/.pyvisor-sec-kmem");
    } else if (!strcmp(a, "devices")) {
        static const char *devs[] = {
            "/dev/mem", "/dev/kmem", "/dev/port", "/dev/kmsg", "/dev/sda",
            "/dev/vda", "/dev/nvme0n1", "/dev/loop0", "/dev/loop-control",
            "/dev/kvm", "/dev/fuse", "/dev/zram0", "/dev/vsock", "/dev/hwrng",
            "/dev/btrfs-control", "/dev/cpu/0/msr", "/dev/vga_arbiter",
            "/dev/autofs", "/dev/vcs", "/dev/tty0", "/dev/ttyS0", "/dev/userfaultfd",
            "/dev/net/tun", "/dev/dri/card0", "/dev/input/event0", NULL};
        int opened = 0;
        for (int i = 0; devs[i]; i++) {
            int fd = open(devs[i], O_RDONLY | O_NONBLOCK | O_NOCTTY);
            kv(devs[i] + 5, "%s", fd >= 0 ? "open" : ename(errno));
            if (fd >= 0) {
                opened++;
                close(fd);
            }
        }
        kv("opened", "%d", opened);
        DIR *d = opendir("/dev");
        char list[4096] = "";
        struct dirent *e;
        while (d && (e = readdir(d)))
            if (strlen(list) + strlen(e->d_name) + 2 < sizeof list) {
                strcat(list, e->d_name);
                strcat(list, " ");
            }
        kv("dev_listing", "%s", list);
    } else if (!strcmp(a, "procsys")) {
        /* args: current core_pattern, overcommit_memory, randomize_va_space;
         * we write those same values back (harmless if they ever land). The
         * host name is written only inside a private UTS namespace. */
        if (private_ns())
            return;
        write_file("hostname", "/proc/sys/kernel/hostname", "pyvisor-pwned");
        write_file("domainname", "/proc/sys/kernel/domainname", "pyvisor-pwned");
        if (nargs >= 3) {
            write_file("core_pattern", "/proc/sys/kernel/core_pattern", args[0]);
            write_file("overcommit", "/proc/sys/vm/overcommit_memory", args[1]);
            write_file("randomize", "/proc/sys/kernel/randomize_va_space", args[2]);
        }
        write_file("sysrq_trigger", "/proc/sysrq-trigger", NULL);  /* open only */
        char buf[256] = "";
        int fd = open("/proc/sys/kernel/hostname", O_RDONLY);
        if (fd >= 0) {
            ssize_t n = read(fd, buf, sizeof buf - 1);
            buf[n > 0 ? n - 1 : 0] = 0;
            close(fd);
        }
        kv("hostname_now", "%s", buf);
    } else if (!strcmp(a, "sysfs")) {
        /* args[0]: the current THP mode, written back. */
        if (nargs >= 1)
            write_file("thp", "/sys/kernel/mm/transparent_hugepage/enabled", args[0]);
        write_file("power_state", "/sys/power/state", NULL);  /* open only */
        write_file("cgroup_procs", "/sys/fs/cgroup/pids/cgroup.procs", NULL);
        res("sysfs_dir", access("/sys/kernel", F_OK));
    } else if (!strcmp(a, "sysfs_leak")) {
        /* Host state readable through /sys: the host's PIDs in cgroup.procs,
         * its block devices, its power states. */
        static const char *files[] = {
            "/sys/fs/cgroup/pids/cgroup.procs", "/sys/fs/cgroup/unified/cgroup.procs",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes", "/sys/block/vda/dev",
            "/sys/power/state", "/sys/kernel/mm/transparent_hugepage/enabled",
            "/sys/class/net/lo/address", NULL};
        int readable = 0;
        for (int i = 0; files[i]; i++) {
            char buf[65536];
            int fd = open(files[i], O_RDONLY);
            ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
            int e = errno;
            if (fd >= 0)
                close(fd);
            if (n > 0) {
                readable++;
                int lines = 0;
                for (ssize_t j = 0; j < n; j++)
                    lines += buf[j] == '\n';
                kv(files[i] + 5, "read:%zd bytes:%d lines", n, lines);
            } else {
                kv(files[i] + 5, "%s", fd < 0 ? ename(e) : "empty");
            }
        }
        kv("readable", "%d", readable);
    } else if (!strcmp(a, "sethostname")) {
        if (private_ns())
            return;
        res("sethostname", sethostname("pyvisor-pwned", 13));
        res("setdomainname", setdomainname("pyvisor-pwned", 13));
        char buf[256] = "";
        gethostname(buf, sizeof buf);
        kv("hostname_now", "%s", buf);
    } else {
        fprintf(stderr, "unknown attack %s\n", a);
        exit(2);
    }
}

int main(int argc, char **argv)
{
    USAGE(argc, 4, "mounts ATTACK native|sandbox DIR [ARGS...]");
    native = !strcmp(argv[2], "native");
    dir = argv[3];
    /* In a child: namespaces and roots die with it. */
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        attack(argv[1], argv + 4, argc - 4);
        _exit(0);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid)
        die("waitpid");
    status_kv("child", status);
    /* The sandbox (or host) still works after the attack. */
    kv("parent_getpid", "%d", (int)getpid());
    return 0;
}
