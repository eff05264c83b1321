/* alloc MIB: allocates and touches MIB mebibytes, 1 MiB at a time, then prints "done".
 * Used by tests/api to hit a sandbox's memory limit (the cgroup OOM killer ends it). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    long mib = argc > 1 ? atol(argv[1]) : 64;
    for (long i = 0; i < mib; i++) {
        char *p = malloc(1 << 20);
        if (p == NULL) {
            printf("malloc failed after %ld MiB\n", i);
            return 3;
        }
        memset(p, (int)i | 1, 1 << 20);
    }
    printf("done\n");
    return 0;
}
