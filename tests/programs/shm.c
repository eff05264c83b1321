/* System V shared memory (issue #10): shmget keys, sizes and errnos, shmat
 * address rules (SHM_RND, SHM_REMAP, SHM_RDONLY), a segment shared between a
 * parent and its forked child, shm_nattch across fork, exec, split and detach,
 * IPC_RMID while attached (SHM_DEST, key gone, destroyed at the last detach),
 * a write through SHM_RDONLY (SIGSEGV), IPC_INFO/SHM_INFO/SHM_STAT,
 * /proc/sysvipc/shm and permissions for another user. */
#define _GNU_SOURCE
#include <grp.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include "check.h"

#define PAGE 4096

static unsigned long nattch(int id)
{
    struct shmid_ds ds;
    CHECK(shmctl(id, IPC_STAT, &ds) == 0);
    return ds.shm_nattch;
}

static int wait_child(pid_t pid)
{
    int st;
    CHECK(waitpid(pid, &st, 0) == pid);
    return st;
}

/* Is the segment `id` listed in /proc/sysvipc/shm with key `key`? */
static int in_proc(int id, key_t key)
{
    FILE *f = fopen("/proc/sysvipc/shm", "r");
    CHECK(f != NULL);
    char line[512];
    int found = 0;
    CHECK(fgets(line, sizeof line, f) != NULL);
    CHECK(strncmp(line, "       key      shmid perms", 27) == 0);
    while (fgets(line, sizeof line, f)) {
        int k, i;
        unsigned perms;
        unsigned long size;
        if (sscanf(line, "%d %d %o %lu", &k, &i, &perms, &size) == 4 && i == id) {
            CHECK(k == key && size == 3 * PAGE + 100 && (perms & 0777) == 0640);
            found = 1;
        }
    }
    fclose(f);
    return found;
}

static void limits(void)
{
    struct shminfo info;
    CHECK(shmctl(0, IPC_INFO, (struct shmid_ds *)&info) >= 0);
    CHECK(info.shmmin == 1 && info.shmmax > 1 && info.shmmni > 0 && info.shmall > 0);
    CHECK_ERR(shmget(IPC_PRIVATE, 0, IPC_CREAT | 0600), EINVAL);          /* < SHMMIN */
    CHECK_ERR(shmget(IPC_PRIVATE, info.shmmax + 1, IPC_CREAT | 0600), EINVAL);
    CHECK_ERR(shmat(-1, NULL, 0), EINVAL);
    CHECK_ERR(shmctl(0x7ffffff0, IPC_STAT, &(struct shmid_ds){0}), EINVAL);
    CHECK_ERR(shmctl(0, 12345, NULL), EINVAL);
    CHECK_ERR(shmdt((void *)1), EINVAL);                                  /* unaligned */
    CHECK_ERR(shmdt((void *)(uintptr_t)0x100000), EINVAL);                /* nothing there */
}

static void addresses(int id)
{
    char *a = shmat(id, NULL, 0);
    CHECK(a != (void *)-1 && (uintptr_t)a % PAGE == 0);
    CHECK_ERR(shmat(id, a + 1, 0), EINVAL);                     /* unaligned, no SHM_RND */
    CHECK_ERR(shmat(id, a, 0), EINVAL);                         /* in use, no SHM_REMAP */
    CHECK_ERR(shmat(id, NULL, SHM_REMAP), EINVAL);
    char *b = shmat(id, a + 1, SHM_RND | SHM_REMAP);            /* rounded down, replaces */
    CHECK(b == a);
    CHECK(nattch(id) == 1);
    /* munmap of the middle leaves two fragments: two attachments, as Linux counts. */
    CHECK(munmap(a + PAGE, PAGE) == 0);
    CHECK(nattch(id) == 2);
    CHECK(shmdt(a) == 0);                                       /* both fragments go */
    CHECK(nattch(id) == 0);
    CHECK_ERR(shmdt(a), EINVAL);
    /* mprotect of part of an attachment splits it too; shmdt still takes it whole. */
    a = shmat(id, NULL, 0);
    CHECK(a != (void *)-1);
    CHECK(mprotect(a, PAGE, PROT_READ) == 0);
    CHECK(nattch(id) == 2);
    CHECK(shmdt(a) == 0 && nattch(id) == 0);
}

static void readonly(int id)
{
    char *ro = shmat(id, NULL, SHM_RDONLY);
    CHECK(ro != (void *)-1);
    CHECK(ro[0] == 'P');                                         /* written by the child */
    CHECK_ERR(mprotect(ro, PAGE, PROT_READ | PROT_WRITE), EACCES);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        ro[0] = 'x';                                             /* SIGSEGV */
        _exit(0);
    }
    int st = wait_child(pid);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
    CHECK(shmdt(ro) == 0);
}

