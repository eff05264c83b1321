/* Shared helpers for the self-checking test programs.
 *
 * Each program exits 0 and prints "ok" on success.  On the first failed
 * CHECK it prints file:line, the condition and errno to stderr and exits 1.
 */
#ifndef PYVISOR_CHECK_H
#define PYVISOR_CHECK_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK(cond)                                                         \
    do {                                                                    \
        if (!(cond)) {                                                      \
            int e_ = errno;                                                 \
            fprintf(stderr, "%s:%d: CHECK(%s) failed (errno %d: %s)\n",     \
                    __FILE__, __LINE__, #cond, e_, strerror(e_));           \
            exit(1);                                                        \
        }                                                                   \
    } while (0)

/* CHECK_ERR(expr, err): expr must return -1 with errno == err. */
#define CHECK_ERR(expr, err)                                                \
    do {                                                                    \
        errno = 0;                                                          \
        long r_ = (long)(expr);                                             \
        if (r_ != -1 || errno != (err)) {                                   \
            int e_ = errno;                                                 \
            fprintf(stderr, "%s:%d: %s = %ld (errno %d: %s), "              \
                    "expected -1 with %s\n", __FILE__, __LINE__, #expr, r_, \
                    e_, strerror(e_), #err);                                \
            exit(1);                                                        \
        }                                                                   \
    } while (0)

static inline void ok(void)
{
    printf("ok\n");
    fflush(stdout);
}

#endif
