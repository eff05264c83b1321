/* The ELF loader at the edges (Linux: fs/binfmt_elf.c), after gVisor's
 * exec_binary tests: hand-made executables, each exec'd by a child; prints what
 * happened (execve's errno, the exit or the signal) and, for images that stop
 * themselves, the mappings of the image (range, permissions, offset, file or
 * anonymous).  Errors before exec's point of no return come back from execve
 * (ENOEXEC, ELIBBAD, ENOENT, EACCES, ELOOP); errors in mapping the segments kill
 * the new image with SIGSEGV.  Run natively and in the sandbox: the output must
 * be the same.  Usage: elf_load DIR (a scratch directory). */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PG 4096

/* kill(getpid(), SIGSTOP); exit(0) */
static const unsigned char stop_code[] = {
    0xb8, 0x27, 0, 0, 0, 0x0f, 0x05,          /* mov $39,%eax; syscall (getpid) */
    0x48, 0x89, 0xc7,                         /* mov %rax,%rdi */
    0xbe, 0x13, 0, 0, 0,                      /* mov $19,%esi */
    0xb8, 0x3e, 0, 0, 0, 0x0f, 0x05,          /* mov $62,%eax; syscall (kill) */
    0xb8, 0x3c, 0, 0, 0, 0x31, 0xff, 0x0f, 0x05,  /* exit(0) */
};

struct elf {
    Elf64_Ehdr h;
    Elf64_Phdr ph[8];
    int n;
    unsigned char data[3 * PG];
    size_t len;
};

static const char *dir;
static int counter;

/* The standard image: PT_GNU_STACK and one r-x PT_LOAD at 0x40000 holding the code. */
static void standard(struct elf *e)
{
    memset(e, 0, sizeof *e);
    memcpy(e->h.e_ident, ELFMAG, SELFMAG);
    e->h.e_ident[EI_CLASS] = ELFCLASS64;
    e->h.e_ident[EI_DATA] = ELFDATA2LSB;
    e->h.e_ident[EI_VERSION] = EV_CURRENT;
    e->h.e_type = ET_EXEC;
    e->h.e_machine = EM_X86_64;
    e->h.e_version = EV_CURRENT;
    e->h.e_phoff = sizeof(Elf64_Ehdr);
    e->h.e_phentsize = sizeof(Elf64_Phdr);
    e->ph[0].p_type = PT_GNU_STACK;
    e->ph[0].p_flags = PF_R | PF_W;
    e->ph[1].p_type = PT_LOAD;
    e->ph[1].p_flags = PF_R | PF_X;
    e->ph[1].p_vaddr = 0x40000;
    e->ph[1].p_filesz = e->ph[1].p_memsz = sizeof stop_code;
    e->n = 2;
    e->h.e_entry = 0x40000;
    memcpy(e->data, stop_code, sizeof stop_code);
    e->len = sizeof stop_code;
}

/* As gVisor's UpdateOffsets: the headers come first, so data offsets, vaddrs and
 * the entry point move up by their size. */
static void update_offsets(struct elf *e)
{
    size_t off = sizeof(Elf64_Ehdr) + e->n * sizeof(Elf64_Phdr);
    e->h.e_entry += off;
    e->h.e_phnum = e->n;
    for (int i = 0; i < e->n; i++) {
        e->ph[i].p_offset += off;
        e->ph[i].p_vaddr += off;
    }
}

static void add_interp(struct elf *e, const char *s, size_t n)
{
    memmove(&e->ph[1], &e->ph[0], e->n * sizeof(Elf64_Phdr));
    memset(&e->ph[0], 0, sizeof(Elf64_Phdr));
    e->ph[0].p_type = PT_INTERP;
    e->ph[0].p_offset = e->len;
    e->ph[0].p_filesz = e->ph[0].p_memsz = n;
    memcpy(e->data + e->len, s, n);
    e->len += n;
    e->n++;
}

static char *write_file(const void *buf, size_t n)
{
    char *path;
    if (asprintf(&path, "%s/elf-%d", dir, counter++) < 0)
        exit(2);
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0755);
    if (fd < 0 || fchmod(fd, 0755) != 0 || write(fd, buf, n) != (ssize_t)n || close(fd) != 0) {
        perror(path);
        exit(2);
    }
    return path;
}

