/* Attacks on the host kernel: privileged and rarely needed system calls,
 * made with raw syscall() and the numbers of <sys/syscall.h>.
 *
 * Usage: kernel ATTACK MODE [DIR]
 *   Reports ATTACK=<ret> and ATTACK_errno. The test runs natively only the
 *   attacks that are harmless to the host (they act on this process, an fd,
 *   or a throwaway namespace); see test_host_kernel.py.
 */
#include "sec.h"
#include <linux/bpf.h>
#include <linux/io_uring.h>
#include <linux/keyctl.h>
#include <linux/mount.h>
#include <linux/perf_event.h>
#include <linux/reboot.h>
#include <sched.h>
#include <sys/personality.h>
#include <sys/quota.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <asm/ldt.h>

#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif

static int native;
static const char *dir = "/tmp";

/* Runs f in a child that first enters private mount + UTS namespaces
 * (natively required, in the sandbox only tried); reports f's result. */
static void in_private_ns(const char *key, long (*f)(void))
{
    int p[2];
    if (pipe(p))
        die("pipe");
    pid_t pid = fork();
    if (pid == 0) {
        long msg[2] = {-1, EPERM};
        long u = unshare(CLONE_NEWNS | CLONE_NEWUTS);
        if (u == 0)
            u = syscall(SYS_mount, NULL, "/", NULL, 16384 | (1 << 18) /* MS_REC|MS_PRIVATE */,
                        NULL);
        if (u == 0 || !native) {
            errno = 0;
            msg[0] = f();
            msg[1] = errno;
        }
        write(p[1], msg, sizeof msg);
        _exit(0);
    }
    close(p[1]);
    long msg[2] = {-1, 0};
    read(p[0], msg, sizeof msg);
    close(p[0]);
    waitpid(pid, NULL, 0);
    errno = (int)msg[1];
    res(key, msg[0]);
}

static long new_mount_api(void)
{
    /* fsopen + fsconfig + fsmount + move_mount onto DIR. */
    int fs = (int)syscall(SYS_fsopen, "tmpfs", 0);
    if (fs < 0)
        return -1;
    if (syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
        return -1;
    int mnt = (int)syscall(SYS_fsmount, fs, 0, 0);
    if (mnt < 0)
        return -1;
    return syscall(SYS_move_mount, mnt, "", AT_FDCWD, dir, MOVE_MOUNT_F_EMPTY_PATH);
}

static long mount_setattr_ro(void)
{
    struct mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY};
    return syscall(SYS_mount_setattr, AT_FDCWD, "/", 0, &attr, sizeof attr);
}

static long unshare_all(void)
{
    return unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC |
                   CLONE_NEWUTS | CLONE_NEWCGROUP);
}

static long unshare_user(void)
{
    return unshare(CLONE_NEWUSER);
}

static long unshare_pid_time(void)
{
    return unshare(CLONE_NEWPID | 0x00000080 /* CLONE_NEWTIME */);
}

static long sys_bpf_prog(void)
{
    /* A socket filter that returns 0: r0 = 0; exit. */
    struct bpf_insn insns[2] = {
        {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = 0, .imm = 0},
        {.code = BPF_JMP | BPF_EXIT},
    };
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
    attr.insn_cnt = 2;
    attr.insns = (unsigned long)insns;
    attr.license = (unsigned long)"GPL";
    return syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof attr);
}