static void other_user(int id)
{
    if (getuid() != 0)
        return;                     /* needs root to become another user, here and inside */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        CHECK(setgroups(0, NULL) == 0 && setgid(65534) == 0 && setuid(65534) == 0);
        struct shmid_ds ds;
        CHECK_ERR(shmat(id, NULL, 0), EACCES);                   /* 0640, not ours */
        CHECK_ERR(shmat(id, NULL, SHM_RDONLY), EACCES);
        CHECK_ERR(shmctl(id, IPC_STAT, &ds), EACCES);
        CHECK(shmctl(id, SHM_STAT_ANY, &ds) >= 0);               /* no permission needed */
        CHECK_ERR(shmctl(id, IPC_RMID, NULL), EPERM);
        CHECK_ERR(shmctl(id, IPC_SET, &ds), EPERM);
        _exit(0);
    }
    int st = wait_child(pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "nattch") == 0) {
        /* Exec'd by a child that had the segment attached: exec dropped its copy. */
        CHECK(nattch(atoi(argv[2])) == 1);
        return 0;
    }
    limits();

    key_t key = 0x5e6d0000 + (getpid() & 0xffff);
    size_t size = 3 * PAGE + 100;
    int id = shmget(key, size, IPC_CREAT | IPC_EXCL | 0640);
    CHECK(id >= 0);
    CHECK(shmget(key, size, 0) == id);
    CHECK(shmget(key, 10, 0640) == id);                         /* smaller is fine */
    CHECK_ERR(shmget(key, size + PAGE, 0), EINVAL);             /* larger is not */
    CHECK_ERR(shmget(key, size, IPC_CREAT | IPC_EXCL | 0600), EEXIST);
    CHECK_ERR(shmget(key + 0x10000, size, 0600), ENOENT);
    int priv = shmget(IPC_PRIVATE, PAGE, 0600);
    CHECK(priv >= 0 && priv != id);

    struct shmid_ds ds;
    CHECK(shmctl(id, IPC_STAT, &ds) == 0);
    CHECK(ds.shm_segsz == size && ds.shm_nattch == 0 && ds.shm_cpid == getpid());
    CHECK(ds.shm_lpid == 0 && ds.shm_atime == 0 && ds.shm_dtime == 0 && ds.shm_ctime != 0);
    CHECK(ds.shm_perm.__key == key && (ds.shm_perm.mode & 0777) == 0640);
    CHECK(in_proc(id, key));

    /* SHM_STAT takes an index and returns the id. */
    int maxidx = shmctl(0, SHM_INFO, &ds);
    CHECK(maxidx >= 0);
    int seen = 0;
    for (int i = 0; i <= maxidx; i++)
        if (shmctl(i, SHM_STAT, &ds) == id)
            seen = 1;
    CHECK(seen);

    addresses(id);

    /* Shared with a forked child, which inherits the attachment. */
    char *p = shmat(id, NULL, 0);
    CHECK(p != (void *)-1);
    CHECK(p[0] == 0 && p[size - 1] == 0);                       /* zero-filled */
    CHECK(shmctl(id, IPC_STAT, &ds) == 0);
    CHECK(ds.shm_nattch == 1 && ds.shm_lpid == getpid() && ds.shm_atime != 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        CHECK(nattch(id) == 2);
        strcpy(p, "Purple");
        p[size - 1] = 'z';
        char *q = shmat(id, NULL, 0);                           /* a second view */
        CHECK(q != (void *)-1 && q != p && strcmp(q, "Purple") == 0);
        CHECK(nattch(id) == 3);
        _exit(0);                                               /* exit detaches both */
    }
    CHECK(WIFEXITED(wait_child(pid)));
    CHECK(strcmp(p, "Purple") == 0 && p[size - 1] == 'z');
    CHECK(nattch(id) == 1);

    /* exec drops the attachments a child inherited. */
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        char ids[16];
        snprintf(ids, sizeof ids, "%d", id);
        execl("/proc/self/exe", argv[0], "nattch", ids, (char *)NULL);
        _exit(127);
    }
    int st = wait_child(pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);

    readonly(id);
    other_user(id);

    /* IPC_SET changes the mode's permission bits only. */
    CHECK(shmctl(id, IPC_STAT, &ds) == 0);
    ds.shm_perm.mode = 0777 | SHM_DEST;
    CHECK(shmctl(id, IPC_SET, &ds) == 0);
    CHECK(shmctl(id, IPC_STAT, &ds) == 0 && ds.shm_perm.mode == 0777);
    CHECK(shmctl(id, SHM_LOCK, NULL) == 0);
    CHECK(shmctl(id, IPC_STAT, &ds) == 0 && (ds.shm_perm.mode & SHM_LOCKED));
    CHECK(shmctl(id, SHM_UNLOCK, NULL) == 0);
    CHECK(shmctl(id, IPC_STAT, &ds) == 0 && ds.shm_perm.mode == 0777);

    /* Removal while attached: marked, key gone, still usable by id, destroyed at the
     * last detach. */
    CHECK(shmctl(id, IPC_RMID, NULL) == 0);
    CHECK(shmctl(id, IPC_RMID, NULL) == 0);                     /* again: still there */
    CHECK(shmctl(id, IPC_STAT, &ds) == 0);
    CHECK((ds.shm_perm.mode & SHM_DEST) && ds.shm_perm.__key == IPC_PRIVATE);
    CHECK_ERR(shmget(key, size, 0), ENOENT);
    int again = shmget(key, PAGE, IPC_CREAT | IPC_EXCL | 0600); /* the key is free */
    CHECK(again >= 0 && again != id);
    char *p2 = shmat(id, NULL, 0);                              /* attach by id: allowed */
    CHECK(p2 != (void *)-1 && strcmp(p2, "Purple") == 0);
    CHECK(nattch(id) == 2);
    CHECK(shmdt(p) == 0 && nattch(id) == 1);
    CHECK(shmdt(p2) == 0);
    CHECK_ERR(shmctl(id, IPC_STAT, &ds), EINVAL);               /* destroyed */
    CHECK_ERR(shmat(id, NULL, 0), EINVAL);

    /* Removal without attachments is at once. */
    CHECK(shmctl(again, IPC_RMID, NULL) == 0);
    CHECK_ERR(shmctl(again, IPC_STAT, &ds), EINVAL);
    CHECK(shmctl(priv, IPC_RMID, NULL) == 0);
    ok();
    return 0;
}
