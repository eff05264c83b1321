/* Writes through stdout and stderr as a test of how they share the caller's
 * open file descriptions.  Not self-checking: the harness runs it natively and
 * in the sandbox with stdout/stderr on files and compares the files byte for
 * byte.
 *
 *   stdio_share interleave   20 rounds of small write(2)s alternating fd 1 and 2
 *   stdio_share lseek        writes, seeks stdout back, overwrites, reports offsets
 *   stdio_share append       sets O_APPEND on stdout with F_SETFL, then writes
 *   stdio_share lines N TAG  N lines "TAG i\n", one write(2) each
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void say(int fd, const char *s)
{
    size_t n = strlen(s);
    if (write(fd, s, n) != (ssize_t)n)
        exit(2);
}

int main(int argc, char **argv)
{
    char buf[128];
    if (argc < 2)
        return 2;
    if (strcmp(argv[1], "interleave") == 0) {
        for (int i = 0; i < 20; i++) {
            snprintf(buf, sizeof buf, "out %d\n", i);
            say(1, buf);
            snprintf(buf, sizeof buf, "err %d\n", i);
            say(2, buf);
        }
        return 0;
    }
    if (strcmp(argv[1], "lseek") == 0) {
        off_t start = lseek(1, 0, SEEK_CUR);
        say(1, "0123456789\n");
        off_t after = lseek(1, 0, SEEK_CUR);
        off_t back = lseek(1, start + 3, SEEK_SET);
        say(1, "abc");
        off_t cur = lseek(2, 0, SEEK_CUR);     /* the same description when 2>&1 */
        off_t end = lseek(1, 0, SEEK_END);
        snprintf(buf, sizeof buf, "\nstart=%ld after=%ld back=%ld cur2=%ld end=%ld\n",
                 (long)start, (long)after, (long)back, (long)cur, (long)end);
        say(1, buf);
        return 0;
    }
    if (strcmp(argv[1], "append") == 0) {
        int fl = fcntl(1, F_GETFL);
        snprintf(buf, sizeof buf, "append-before=%d\n", !!(fl & O_APPEND));
        say(2, buf);
        lseek(1, 0, SEEK_SET);
        if (fcntl(1, F_SETFL, fl | O_APPEND) != 0)
            return 3;
        fl = fcntl(2, F_GETFL);    /* shared with fd 1 when 2>&1 */
        snprintf(buf, sizeof buf, "appended, fd2-append=%d\n", !!(fl & O_APPEND));
        say(1, buf);
        return 0;
    }
    if (strcmp(argv[1], "lines") == 0 && argc == 4) {
        int n = atoi(argv[2]);
        for (int i = 0; i < n; i++) {
            snprintf(buf, sizeof buf, "%s %d\n", argv[3], i);
            say(1, buf);
        }
        return 0;
    }
    return 2;
}
