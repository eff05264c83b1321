/* The mqueue filesystem (mounted at /dev/mqueue by the OCI spec): queues appear as
 * files; read gives the status line; open(O_CREAT) makes a queue with the default
 * attributes; unlink removes one.  Prints what it sees (compared between runtimes). */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <mqueue.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int main(void)
{
    struct mq_attr attr = { 0 };
    attr.mq_maxmsg = 4;
    attr.mq_msgsize = 32;
    mqd_t q = mq_open("/pvq", O_RDWR | O_CREAT, 0640, &attr);
    if (q < 0 || mq_send(q, "hello", 5, 1) != 0)
        return 2;
    DIR *d = opendir("/dev/mqueue");
    if (!d)
        return 3;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            printf("entry %s type %d\n", e->d_name, e->d_type);
    closedir(d);
    struct stat st;
    if (stat("/dev/mqueue/pvq", &st) != 0)
        return 4;
    printf("mode %o\n", st.st_mode);
    char line[128] = { 0 };
    int fd = open("/dev/mqueue/pvq", O_RDONLY);
    if (fd < 0 || read(fd, line, sizeof line - 1) <= 0)
        return 5;
    printf("%s", line);
    close(fd);
    printf("unlink %d\n", unlink("/dev/mqueue/pvq"));
    printf("reopen %d\n", mq_open("/pvq", O_RDWR) < 0 ? -1 : 0);
    fd = open("/dev/mqueue/fresh", O_RDWR | O_CREAT, 0600);
    mqd_t f = mq_open("/fresh", O_RDWR);
    if (fd < 0 || f < 0 || mq_getattr(f, &attr) != 0)
        return 6;
    printf("fresh maxmsg %ld msgsize %ld\n", attr.mq_maxmsg, attr.mq_msgsize);
    printf("mkdir %d\n", mkdir("/dev/mqueue/dir", 0700));
    printf("unlink fresh %d\n", mq_unlink("/fresh"));
    return 0;
}
