/* Key retention: session keyrings per thread (KEYCTL_JOIN_SESSION_KEYRING gives
 * the caller alone a new one), KEYCTL_DESCRIBE's format and buffer rule,
 * permissions (SETPERM 0 locks everybody out, root too), named keyrings found
 * again only when searchable, user keys with add_key, request_key, READ. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <linux/keyctl.h>
#include "check.h"

static long keyctl(int op, unsigned long a2, unsigned long a3, unsigned long a4,
                   unsigned long a5)
{
    return syscall(SYS_keyctl, op, a2, a3, a4, a5);
}

static long describe(long id, char *buf, size_t n)
{
    return keyctl(KEYCTL_DESCRIBE, id, (unsigned long)buf, n, 0);
}

static unsigned long perm_of(long id)
{
    char buf[512];
    CHECK(describe(id, buf, sizeof buf) > 0);
    /* type;uid;gid;perm;description */
    char *p = buf;
    for (int i = 0; i < 3; i++)
        p = strchr(p, ';') + 1;
    return strtoul(p, NULL, 16);
}

static long parent_ses, child_ses;

static void *child(void *arg)
{
    child_ses = keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0, 0, 0);
    return NULL;
}

static long rejoined;

static void *rejoin(void *arg)
{
    CHECK(keyctl(KEYCTL_JOIN_SESSION_KEYRING, 0, 0, 0, 0) > 0);
    rejoined = keyctl(KEYCTL_JOIN_SESSION_KEYRING, (unsigned long)"pv_named", 0, 0, 0);
    return NULL;
}

static void *body(void *arg)
{
    char buf[512];
    /* A new anonymous session keyring for this thread only. */
    long ses = keyctl(KEYCTL_JOIN_SESSION_KEYRING, 0, 0, 0, 0);
    CHECK(ses > 0);
    CHECK(keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0, 0, 0) == ses);
    CHECK(ses != parent_ses);
    long n = describe(KEY_SPEC_SESSION_KEYRING, NULL, 0);
    CHECK(n > 0);
    CHECK(describe(KEY_SPEC_SESSION_KEYRING, buf, 4) == n);     /* too small: length only */
    CHECK(describe(KEY_SPEC_SESSION_KEYRING, buf, sizeof buf) == n);
    CHECK((long)strlen(buf) + 1 == n);
    CHECK(strncmp(buf, "keyring;", 8) == 0);
    CHECK(strcmp(buf + n - 6, ";_ses") == 0);
    CHECK(perm_of(ses) == 0x3f030000);

    /* A thread made now shares it. */
    pthread_t th;
    CHECK(pthread_create(&th, NULL, child, NULL) == 0);
    CHECK(pthread_join(th, NULL) == 0);
    CHECK(child_ses == ses);

    /* User keys. */
    long k = syscall(SYS_add_key, "user", "pv:test", "secret", 6, KEY_SPEC_SESSION_KEYRING);
    CHECK(k > 0);
    CHECK(syscall(SYS_request_key, "user", "pv:test", NULL, 0) == k);
    CHECK(keyctl(KEYCTL_SEARCH, KEY_SPEC_SESSION_KEYRING, (unsigned long)"user",
                 (unsigned long)"pv:test", 0) == k);
    CHECK(keyctl(KEYCTL_READ, k, (unsigned long)buf, sizeof buf, 0) == 6);
    CHECK(memcmp(buf, "secret", 6) == 0);
    CHECK(syscall(SYS_add_key, "user", "pv:test", "other!!", 7, KEY_SPEC_SESSION_KEYRING) == k);
    CHECK(keyctl(KEYCTL_READ, k, (unsigned long)buf, sizeof buf, 0) == 7);
    int32_t ids[4];
    CHECK(keyctl(KEYCTL_READ, KEY_SPEC_SESSION_KEYRING, (unsigned long)ids, sizeof ids, 0) == 4);
    CHECK(ids[0] == k);
    CHECK_ERR(syscall(SYS_request_key, "user", "pv:none", NULL, 0), ENOKEY);
    CHECK_ERR(syscall(SYS_add_key, "no-such-type", "x", "y", 1, KEY_SPEC_SESSION_KEYRING),
              ENODEV);
    CHECK(keyctl(KEYCTL_UNLINK, k, KEY_SPEC_SESSION_KEYRING, 0, 0) == 0);
    CHECK_ERR(syscall(SYS_request_key, "user", "pv:test", NULL, 0), ENOKEY);

    /* Named keyrings: found again by name only when the owner may search them. */
    long named = keyctl(KEYCTL_JOIN_SESSION_KEYRING, (unsigned long)"pv_named", 0, 0, 0);
    CHECK(named > 0 && named != ses);
    CHECK(perm_of(named) == 0x3f130000);
    long again = keyctl(KEYCTL_JOIN_SESSION_KEYRING, (unsigned long)"pv_named", 0, 0, 0);
    CHECK(again > 0 && again != named);                 /* not searchable: a new one */
    CHECK(keyctl(KEYCTL_SETPERM, again, 0x3f130000 | 0x80000, 0, 0) == 0);
    CHECK(keyctl(KEYCTL_JOIN_SESSION_KEYRING, (unsigned long)"pv_named", 0, 0, 0) == 0);
    /* Another thread (this one still holds it) finds it by name. */
    CHECK(pthread_create(&th, NULL, rejoin, NULL) == 0);
    CHECK(pthread_join(th, NULL) == 0);
    CHECK(rejoined == again);

    /* No permissions: nobody may describe it or change it back. */
    CHECK(keyctl(KEYCTL_SETPERM, KEY_SPEC_SESSION_KEYRING, 0, 0, 0) == 0);
    CHECK_ERR(describe(KEY_SPEC_SESSION_KEYRING, buf, sizeof buf), EACCES);
    CHECK_ERR(describe(again, buf, sizeof buf), EACCES);
    CHECK_ERR(keyctl(KEYCTL_SETPERM, again, 0x3f000000, 0, 0), EACCES);
    CHECK_ERR(keyctl(KEYCTL_SETPERM, KEY_SPEC_SESSION_KEYRING, 0x40000000, 0, 0), EINVAL);

    CHECK_ERR(keyctl(KEYCTL_GET_KEYRING_ID, 0, 0, 0, 0), EINVAL);
    CHECK_ERR(keyctl(KEYCTL_DESCRIBE, -100, 0, 0, 0), EINVAL);
    return NULL;
}

int main(void)
{
    parent_ses = keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0, 0, 0);
    CHECK(parent_ses > 0);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, body, NULL) == 0);
    CHECK(pthread_join(th, NULL) == 0);
    /* The main thread kept its session keyring. */
    CHECK(keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0, 0, 0) == parent_ses);
    /* Some ids name no key. */
    int missing = 0;
    for (int i = 0; i < 100 && !missing; i++) {
        long id = 1000 + (long)((unsigned)rand() % 0x7fff0000u);
        missing = describe(id, NULL, 0) == -1 && errno == ENOKEY;
    }
    CHECK(missing);
    ok();
    return 0;
}
