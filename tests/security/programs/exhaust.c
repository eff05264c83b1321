/* Resource exhaustion, bounded so that every attack ends by itself.
 *
 * Usage: exhaust ATTACK ARGS...
 *   forkbomb MAX SECONDS  every process forks (children too) until MAX forks
 *                         were made in all, SECONDS passed, or fork fails;
 *                         then each waits for its children.
 *   membomb CAP_MB        a child maps and touches 64 MiB chunks until mmap
 *                         fails, it is killed, or CAP_MB were touched.
 *   fdbomb CAP            open("/dev/null") until EMFILE (at most CAP), then
 *                         raise RLIMIT_NOFILE to its hard limit and go on.
 *   diskfill PATH CAP_MB  write 1 MiB blocks to PATH until an error or CAP_MB.
 * The last line is `alive=1` when the program (and so its kernel) survived.
 */
#include "sec.h"
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/resource.h>

struct shared {
    atomic_long forks;
    atomic_long fork_errors;
    atomic_int first_errno;
    atomic_long touched_mb;
    atomic_int mmap_errno;
    atomic_long live;
    atomic_long max_live;
};

static struct shared *sh;

static struct shared *shared_page(void)
{
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        die("mmap shared");
    return p;
}

static void forkbomb(long max, double secs)
{
    double deadline = now_mono() + secs;
    int depth = 0;
    for (;;) {
        if (atomic_fetch_add(&sh->forks, 1) >= max || now_mono() > deadline) {
            atomic_fetch_sub(&sh->forks, 1);
            break;
        }
        pid_t pid = fork();
        if (pid == 0) {
            depth++;
            long live = atomic_fetch_add(&sh->live, 1) + 2;   /* + the first one */
            long m = atomic_load(&sh->max_live);
            while (live > m && !atomic_compare_exchange_weak(&sh->max_live, &m, live))
                ;
            continue;            /* the child is a bomb too */
        }
        if (pid < 0) {
            atomic_fetch_sub(&sh->forks, 1);
            int zero = 0;
            atomic_compare_exchange_strong(&sh->first_errno, &zero, errno);
            if (atomic_fetch_add(&sh->fork_errors, 1) > 10000)
                break;
            usleep(1000);
        }
    }
    while (wait(NULL) > 0 || errno == EINTR)
        ;
    if (depth > 0) {
        atomic_fetch_sub(&sh->live, 1);
        _exit(0);
    }
}

static void membomb(long cap_mb)
{
    const size_t chunk = 64UL << 20;
    for (;;) {
        if (atomic_load(&sh->touched_mb) >= cap_mb)
            _exit(0);
        char *m = mmap(NULL, chunk, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) {
            atomic_store(&sh->mmap_errno, errno);
            _exit(0);
        }
        for (size_t i = 0; i < chunk; i += 4096) {
            m[i] = 1;
            if ((i & ((1 << 20) - 1)) == 0 && i)
                atomic_fetch_add(&sh->touched_mb, 1);
        }
        atomic_fetch_add(&sh->touched_mb, 1);
    }
}

int main(int argc, char **argv)
{
    USAGE(argc, 2, "exhaust ATTACK ARGS...");
    const char *a = argv[1];
    sh = shared_page();
    double t0 = now_mono();

    if (!strcmp(a, "forkbomb")) {
        USAGE(argc, 4, "exhaust forkbomb MAX SECONDS");
        forkbomb(atol(argv[2]), atof(argv[3]));
        kv("forks", "%ld", atomic_load(&sh->forks));
        kv("fork_errors", "%ld", atomic_load(&sh->fork_errors));
        kv("first_errno", "%s", ename(atomic_load(&sh->first_errno)));
        kv("max_live", "%ld", atomic_load(&sh->max_live));
    } else if (!strcmp(a, "membomb")) {
        USAGE(argc, 3, "exhaust membomb CAP_MB");
        pid_t pid = fork();
        if (pid == 0)
            membomb(atol(argv[2]));
        int status;
        waitpid(pid, &status, 0);
        status_kv("bomb", status);
        kv("touched_mb", "%ld", atomic_load(&sh->touched_mb));
        kv("mmap_errno", "%s", ename(atomic_load(&sh->mmap_errno)));
        /* Memory is back: a fresh 64 MiB can be mapped and touched. */
        char *m = mmap(NULL, 64 << 20, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m != MAP_FAILED)
            memset(m, 1, 64 << 20);
        kv("after", "%s", m == MAP_FAILED ? ename(errno) : "ok");
    } else if (!strcmp(a, "fdbomb")) {
        USAGE(argc, 3, "exhaust fdbomb CAP");
        long cap = atol(argv[2]);
        struct rlimit rl;
        getrlimit(RLIMIT_NOFILE, &rl);
        kv("soft", "%ld", (long)rl.rlim_cur);
        kv("hard", "%ld", (long)rl.rlim_max);
        long n = 0;
        int e = 0;
        while (n < cap) {
            if (open("/dev/null", O_RDONLY) < 0) {
                e = errno;
                break;
            }
            n++;
        }
        kv("opened", "%ld", n);
        kv("open_errno", "%s", ename(e));
        rl.rlim_cur = rl.rlim_max;
        res("raise_limit", setrlimit(RLIMIT_NOFILE, &rl));
        e = 0;
        double deadline = now_mono() + 20;
        while (n < cap && now_mono() < deadline) {
            if (open("/dev/null", O_RDONLY) < 0) {
                e = errno;
                break;
            }
            n++;
        }
        kv("opened_raised", "%ld", n);
        kv("open_raised_errno", "%s", ename(e));
        /* Still usable afterwards. */
        close(3);
        int fd = open("/dev/null", O_RDONLY);
        kv("reopen", "%d", fd);
        res("close_range", syscall(SYS_close_range, 3, ~0U, 0));
        fd = open("/dev/null", O_RDONLY);
        kv("after_close", "%d", fd);
    } else if (!strcmp(a, "diskfill")) {
        USAGE(argc, 4, "exhaust diskfill PATH CAP_MB");
        long cap = atol(argv[3]);
        static char block[1 << 20];
        memset(block, 'F', sizeof block);
        int fd = open(argv[2], O_CREAT | O_WRONLY | O_TRUNC, 0644);
        if (fd < 0)
            die("open fill file");
        long mb = 0;
        int e = 0;
        while (mb < cap) {
            ssize_t w = write(fd, block, sizeof block);
            if (w != (ssize_t)sizeof block) {
                e = w < 0 ? errno : ENOSPC;
                break;
            }
            mb++;
        }
        kv("written_mb", "%ld", mb);
        kv("write_errno", "%s", ename(e));
        res("fsync", fsync(fd));
        close(fd);
        res("unlink", unlink(argv[2]));
        /* The space is back. */
        fd = open(argv[2], O_CREAT | O_WRONLY | O_TRUNC, 0644);
        kv("after", "%zd", fd >= 0 ? write(fd, block, sizeof block) : -1L);
        unlink(argv[2]);
    } else {
        fprintf(stderr, "unknown attack %s\n", a);
        return 2;
    }
    kv("seconds", "%.2f", now_mono() - t0);
    kv("alive", "%d", 1);
    return 0;
}