int main(int argc, char **argv)
{
    USAGE(argc, 3, "kernel ATTACK native|sandbox [DIR]");
    const char *a = argv[1];
    native = !strcmp(argv[2], "native");
    if (argc > 3)
        dir = argv[3];
    char path[4096];

    if (!strcmp(a, "kexec_load")) {
        /* One empty segment, default flags: would load a kernel image. */
        struct { void *buf; size_t bufsz; unsigned long mem; size_t memsz; } seg = {
            NULL, 0, 0x1000000, 0x1000};
        res(a, syscall(SYS_kexec_load, 0x1000000UL, 1UL, &seg, 0UL));
    } else if (!strcmp(a, "kexec_file_load")) {
        int fd = open("/proc/self/exe", O_RDONLY);
        res(a, syscall(SYS_kexec_file_load, fd, fd, 1UL, "", 0UL));
    } else if (!strcmp(a, "init_module")) {
        static char image[4096] = "\x7f" "ELF";
        res(a, syscall(SYS_init_module, image, sizeof image, ""));
    } else if (!strcmp(a, "finit_module")) {
        int fd = open("/proc/self/exe", O_RDONLY);
        res(a, syscall(SYS_finit_module, fd, "", 0));
    } else if (!strcmp(a, "delete_module")) {
        res(a, syscall(SYS_delete_module, "ext4", O_NONBLOCK));
    } else if (!strcmp(a, "bpf")) {
        res(a, sys_bpf_prog());
        union bpf_attr attr;
        memset(&attr, 0, sizeof attr);
        attr.map_type = BPF_MAP_TYPE_ARRAY;
        attr.key_size = 4;
        attr.value_size = 8;
        attr.max_entries = 1;
        res("bpf_map", syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr));
    } else if (!strcmp(a, "perf_event_open")) {
        struct perf_event_attr pe;
        memset(&pe, 0, sizeof pe);
        pe.type = PERF_TYPE_SOFTWARE;
        pe.size = sizeof pe;
        pe.config = PERF_COUNT_SW_TASK_CLOCK;
        pe.disabled = 1;
        res(a, syscall(SYS_perf_event_open, &pe, 0, -1, -1, 0));
        /* System-wide (cpu 0, every task): what an attacker wants. */
        res("perf_system_wide", syscall(SYS_perf_event_open, &pe, -1, 0, -1, 0));
    } else if (!strcmp(a, "userfaultfd")) {
        res(a, syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
        res("dev_userfaultfd", open("/dev/userfaultfd", O_RDWR));
    } else if (!strcmp(a, "add_key")) {
        res(a, syscall(SYS_add_key, "user", "pyvisor-sec", "secret", 6,
                       KEY_SPEC_PROCESS_KEYRING));
        if (!native)  /* natively the session keyring outlives us */
            res("add_key_session", syscall(SYS_add_key, "keyring", "pyvisor-sec-ring",
                                           NULL, 0, KEY_SPEC_SESSION_KEYRING));
    } else if (!strcmp(a, "keyctl")) {
        res(a, syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_PROCESS_KEYRING, 1));
        res("keyctl_join", syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, NULL));
        char buf[4096];
        res("keyctl_describe_user", syscall(SYS_keyctl, KEYCTL_DESCRIBE,
                                            KEY_SPEC_USER_KEYRING, buf, sizeof buf));
    } else if (!strcmp(a, "request_key")) {
        syscall(SYS_add_key, "user", "pyvisor-sec", "secret", 6, KEY_SPEC_PROCESS_KEYRING);
        res(a, syscall(SYS_request_key, "user", "pyvisor-sec", NULL,
                       KEY_SPEC_PROCESS_KEYRING));
    } else if (!strcmp(a, "reboot")) {
        /* CAD_OFF: only changes what Ctrl-Alt-Del does; RESTART would reboot. */
        res(a, syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2,
                       LINUX_REBOOT_CMD_CAD_OFF, NULL));
        res("reboot_restart", syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2,
                                      LINUX_REBOOT_CMD_RESTART, NULL));
        /* Still here: the sandbox may stop, never the host. */
    } else if (!strcmp(a, "swapon")) {
        snprintf(path, sizeof path, "%s/swapfile", dir);
        res(a, syscall(SYS_swapon, path, 0));
        res("swapoff", syscall(SYS_swapoff, "/dev/zram0"));
    } else if (!strcmp(a, "iopl")) {
        res(a, syscall(SYS_iopl, 3));
        res("ioperm", syscall(SYS_ioperm, 0x70UL, 2UL, 1));
    } else if (!strcmp(a, "modify_ldt")) {
        struct user_desc d;
        memset(&d, 0, sizeof d);
        d.entry_number = 0;
        d.base_addr = 0;
        d.limit = 0xfffff;
        d.seg_32bit = 1;
        d.contents = MODIFY_LDT_CONTENTS_CODE;
        d.limit_in_pages = 1;
        d.useable = 1;
        res(a, syscall(SYS_modify_ldt, 1, &d, sizeof d));
        char buf[64];
        res("modify_ldt_read", syscall(SYS_modify_ldt, 0, buf, sizeof buf));
    } else if (!strcmp(a, "acct")) {
        snprintf(path, sizeof path, "%s/acct", dir);
        if (!native) {
            /* Would turn on host-wide process accounting into DIR/acct. */
            int fd = open(path, O_CREAT | O_WRONLY, 0600);
            close(fd);
            res("acct_on", syscall(SYS_acct, path));
        }
        res(a, syscall(SYS_acct, NULL));
    } else if (!strcmp(a, "quotactl")) {
        unsigned fmt = 0;
        res(a, syscall(SYS_quotactl, QCMD(Q_GETFMT, USRQUOTA), "/dev/vda", 0, &fmt));
        res("quotactl_on", syscall(SYS_quotactl, QCMD(Q_QUOTAON, USRQUOTA), "/dev/vda",
                                   QFMT_VFS_V1, "/aquota.user"));
    } else if (!strcmp(a, "io_uring_setup")) {
        struct io_uring_params p;
        memset(&p, 0, sizeof p);
        res(a, syscall(SYS_io_uring_setup, 4, &p));
    } else if (!strcmp(a, "open_tree")) {
        res(a, syscall(SYS_open_tree, AT_FDCWD, "/", OPEN_TREE_CLONE | AT_RECURSIVE));
        res("fspick", syscall(SYS_fspick, AT_FDCWD, "/", 0));
    } else if (!strcmp(a, "fsopen")) {
        res(a, syscall(SYS_fsopen, "tmpfs", 0));
        res("fsopen_proc", syscall(SYS_fsopen, "proc", 0));
    } else if (!strcmp(a, "move_mount")) {
        in_private_ns(a, new_mount_api);
    } else if (!strcmp(a, "mount_setattr")) {
        in_private_ns(a, mount_setattr_ro);
    } else if (!strcmp(a, "clock_settime")) {
        /* Only in the sandbox (natively it would move the host clock). */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1000;
        res(a, syscall(SYS_clock_settime, CLOCK_REALTIME, &ts));
    } else if (!strcmp(a, "settimeofday")) {
        struct timeval tv;
        gettimeofday(&tv, NULL);
        tv.tv_sec += 2000;
        res(a, syscall(SYS_settimeofday, &tv, NULL));
        struct { int modes; long pad[40]; } tx = {0x0001 /* ADJ_OFFSET */, {0}};
        res("adjtimex", syscall(SYS_adjtimex, &tx));
    } else if (!strcmp(a, "unshare")) {
        /* In a child: natively it enters new namespaces (harmless there). */
        pid_t pid = fork();
        if (pid == 0) {
            res(a, unshare_all());
            res("unshare_user", unshare_user());
            res("unshare_pid_time", unshare_pid_time());
            _exit(0);
        }
        waitpid(pid, NULL, 0);
    } else if (!strcmp(a, "setns")) {
        int fd = open("/proc/self/ns/net", O_RDONLY);
        res("open_ns", fd);
        res(a, syscall(SYS_setns, fd >= 0 ? fd : 0, 0));
        int fd1 = open("/proc/1/ns/mnt", O_RDONLY);
        res("setns_init_mnt", syscall(SYS_setns, fd1 >= 0 ? fd1 : 0, CLONE_NEWNS));
    } else if (!strcmp(a, "personality")) {
        res(a, syscall(SYS_personality, READ_IMPLIES_EXEC | ADDR_NO_RANDOMIZE));
        res("personality_now", syscall(SYS_personality, 0xffffffffUL));
        /* READ_IMPLIES_EXEC: is a PROT_READ mapping now executable? */
        void *m = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        FILE *f = fopen("/proc/self/maps", "r");
        char line[512];
        int exec = 0;
        while (f && fgets(line, sizeof line, f))
            if (strtoul(line, NULL, 16) == (unsigned long)m)
                exec = strstr(line, "r-x") != NULL;
        kv("read_implies_exec", "%d", exec);
        res("personality_linux32", syscall(SYS_personality, PER_LINUX32));
    } else if (!strcmp(a, "syslog")) {
        char buf[4096];
        res(a, syscall(SYS_syslog, 3 /* READ_ALL */, buf, sizeof buf));
        if (!native)  /* would clear the host's kernel log */
            res("syslog_clear", syscall(SYS_syslog, 5 /* CLEAR */, NULL, 0));
    } else if (!strcmp(a, "vhangup")) {
        if (!native)
            res(a, syscall(SYS_vhangup));
    } else if (!strcmp(a, "handles")) {
        /* name_to_handle_at on DIR/target, then open_by_handle_at (the
         * "shocker" escape) with that handle, or with the one given as
         * argv[4] (hex: type:bytes) -- a handle of a host file obtained
         * natively, which must open nothing inside the sandbox. */
        struct { struct file_handle fh; unsigned char buf[128]; } h;
        memset(&h, 0, sizeof h);
        h.fh.handle_bytes = 128;
        int mount_id = 0;
        snprintf(path, sizeof path, "%s/target", dir);
        long r = res("name_to_handle_at", syscall(SYS_name_to_handle_at, AT_FDCWD, path,
                                                  &h.fh, &mount_id, 0));
        if (r == 0) {
            char hex[300] = "";
            for (unsigned i = 0; i < h.fh.handle_bytes && i < 128; i++)
                sprintf(hex + 2 * i, "%02x", h.fh.f_handle[i]);
            kv("handle", "%d:%s", h.fh.handle_type, hex);
        }
        if (argc > 4) {
            memset(&h, 0, sizeof h);
            h.fh.handle_type = atoi(argv[4]);
            const char *x = strchr(argv[4], ':') + 1;
            unsigned n = 0;
            for (; x[0] && x[1] && n < 128; x += 2, n++)
                sscanf(x, "%2hhx", &h.fh.f_handle[n]);
            h.fh.handle_bytes = n;
        }
        int mfd = open("/", O_RDONLY | O_DIRECTORY);
        int fd = (int)res("open_by_handle_at", syscall(SYS_open_by_handle_at, mfd, &h.fh,
                                                       O_RDWR));
        if (fd >= 0)
            res("write_by_handle", write(fd, "PWNED", 5));
    } else if (!strcmp(a, "lookup_dcookie")) {
        char buf[256];
        res(a, syscall(SYS_lookup_dcookie, 1UL, buf, sizeof buf));
    } else {
        fprintf(stderr, "unknown attack %s\n", a);
        return 2;
    }
    kv("alive", "%d", (int)getpid());
    return 0;
}
