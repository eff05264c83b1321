/* execve's argv and envp at the edges of mapped memory: many strings spanning pages,
 * a pointer array that ends (or has a pointer straddling) the last bytes of a page
 * followed by an inaccessible one, a string ending on the last byte of a page, and
 * EFAULT for a string or an array that runs into the inaccessible page, or a bad
 * array pointer.  The child (ourselves) checks a checksum of what it received. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include "check.h"

extern char **environ;

static uint64_t checksum(char **v, int n)
{
    uint64_t h = 1469598103934665603ULL;
    for (int i = 0; i < n; i++) {
        for (const unsigned char *p = (const unsigned char *)v[i]; *p; p++)
            h = (h ^ *p) * 1099511628211ULL;
        h = (h ^ 0xFF) * 1099511628211ULL;     /* the string boundary counts */
    }
    return h;
}

/* Runs path with argv/envp in a child; its exit status, or 1000 + errno. */
static int spawn(const char *path, char *const argv[], char *const envp[])
{
    int p[2];
    CHECK(pipe2(p, O_CLOEXEC) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        execve(path, argv, envp);
        int e = errno;
        write(p[1], &e, sizeof e);
        _exit(127);
    }
    close(p[1]);
    int e = 0, status;
    ssize_t n = read(p[0], &e, sizeof e);
    close(p[0]);
    CHECK(waitpid(pid, &status, 0) == pid);
    if (n == sizeof e)
        return 1000 + e;
    CHECK(n == 0);
    CHECK(WIFEXITED(status));
    return WEXITSTATUS(status);
}

int main(int argc, char **argv)
{
    long page = sysconf(_SC_PAGESIZE);
    if (argc > 1 && strcmp(argv[1], "child") == 0) {
        /* child ARGC_EXPECTED ENVC_EXPECTED SUM_ARGV SUM_ENVP ... */
        CHECK(argc >= 6);
        int want_argc = atoi(argv[2]), envc = 0;
        while (environ[envc])
            envc++;
        CHECK(argc == want_argc);
        CHECK(envc == atoi(argv[3]));
        char buf[32];
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)checksum(argv + 6, argc - 6));
        CHECK(strcmp(buf, argv[4]) == 0);
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)checksum(environ, envc));
        CHECK(strcmp(buf, argv[5]) == 0);
        return 42;
    }

    /* 1. Many strings of varied lengths (some longer than a page), packed together. */
    enum { N = 1500 };
    static char *av[N + 8], *ev[N + 2];
    char *pool = malloc(4 << 20);
    CHECK(pool != NULL);
    size_t used = 0;
    for (int i = 0; i < N; i++) {
        size_t len = (size_t)((i * 7919) % 97) + (i % 250 == 0 ? 5000 : 0);
        char *s = pool + used;
        for (size_t j = 0; j < len; j++)
            s[j] = (char)('a' + (i + j) % 26);
        s[len] = 0;
        used += len + 1;
        av[6 + i] = s;
        ev[i] = s + (len > 3 ? 3 : 0);   /* suffixes: pointers into the middle of strings */
    }
    ev[N] = NULL;
    char a2[16], a3[16], a4[32], a5[32];
    snprintf(a2, sizeof a2, "%d", N + 6);
    snprintf(a3, sizeof a3, "%d", N);
    snprintf(a4, sizeof a4, "%llu", (unsigned long long)checksum(av + 6, N));
    snprintf(a5, sizeof a5, "%llu", (unsigned long long)checksum(ev, N));
    av[0] = argv[0]; av[1] = "child"; av[2] = a2; av[3] = a3; av[4] = a4; av[5] = a5;
    av[6 + N] = NULL;
    CHECK(spawn(argv[0], av, ev) == 42);

    /* Two pages, the second inaccessible. */
    char *m = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED);
    CHECK(mprotect(m + page, page, PROT_NONE) == 0);
    char *end = m + page;

    /* 2. An argv array whose NULL is the last 8 bytes of the page, just after its two
     * last strings ("x" and "") placed just before it. */
    char **arr = (char **)(end - 8 * 9);
    char *strs = (char *)arr - 3;          /* "x\0" then "\0" */
    strs[0] = 'x'; strs[1] = 0; strs[2] = 0;
    char *both[2] = {strs, strs + 2};
    char e2[32], e3[32];
    snprintf(e2, sizeof e2, "%llu", (unsigned long long)checksum(both, 2));
    char *empty_env[1] = {NULL};
    snprintf(e3, sizeof e3, "%llu", (unsigned long long)checksum(empty_env, 0));
    arr[0] = argv[0]; arr[1] = "child"; arr[2] = "8"; arr[3] = "0"; arr[4] = e2; arr[5] = e3;
    arr[6] = strs; arr[7] = strs + 2; arr[8] = NULL;
    CHECK((char *)(arr + 9) == end);
    CHECK(spawn(argv[0], arr, empty_env) == 42);

    /* 2b. A string whose NUL is the very last byte of the page. */
    char *last = end - 4;
    memcpy(last, "abc", 4);
    char *lone[1] = {last};
    char e5[32];
    snprintf(e5, sizeof e5, "%llu", (unsigned long long)checksum(lone, 1));
    char *a2v[] = {argv[0], "child", "7", "0", e5, e3, last, NULL};
    CHECK(spawn(argv[0], a2v, empty_env) == 42);

    /* 3. A pointer straddling the page boundary inside the array: in an envp array
     * starting 4 bytes into the previous page of a fresh three-page mapping. */
    char *m3 = mmap(NULL, 3 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(m3 != MAP_FAILED);
    char **env3 = (char **)(m3 + page - 4);
    char *env_strs[3] = {"A=1", "B=22", NULL};
    memcpy(&env3[0], &env_strs[0], sizeof(char *));
    memcpy(&env3[1], &env_strs[1], sizeof(char *));
    memcpy(&env3[2], &env_strs[2], sizeof(char *));
    char e4[32];
    snprintf(e4, sizeof e4, "%llu", (unsigned long long)checksum(env_strs, 2));
    char *a3v[] = {argv[0], "child", "6", "2", e3, e4, NULL};
    CHECK(spawn(argv[0], a3v, env3) == 42);

    /* 4. EFAULT: a string without its NUL before the inaccessible page. */
    memset(end - 16, 'y', 16);
    char *bad_str[] = {argv[0], end - 16, NULL};
    CHECK(spawn(argv[0], bad_str, empty_env) == 1000 + EFAULT);

    /* 5. EFAULT: a pointer array running into the inaccessible page without a NULL. */
    char **no_null = (char **)(end - 16);
    no_null[0] = argv[0];
    no_null[1] = "child";
    CHECK(spawn(argv[0], no_null, empty_env) == 1000 + EFAULT);

    /* 5b. E2BIG: a string longer than MAX_ARG_STRLEN (32 pages). */
    size_t big_len = 200 * 1024;
    char *big = malloc(big_len + 1);
    CHECK(big != NULL);
    memset(big, 'z', big_len);
    big[big_len] = 0;
    char *big_av[] = {argv[0], big, NULL};
    CHECK(spawn(argv[0], big_av, empty_env) == 1000 + E2BIG);
    free(big);

    /* 6. EFAULT: the array pointer itself is bad; a bad string pointer. */
    CHECK(spawn(argv[0], (char **)(end + 8), empty_env) == 1000 + EFAULT);
    char *bad_ptr[] = {argv[0], (char *)1, NULL};
    CHECK(spawn(argv[0], bad_ptr, empty_env) == 1000 + EFAULT);
    ok();
    return 0;
}
