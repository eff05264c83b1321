/* Privileged operations that must never reach the host from the sandbox.
 *
 * Usage: isolation native|sandbox
 *   sandbox: reboot, kexec_load, init_module and ptrace(ATTACH, 1)
 *            must each fail with EPERM or ENOSYS; mount is served by the
 *            Sentry's own mount tree (the tmpfs shows at /mnt inside and
 *            unmounts again; the test checks the host's /mnt is untouched), or
 *            refused; and a 32-bit `int $0x80`
 *            must give -ENOSYS or kill the caller with SIGSYS/SIGSEGV.
 *            We must be pid 1 (of the sandbox) in this mode.
 *   native:  the same calls made harmless (a private mount namespace,
 *            invalid arguments, our own child instead of the host's init),
 *            to show what Linux itself does.
 */
#define _GNU_SOURCE
#include <linux/reboot.h>
#include <sched.h>
#include <signal.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include "check.h"

static int sandbox;

/* In the sandbox a privileged call must fail with EPERM or ENOSYS. */
static void check_refused(const char *what, long r)
{
    int e = errno;
    if (r != -1 || (e != EPERM && e != ENOSYS)) {
        fprintf(stderr, "%s: returned %ld (errno %d: %s), "
                "expected EPERM or ENOSYS\n", what, r, e, strerror(e));
        exit(1);
    }
}

/* Natively the harmless variants must fail (they are built to) or, for
 * the private mount, may succeed. */
static void check_failed(const char *what, long r)
{
    if (r != -1) {
        fprintf(stderr, "%s: unexpectedly returned %ld\n", what, r);
        exit(1);
    }
}

/* mount("none", "/mnt", "tmpfs") in a child that first tries to enter a
 * private mount namespace, so that even a sandbox that wrongly passed the
 * call through could not cover the host's /mnt. */
static void test_mount(void)
{
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        long msg[2];
        msg[0] = 0;
        if (unshare(CLONE_NEWNS) == 0)
            msg[0] = mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
        if (msg[0] == 0)
            msg[0] = mount("none", "/mnt", "tmpfs", 0, NULL);
        msg[1] = errno;
        if (sandbox && msg[0] == 0) {
            /* Served inside: it must be there for us, and go away again. */
            struct statfs sf;
            if (statfs("/mnt", &sf) != 0 || sf.f_type != 0x01021994 ||
                umount2("/mnt", 0) != 0)
                msg[0] = -2;
        }
        write(p[1], msg, sizeof msg);
        _exit(0);
    }
    close(p[1]);
    long msg[2];
    CHECK(read(p[0], msg, sizeof msg) == sizeof msg);
    close(p[0]);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && status == 0);
    errno = (int)msg[1];
    if (sandbox && msg[0] == -2) {
        fprintf(stderr, "mount: succeeded but no tmpfs at /mnt inside\n");
        exit(1);
    }
    if (sandbox && msg[0] != 0)
        check_refused("mount", msg[0]);
    else
        CHECK(msg[0] == 0 || errno == EPERM);
}

static void test_reboot(void)
{
    /* CAD_OFF only turns Ctrl-Alt-Del into a signal to init. */
    errno = 0;
    long r = syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2,
                     LINUX_REBOOT_CMD_CAD_OFF, NULL);
    if (sandbox)
        check_refused("reboot", r);
    else
        CHECK(r == 0 || errno == EPERM || errno == EINVAL);
}

static void test_kexec_load(void)
{
    /* More segments than KEXEC_SEGMENT_MAX: natively EINVAL (or EPERM). */
    errno = 0;
    long r = syscall(SYS_kexec_load, 0UL, 1000UL, NULL, 0UL);
    if (sandbox)
        check_refused("kexec_load", r);
    else
        check_failed("kexec_load", r);
}

static void test_init_module(void)
{
    static char garbage[256];
    memset(garbage, 0x5a, sizeof garbage);
    errno = 0;
    long r = syscall(SYS_init_module, garbage, sizeof garbage, "");
    if (sandbox)
        check_refused("init_module", r);
    else
        check_failed("init_module", r);
}

static void test_ptrace(void)
{
    if (sandbox) {
        errno = 0;
        long r = ptrace(PTRACE_ATTACH, 1, NULL, NULL);
        check_refused("ptrace(PTRACE_ATTACH, 1)", r);
        return;
    }
    /* Natively pid 1 is the host's init: attach to our own child instead. */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        for (;;)
            pause();
    }
    int status;
    CHECK(ptrace(PTRACE_ATTACH, pid, NULL, NULL) == 0);
    CHECK(waitpid(pid, &status, 0) == pid && WIFSTOPPED(status));
    CHECK(ptrace(PTRACE_DETACH, pid, NULL, NULL) == 0);
    CHECK(kill(pid, SIGKILL) == 0);
    CHECK(waitpid(pid, &status, 0) == pid);
}

/* getpid (20) through the 32-bit ABI, in a child; the result comes back
 * through a pipe, or the child dies of a signal. */
static void test_int80(void)
{
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        long pid_now = getpid();
        long ret;
        __asm__ volatile("int $0x80"
                         : "=a"(ret)
                         : "a"(20L)
                         : "rbx", "rcx", "rdx", "rsi", "rdi", "r8", "r9",
                           "r10", "r11", "memory", "cc");
        long msg[2] = {ret, pid_now};
        write(p[1], msg, sizeof msg);
        _exit(0);
    }
    close(p[1]);
    long msg[2];
    ssize_t n = read(p[0], msg, sizeof msg);
    close(p[0]);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        CHECK(n == 0);
        CHECK(sig == SIGSYS || sig == SIGSEGV);
        return;
    }
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(n == sizeof msg);
    if (sandbox) {
        if (msg[0] != -ENOSYS) {
            fprintf(stderr, "int $0x80 getpid returned %ld (child pid %ld), "
                    "expected -ENOSYS or a signal\n", msg[0], msg[1]);
            exit(1);
        }
    } else {
        /* Linux with IA-32 emulation serves it; without, -ENOSYS. */
        CHECK(msg[0] == msg[1] || msg[0] == -ENOSYS);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2 || (strcmp(argv[1], "native") && strcmp(argv[1], "sandbox"))) {
        fprintf(stderr, "usage: %s native|sandbox\n", argv[0]);
        return 2;
    }
    sandbox = strcmp(argv[1], "sandbox") == 0;
    if (sandbox && getpid() != 1) {
        /* Outside a sandbox, pid 1 is the host's init: never touch it. */
        fprintf(stderr, "sandbox mode: getpid() is %d, not 1; not in a "
                "sandbox, refusing to go on\n", (int)getpid());
        return 1;
    }
    test_mount();
    test_reboot();
    test_kexec_load();
    test_init_module();
    test_ptrace();
    test_int80();
    ok();
    return 0;
}
