/* A small program for gdb inside the sandbox (tests/syscalls/test_ptrace_tools.py):
 * with an argument it crashes three calls deep, so a backtrace names them;
 * without, it calls f(), where a breakpoint goes, and exits 0. */
#include <stdio.h>

static volatile int *null_pointer;

int __attribute__((noinline)) crash_here(int x)
{
    *null_pointer = x;          /* SIGSEGV */
    return x;
}

int __attribute__((noinline)) middle_function(int x)
{
    return crash_here(x + 1) + 1;
}

int __attribute__((noinline)) f(int x)
{
    return x * 2;
}

int main(int argc, char **argv)
{
    (void)argv;
    if (argc > 1)
        return middle_function(argc);
    printf("f=%d\n", f(21));
    return 0;
}