static char *write_elf(const struct elf *e)
{
    static unsigned char buf[sizeof(Elf64_Ehdr) + 8 * sizeof(Elf64_Phdr) + 3 * PG];
    size_t n = 0;
    memcpy(buf, &e->h, sizeof e->h);
    n += sizeof e->h;
    memcpy(buf + n, e->ph, e->n * sizeof(Elf64_Phdr));
    n += e->n * sizeof(Elf64_Phdr);
    memcpy(buf + n, e->data, e->len);
    n += e->len;
    return write_file(buf, n);
}

/* Prints the image's mappings below 0x1000000 (where these images live), and any
 * of the interpreter's mappings elsewhere. */
static void print_maps(pid_t pid, const char *interp)
{
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%d/maps", pid);
    FILE *f = fopen(path, "r");
    if (!f) {
        printf("  maps: errno %d\n", errno);
        return;
    }
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi, off;
        char perms[8];
        int name_at = 0;
        if (sscanf(line, "%lx-%lx %7s %lx %*s %*s %n", &lo, &hi, perms, &off, &name_at) < 4)
            continue;
        char *name = line + name_at;
        name[strcspn(name, "\n")] = 0;
        int is_file = strncmp(name, dir, strlen(dir)) == 0;
        int is_interp = interp && strcmp(name, interp) == 0;
        if (lo >= 0x1000000 && !is_interp)
            continue;
        if (is_interp)
            printf("  interp +%lx %s %lx\n", hi - lo, perms, off);
        else
            printf("  %lx-%lx %s %lx %s\n", lo, hi, perms, off,
                   is_file ? "file" : *name ? name : "anon");
    }
    fclose(f);
}

static void run(const char *what, const char *path, const char *interp)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        exit(2);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        char *argv[] = {(char *)path, NULL}, *envp[] = {NULL};
        execve(path, argv, envp);
        int e = errno;
        (void)!write(p[1], &e, sizeof e);
        _exit(127);
    }
    close(p[1]);
    int e = 0;
    ssize_t got = read(p[0], &e, sizeof e);
    close(p[0]);
    int st;
    if (waitpid(c, &st, WUNTRACED) != c)
        exit(2);
    printf("%s: ", what);
    if (got == sizeof e) {
        printf("execve: %s\n", strerrorname_np(e));
    } else if (WIFSTOPPED(st)) {
        printf("stopped\n");
        print_maps(c, interp);
        kill(c, SIGKILL);
        waitpid(c, &st, 0);
    } else if (WIFSIGNALED(st)) {
        printf("signal %s\n", sigabbrev_np(WTERMSIG(st)));
    } else {
        printf("exit %d\n", WEXITSTATUS(st));
    }
}

