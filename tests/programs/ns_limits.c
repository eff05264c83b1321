/* Namespaces cannot multiply the Sentry's memory: made in a loop and kept alive by
 * open nsfs files, they stop with ENOSPC at the sandbox's bound, and the
 * process goes on.  Prints where it stopped.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(void)
{
    int i;
    for (i = 0; i < 100000; i++) {
        if (unshare(CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC) != 0)
            break;
        if (open("/proc/self/ns/net", O_RDONLY) < 0 || open("/proc/self/ns/mnt", O_RDONLY) < 0)
            break;
    }
    printf("stopped after %d: %s\n", i, strerrorname_np(errno));
    printf("still working: %d\n", unshare(CLONE_NEWUTS) == 0);
    return 0;
}
