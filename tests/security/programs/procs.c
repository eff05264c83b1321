/* Attacks on host processes.
 *
 * Usage: procs ATTACK MODE [HOSTPID [ADDR]]
 *   MODE is "native" or "sandbox". HOSTPID is a host `sleep 60` the test
 *   started; ADDR (hex) the start of a readable mapping of it.
 */
#include "sec.h"
#include <dirent.h>
#include <sched.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/uio.h>

static int native;

static int count_proc(char *list, size_t n)
{
    DIR *d = opendir("/proc");
    if (!d)
        die("opendir /proc");
    int count = 0;
    struct dirent *e;
    list[0] = 0;
    while ((e = readdir(d))) {
        char *end;
        strtol(e->d_name, &end, 10);
        if (*e->d_name && !*end) {
            count++;
            if (strlen(list) + strlen(e->d_name) + 2 < n) {
                strcat(list, e->d_name);
                strcat(list, " ");
            }
        }
    }
    closedir(d);
    return count;
}

/* kill(-1, SIGKILL) from the caller, with a child of ours that must die. */
static void kill_all(void)
{
    pid_t child = fork();
    if (child == 0) {
        for (;;)
            pause();
    }
    usleep(100 * 1000);
    res("kill_all", kill(-1, SIGKILL));
    int status = 0;
    res("waitpid_child", waitpid(child, &status, 0));
    status_kv("own_child", status);
}

int main(int argc, char **argv)
{
    USAGE(argc, 3, "procs ATTACK native|sandbox [HOSTPID [ADDR]]");
    const char *a = argv[1];
    native = !strcmp(argv[2], "native");
    pid_t hostpid = argc > 3 ? atoi(argv[3]) : 0;
    unsigned long addr = argc > 4 ? strtoul(argv[4], NULL, 16) : 0;
    char p[256];

    if (!strcmp(a, "proclist")) {
        char list[8192];
        kv("proc_count", "%d", count_proc(list, sizeof list));
        kv("proc_list", "%s", list);
        kv("getpid", "%d", (int)getpid());
    } else if (!strcmp(a, "kill_all")) {
        if (native) {
            /* Natively only inside a new PID namespace, whose init we are:
             * kill(-1) there reaches our own child alone. */
            if (unshare(CLONE_NEWPID) != 0)
                die("unshare(CLONE_NEWPID)");
            pid_t init = fork();
            if (init == 0) {
                kill_all();
                _exit(0);
            }
            int status;
            waitpid(init, &status, 0);
            status_kv("ns_init", status);
        } else {
            kill_all();
        }
        kv("survivor_getpid", "%d", (int)getpid());
    } else if (!strcmp(a, "kill_pid")) {
        res("kill_0", kill(hostpid, 0));
        res("kill_pgrp_0", kill(-hostpid, 0));
        res("kill_kill", kill(hostpid, SIGKILL));
        res("kill_pgrp", kill(-hostpid, SIGKILL));
        res("tgkill", syscall(SYS_tgkill, hostpid, hostpid, SIGKILL));
        res("tkill", syscall(SYS_tkill, hostpid, SIGKILL));
        siginfo_t si;
        memset(&si, 0, sizeof si);
        si.si_code = SI_QUEUE;
        si.si_signo = SIGKILL;
        res("rt_sigqueueinfo", syscall(SYS_rt_sigqueueinfo, hostpid, SIGKILL, &si));
        int pfd = (int)syscall(SYS_pidfd_open, hostpid, 0);
        res("pidfd_open", pfd);
        res("pidfd_send_signal", syscall(SYS_pidfd_send_signal, pfd, SIGKILL, NULL, 0));
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(0, &one);
        res("setpriority", setpriority(PRIO_PROCESS, hostpid, 19));
        res("sched_setaffinity", sched_setaffinity(hostpid, sizeof one, &one));
        struct sched_param sp = {0};
        res("sched_setscheduler", sched_setscheduler(hostpid, SCHED_BATCH, &sp));
        res("prlimit", prlimit(hostpid, RLIMIT_NOFILE, NULL, NULL));
        res("getpgid", getpgid(hostpid));
        res("getsid", getsid(hostpid));
    } else if (!strcmp(a, "ptrace")) {
        long r = res("attach", ptrace(PTRACE_ATTACH, hostpid, NULL, NULL));
        if (r == 0) {
            int status;
            waitpid(hostpid, &status, __WALL);
            ptrace(PTRACE_DETACH, hostpid, NULL, NULL);
        }
        r = res("seize", ptrace(PTRACE_SEIZE, hostpid, NULL, NULL));
        if (r == 0)
            ptrace(PTRACE_DETACH, hostpid, NULL, NULL);
        if (!native) {
            res("attach_init", ptrace(PTRACE_ATTACH, 1, NULL, NULL));
            res("peek_init", ptrace(PTRACE_PEEKDATA, 1, (void *)0x400000, NULL));
        }
        pid_t child = fork();
        if (child == 0) {
            res("traceme", ptrace(PTRACE_TRACEME, 0, NULL, NULL));
            _exit(0);
        }
        int status;
        waitpid(child, &status, 0);
    } else if (!strcmp(a, "pvm")) {
        char buf[64];
        struct iovec local = {buf, sizeof buf};
        struct iovec remote = {(void *)addr, sizeof buf};
        res("readv", process_vm_readv(hostpid, &local, 1, &remote, 1, 0));
        if (!native) {
            /* Natively this would corrupt the sleeper; in the sandbox it must
             * fail before reaching it. */
            memset(buf, 0xcc, sizeof buf);
            res("writev", process_vm_writev(hostpid, &local, 1, &remote, 1, 0));
        }
        snprintf(p, sizeof p, "/proc/%d/mem", hostpid);
        int fd = res("open_mem", open(p, O_RDONLY));
        if (fd >= 0)
            res("pread_mem", pread(fd, buf, sizeof buf, (off_t)addr));
        int pfd = (int)syscall(SYS_pidfd_open, hostpid, 0);
        res("pidfd_getfd", syscall(SYS_pidfd_getfd, pfd, 0, 0));
        res("kcmp", syscall(SYS_kcmp, getpid(), hostpid, 0 /* KCMP_FILE */, 0, 0));
    } else if (!strcmp(a, "procpid")) {
        /* The host pid's /proc entries: must not exist in the sandbox. */
        static const char *what[] = {"", "/status", "/environ", "/cmdline", "/root/",
                                     "/cwd/", "/exe", "/fd/0", "/ns/pid", "/maps", NULL};
        for (int i = 0; what[i]; i++) {
            snprintf(p, sizeof p, "/proc/%d%s", hostpid, what[i]);
            char k[64];
            snprintf(k, sizeof k, "host%s", what[i][0] ? what[i] : "/");
            res(k, access(p, F_OK));
        }
        char link[4096] = "";
        ssize_t n = readlink("/proc/1/exe", link, sizeof link - 1);
        kv("init_exe", "%s", n >= 0 ? link : ename(errno));
        n = readlink("/proc/1/root", link, sizeof link - 1);
        link[n > 0 ? n : 0] = 0;
        kv("init_root", "%s", n >= 0 ? link : ename(errno));
    } else {
        fprintf(stderr, "unknown attack %s\n", a);
        return 2;
    }
    return 0;
}