/* A data segment at 0x41000: file bytes, then bss to just below 0x43000. */
static void data_segment(struct elf *e, int flags)
{
    standard(e);
    e->len = PG + PG / 2;
    e->ph[2].p_type = PT_LOAD;
    e->ph[2].p_flags = flags;
    e->ph[2].p_offset = PG;
    e->ph[2].p_vaddr = 0x41000;
    e->ph[2].p_filesz = PG / 2;
    e->ph[2].p_memsz = 2 * PG - PG / 2;
    e->n = 3;
    update_offsets(e);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: elf_load DIR\n");
        return 2;
    }
    dir = argv[1];
    struct elf e;

    standard(&e);
    update_offsets(&e);
    char *std = write_elf(&e);
    run("standard", std, NULL);

    standard(&e);
    e.len = 0;
    update_offsets(&e);
    run("missing text", write_elf(&e), NULL);

    data_segment(&e, PF_R | PF_W);
    run("data+bss", write_elf(&e), NULL);
    data_segment(&e, PF_R | PF_W | PF_X);
    run("data+bss rwx", write_elf(&e), NULL);
    data_segment(&e, PF_R);
    run("data+bss read-only", write_elf(&e), NULL);

    /* filesz 0: anonymous only, its (unaligned) offset does not matter */
    standard(&e);
    e.ph[2].p_type = PT_LOAD;
    e.ph[2].p_flags = PF_R;
    e.ph[2].p_vaddr = 0x41000;
    e.ph[2].p_memsz = PG;
    e.n = 3;
    update_offsets(&e);
    e.ph[2].p_vaddr = 0x41000;
    run("anon-only segment", write_elf(&e), NULL);

    /* p_offset not congruent to p_vaddr: past the point of no return */
    standard(&e);
    e.ph[1].p_offset += 1;
    update_offsets(&e);
    run("unaligned offset", write_elf(&e), NULL);

    /* a PIE whose first segment ends near 2^64 */
    standard(&e);
    e.h.e_type = ET_DYN;
    e.ph[1].p_vaddr = 0xfffffffffffff000UL - e.ph[1].p_memsz;
    update_offsets(&e);
    run("pie overflow", write_elf(&e), NULL);

    /* filesz > memsz */
    standard(&e);
    e.ph[1].p_memsz = 1;
    update_offsets(&e);
    run("filesz > memsz", write_elf(&e), NULL);

    /* no PT_LOAD at all */
    standard(&e);
    e.ph[1].p_type = PT_NOTE;
    update_offsets(&e);
    run("no PT_LOAD", write_elf(&e), NULL);

    /* header errors */
    standard(&e);
    e.h.e_machine = EM_PPC64;
    update_offsets(&e);
    run("wrong machine", write_elf(&e), NULL);
    standard(&e);
    e.h.e_type = ET_CORE;
    update_offsets(&e);
    run("ET_CORE", write_elf(&e), NULL);
    standard(&e);
    update_offsets(&e);
    e.h.e_phoff = 0x100000;
    run("phdrs beyond the file", write_elf(&e), NULL);
    standard(&e);
    update_offsets(&e);
    e.h.e_phentsize = 40;
    run("bad phentsize", write_elf(&e), NULL);

    /* interpreters */
    struct elf ie;
    standard(&ie);
    ie.h.e_type = ET_DYN;
    ie.h.e_entry = 0;
    update_offsets(&ie);
    {
        uint64_t off = ie.ph[1].p_offset;
        ie.ph[1].p_flags = PF_R | PF_W | PF_X;
        ie.ph[1].p_offset = 0;
        ie.ph[1].p_vaddr = 0;
        ie.ph[1].p_filesz += off;
        ie.ph[1].p_memsz += off;
        ie.h.e_entry = off;
    }
    char *interp = write_elf(&ie);
    standard(&e);
    add_interp(&e, interp, strlen(interp) + 1);
    update_offsets(&e);
    run("interpreter", write_elf(&e), interp);

    ie.h.e_machine = EM_PPC64;
    char *wrong = write_elf(&ie);
    standard(&e);
    add_interp(&e, wrong, strlen(wrong) + 1);
    update_offsets(&e);
    run("interpreter of another machine", write_elf(&e), NULL);

    char bad[128] = "\x7f" "ELF but not really, just some bytes";
    char *junk = write_file(bad, 36);          /* shorter than an ELF header */
    standard(&e);
    add_interp(&e, junk, strlen(junk) + 1);
    update_offsets(&e);
    run("interpreter shorter than a header", write_elf(&e), NULL);
    junk = write_file(bad, sizeof bad);
    standard(&e);
    add_interp(&e, junk, strlen(junk) + 1);
    update_offsets(&e);
    run("interpreter not ELF", write_elf(&e), NULL);

    /* a static interpreter whose segment lands over the binary's; text after the
     * path's NUL is ignored */
    struct elf se;
    standard(&se);
    se.ph[1].p_flags = PF_R | PF_W | PF_X;
    update_offsets(&se);
    char *stat = write_elf(&se);
    char seg[512];
    size_t sl = strlen(stat);
    memcpy(seg, stat, sl);
    memcpy(seg + sl, "\0b\0", 3);
    standard(&e);
    add_interp(&e, seg, sl + 3);
    update_offsets(&e);
    run("static interpreter, trailing text", write_elf(&e), stat);

    const struct { const char *what; const char *s; size_t n; } paths[] = {
        {"interpreter missing", "/f/b", 5},
        {"interpreter unterminated", "/f/b", 4},
        {"interpreter path empty (1 byte)", "", 1},
        {"interpreter path empty (2 bytes)", "\0", 2},
    };
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        standard(&e);
        add_interp(&e, paths[i].s, paths[i].n);
        update_offsets(&e);
        run(paths[i].what, write_elf(&e), NULL);
    }
    /* an interpreter without execute permission */
    chmod(interp, 0644);
    standard(&e);
    add_interp(&e, interp, strlen(interp) + 1);
    update_offsets(&e);
    run("interpreter not executable", write_elf(&e), NULL);

    /* #! nesting: five levels run, six are ELOOP */
    char *prev = std;
    for (int i = 1; i <= 6; i++) {
        char text[600];
        int n = snprintf(text, sizeof text, "#!%s\n", prev);
        char *s = write_file(text, n);
        char what[32];
        snprintf(what, sizeof what, "script depth %d", i);
        if (i >= 5)
            run(what, s, NULL);
        prev = s;
    }
    return 0;
}
