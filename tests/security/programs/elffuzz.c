/* Driver for malformed executables: execve every file of DIR, in name
 * order, each in a child, and report what became of it.
 *
 * Usage: elffuzz native|sandbox DIR [SECONDS]
 *   For each file: NAME=exec:ERRNO (execve failed), exit:N, signal:N, or
 *   timeout (SIGKILLed after SECONDS, default 2). Finally it runs
 *   /bin/echo final-echo, whose line shows the kernel still serves.
 *   native: before exec, the child confines itself as well as it can
 *   (new net/mount/IPC/UTS namespaces, no new privileges, uid/gid 65534),
 *   since a mangled binary may run arbitrary code of /bin/true.
 */
#include "sec.h"
#include <dirent.h>
#include <sched.h>
#include <grp.h>
#include <sys/prctl.h>

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    USAGE(argc, 3, "elffuzz native|sandbox DIR [SECONDS]");
    int native = !strcmp(argv[1], "native");
    const char *dir = argv[2];
    double secs = argc > 3 ? atof(argv[3]) : 2;
    DIR *d = opendir(dir);
    if (!d)
        die("opendir");
    char *names[1024];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 1024)
        if (e->d_name[0] != '.')
            names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, n, sizeof *names, cmp);
    int timeouts = 0;
    for (int i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        int p[2];
        if (pipe2(p, O_CLOEXEC))
            die("pipe2");
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0)
            die("fork");
        if (pid == 0) {
            close(p[0]);
            int fd = open("/dev/null", O_RDWR);
            dup2(fd, 0);
            dup2(fd, 1);
            dup2(fd, 2);
            if (native) {
                if (unshare(CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS) ||
                    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
                    setgroups(0, NULL) || setresgid(65534, 65534, 65534) ||
                    setresuid(65534, 65534, 65534)) {
                    int err = errno;
                    write(p[1], &err, sizeof err);
                    _exit(126);
                }
            }
            char *av[] = {path, NULL};
            char *ev[] = {"PATH=/usr/bin:/bin", NULL};
            execve(path, av, ev);
            int err = errno;
            write(p[1], &err, sizeof err);
            _exit(127);
        }
        close(p[1]);
        int timed_out;
        int status = wait_deadline(pid, secs, &timed_out);
        int err = 0;
        ssize_t got = read(p[0], &err, sizeof err);
        close(p[0]);
        if (timed_out) {
            kv(names[i], "timeout");
            timeouts++;
        } else if (got == sizeof err) {
            kv(names[i], "exec:%s", ename(err));
        } else if (WIFEXITED(status)) {
            kv(names[i], "exit:%d", WEXITSTATUS(status));
        } else if (WIFSIGNALED(status)) {
            kv(names[i], "signal:%d", WTERMSIG(status));
        } else {
            kv(names[i], "other:%#x", status);
        }
    }
    kv("variants", "%d", n);
    kv("timeouts", "%d", timeouts);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/echo", "echo", "final-echo", (char *)NULL);
        _exit(127);
    }
    int status;
    waitpid(pid, &status, 0);
    status_kv("echo", status);
    return 0;
}
