/* Writing the sandbox network's sysctls through /proc/sys as root: the new
 * ip_local_port_range is what ephemeral ports come from, bad values are
 * EINVAL as Linux's proc_dointvec_minmax and ipv4_local_port_range make them,
 * and a non-root writer cannot open the files.  Prints one line per probe.
 *
 * Sandbox only: natively it would change the host's sysctls, so it refuses
 * to run unless the kernel is pyvisor's. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include "check.h"

static const char *put(const char *name, const char *value)
{
    static char buf[64];
    char path[128];
    snprintf(path, sizeof path, "/proc/sys/net/%s", name);
    int fd = open(path, O_WRONLY | O_TRUNC);
    if (fd < 0) {
        snprintf(buf, sizeof buf, "open %s", strerrorname_np(errno));
        return buf;
    }
    ssize_t n = write(fd, value, strlen(value));
    snprintf(buf, sizeof buf, "%s", n < 0 ? strerrorname_np(errno) : "ok");
    close(fd);
    return buf;
}

static const char *get(const char *name)
{
    static char buf[64];
    char path[128];
    snprintf(path, sizeof path, "/proc/sys/net/%s", name);
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    ssize_t n = read(fd, buf, sizeof buf - 1);
    CHECK(n > 0);
    buf[n - 1] = 0;                     /* drop the newline */
    for (char *p = buf; *p; p++)
        if (*p == '\t')
            *p = ' ';
    close(fd);
    return buf;
}

static int bind_any(int type)
{
    int fd = socket(AF_INET, type, 0);
    CHECK(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        printf("bind %s: %s\n", type == SOCK_DGRAM ? "udp" : "tcp", strerrorname_np(errno));
        close(fd);
        return -1;
    }
    socklen_t len = sizeof sa;
    CHECK(getsockname(fd, (struct sockaddr *)&sa, &len) == 0);
    int port = ntohs(sa.sin_port);
    printf("bind %s: port in range %s\n", type == SOCK_DGRAM ? "udp" : "tcp",
           port >= 40000 && port <= 40001 ? "yes" : "no");
    return fd;
}

int main(void)
{
    char rel[64] = {0};
    int rfd = open("/proc/sys/kernel/osrelease", O_RDONLY);
    CHECK(rfd >= 0 && read(rfd, rel, sizeof rel - 1) > 0);
    if (!strstr(rel, "pyvisor")) {
        fprintf(stderr, "refusing to change the sysctls of a real kernel\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IONBF, 0);
    const char *range = "ipv4/ip_local_port_range";
    printf("default: %s\n", get(range));
    printf("write 40000 40001: %s\n", put(range, "40000 40001"));
    printf("now: %s\n", get(range));
    int a = bind_any(SOCK_DGRAM), b = bind_any(SOCK_DGRAM);
    bind_any(SOCK_DGRAM);                        /* the range is used up */
    close(a);
    close(b);
    close(bind_any(SOCK_STREAM));
    printf("write 500 40001: %s\n", put(range, "500 40001"));
    printf("write 40001 40000: %s\n", put(range, "40001 40000"));
    printf("write 70000 70001: %s\n", put(range, "70000 70001"));
    printf("write junk: %s\n", put(range, "junk"));
    printf("still: %s\n", get(range));
    const char *start = "ipv4/ip_unprivileged_port_start";
    printf("unprivileged start 50000: %s\n", put(start, "50000"));
    printf("unprivileged start 80: %s", put(start, "80"));
    printf(" now %s\n", get(start));
    printf("somaxconn 77: %s", put("core/somaxconn", "77"));
    printf(" now %s\n", get("core/somaxconn"));
    printf("wmem_max: %s\n", put("core/wmem_max", "1"));
    /* What the stack does, shown read-only. */
    printf("ip_forward %s", get("ipv4/ip_forward"));
    printf(" tcp_sack %s", get("ipv4/tcp_sack"));
    printf(" write: %s\n", put("ipv4/ip_forward", "1"));
    printf("ipv6: auto_flowlabels %s", get("ipv6/auto_flowlabels"));
    printf(" bindv6only %s", get("ipv6/bindv6only"));
    printf(" ip_nonlocal_bind %s", get("ipv6/ip_nonlocal_bind"));
    printf(" ip6frag_time %s\n", get("ipv6/ip6frag_time"));

    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        CHECK(setgid(1000) == 0 && setuid(1000) == 0);
        printf("as uid 1000: %s\n", put(range, "40000 40005"));
        _exit(0);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    printf("restore: %s\n", put(range, "32768 60999"));
    printf("after: %s\n", get(range));
    ok();
    return 0;
}
