/* Set-user-ID and set-group-ID programs: exec gives the file's owner/group as the
 * effective id (saved id too), AT_SECURE, not dumpable, no ambient capabilities;
 * not under no_new_privs.  Linux: fs/exec.c bprm_fill_uid,
 * security/commoncap.c cap_bprm_creds_from_file. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/auxv.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include "check.h"

static int run(const char *prog, int uid, int gid, int nnp, const char *want)
{
    pid_t c = fork();
    if (c == 0) {
        if (nnp)
            CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0);
        CHECK(setresgid(gid, gid, gid) == 0);
        CHECK(setresuid(uid, uid, uid) == 0);
        char *argv[] = {(char *)prog, "check", (char *)want, NULL};
        char *envp[] = {NULL};
        execve(prog, argv, envp);
        _exit(99);
    }
    int st;
    CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st));
    return WEXITSTATUS(st);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "check") == 0) {
        uid_t r, e, s;
        gid_t gr, ge, gs;
        CHECK(getresuid(&r, &e, &s) == 0 && getresgid(&gr, &ge, &gs) == 0);
        char got[128];
        snprintf(got, sizeof got, "%u/%u/%u %u/%u/%u secure=%lu dumpable=%d", r, e, s, gr, ge,
                 gs, getauxval(AT_SECURE), prctl(PR_GET_DUMPABLE));
        if (strcmp(got, argv[2]) != 0) {
            fprintf(stderr, "got \"%s\", want \"%s\"\n", got, argv[2]);
            return 1;
        }
        return 0;
    }
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    CHECK(n > 0);
    self[n] = 0;
    char dir[] = "/tmp/setid_exec_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    CHECK(chmod(dir, 0755) == 0);
    char prog[64];
    snprintf(prog, sizeof prog, "%s/prog", dir);
    int in = open(self, O_RDONLY), out = open(prog, O_WRONLY | O_CREAT | O_EXCL, 0755);
    CHECK(in >= 0 && out >= 0);
    char buf[65536];
    ssize_t k;
    while ((k = read(in, buf, sizeof buf)) > 0)
        CHECK(write(out, buf, k) == k);
    close(in);
    close(out);
    CHECK(chown(prog, 0, 0) == 0);

    /* Plain: nothing changes. */
    CHECK(run(prog, 1000, 1000, 0, "1000/1000/1000 1000/1000/1000 secure=0 dumpable=1") == 0);
    /* Set-user-ID root. */
    CHECK(chmod(prog, 04755) == 0);
    CHECK(run(prog, 1000, 1000, 0, "1000/0/0 1000/1000/1000 secure=1 dumpable=0") == 0);
    /* no_new_privs: the bit is ignored. */
    CHECK(run(prog, 1000, 1000, 1, "1000/1000/1000 1000/1000/1000 secure=0 dumpable=1") == 0);
    /* Set-group-ID needs group execute too. */
    CHECK(chown(prog, 0, 4321) == 0);                 /* clears the set-id bits */
    CHECK(chmod(prog, 02755) == 0);
    CHECK(run(prog, 1000, 1000, 0, "1000/1000/1000 1000/4321/4321 secure=1 dumpable=0") == 0);
    CHECK(chmod(prog, 02745) == 0);
    CHECK(run(prog, 1000, 1000, 0, "1000/1000/1000 1000/1000/1000 secure=0 dumpable=1") == 0);
    unlink(prog);
    rmdir(dir);
    ok();
    return 0;
}
