/* Prints getpid().  Under pyvisor the first process is pid 1 of the
 * sandbox's PID namespace. */
#include "check.h"

int main(void)
{
    pid_t pid = getpid();
    CHECK(pid > 0);
    CHECK(getppid() >= 0);
    printf("%d\n", (int)pid);
    return 0;
}
