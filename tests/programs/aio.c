/* Linux native AIO with raw syscalls: the ring mapped at the context id (its
 * header, events consumed in user space by moving head, as libaio does),
 * PWRITE/PREAD/PREADV/FSYNC, IOCB_FLAG_RESFD, the submission-time errors,
 * io_getevents' timeout, io_cancel, mremap of the ring, io_destroy. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include "check.h"

struct aio_ring {
    unsigned id, nr, head, tail, magic, compat_features, incompat_features, header_length;
    struct io_event io_events[];
};

static long io_setup(unsigned nr, aio_context_t *ctx) { return syscall(SYS_io_setup, nr, ctx); }
static long io_destroy(aio_context_t ctx) { return syscall(SYS_io_destroy, ctx); }
static long io_submit(aio_context_t ctx, long n, struct iocb **cbs)
{
    return syscall(SYS_io_submit, ctx, n, cbs);
}
static long io_getevents(aio_context_t ctx, long min, long max, struct io_event *ev,
                         struct timespec *ts)
{
    return syscall(SYS_io_getevents, ctx, min, max, ev, ts);
}

static struct iocb cb_of(int op, int fd, void *buf, size_t n, long long off)
{
    struct iocb cb;
    memset(&cb, 0, sizeof cb);
    cb.aio_lio_opcode = op;
    cb.aio_fildes = fd;
    cb.aio_buf = (uintptr_t)buf;
    cb.aio_nbytes = n;
    cb.aio_offset = off;
    return cb;
}

int main(void)
{
    char path[] = "/tmp/aioXXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    unlink(path);

    aio_context_t ctx = 0;
    CHECK_ERR(io_setup(0, &ctx), EINVAL);
    CHECK_ERR(io_setup(8, NULL), EFAULT);
    CHECK(io_setup(8, &ctx) == 0);
    CHECK(ctx != 0 && ctx % 4096 == 0);
    aio_context_t other = 5;
    CHECK_ERR(io_setup(8, &other), EINVAL);             /* *ctxp must be 0 */
    struct aio_ring *ring = (struct aio_ring *)ctx;
    CHECK(ring->magic == 0xa10a10a1);
    CHECK(ring->header_length == sizeof(struct aio_ring));
    CHECK(ring->nr >= 16 && ring->head == 0 && ring->tail == 0);

    /* PWRITE then PREAD: the event names the iocb and carries its data */
    char msg[] = "hello aio";
    struct iocb w = cb_of(IOCB_CMD_PWRITE, fd, msg, 9, 3);
    w.aio_data = 0x1234;
    struct iocb *cbs[2] = {&w};
    CHECK(io_submit(ctx, 1, cbs) == 1);
    struct io_event ev[4];
    CHECK(io_getevents(ctx, 1, 4, ev, NULL) == 1);
    CHECK(ev[0].data == 0x1234 && ev[0].obj == (uintptr_t)&w && ev[0].res == 9);
    CHECK(lseek(fd, 0, SEEK_CUR) == 0);
    char in[16] = {0}, a[4] = {0}, b[16] = {0};
    struct iocb rd = cb_of(IOCB_CMD_PREAD, fd, in, sizeof in, 0);
    struct iovec iov[2] = {{a, 4}, {b, 16}};
    struct iocb rv = cb_of(IOCB_CMD_PREADV, fd, iov, 2, 2);
    cbs[0] = &rd;
    cbs[1] = &rv;
    unsigned h = ring->head;
    CHECK(h == 1 && ring->tail == 1);
    CHECK(io_submit(ctx, 2, cbs) == 2);
    /* consume from the ring in user space, as libaio does */
    CHECK(ring->tail == h + 2);
    CHECK(ring->io_events[h].obj == (uintptr_t)&rd && ring->io_events[h].res == 12);
    CHECK(ring->io_events[h + 1].obj == (uintptr_t)&rv && ring->io_events[h + 1].res == 10);
    __atomic_store_n(&ring->head, h + 2, __ATOMIC_RELEASE);
    CHECK(memcmp(in, "\0\0\0hello aio", 12) == 0);
    CHECK(memcmp(a, "\0hel", 4) == 0 && memcmp(b, "lo aio", 6) == 0);
    struct timespec zero = {0, 0};
    CHECK(io_getevents(ctx, 1, 4, ev, &zero) == 0);
    struct timespec tiny = {0, 1000};
    CHECK(io_getevents(ctx, 1, 4, ev, &tiny) == 0);

    /* FSYNC and the eventfd */
    int efd = eventfd(0, EFD_NONBLOCK);
    struct iocb fs = cb_of(IOCB_CMD_FSYNC, fd, NULL, 0, 0);
    fs.aio_flags = IOCB_FLAG_RESFD;
    fs.aio_resfd = efd;
    cbs[0] = &fs;
    CHECK(io_submit(ctx, 1, cbs) == 1);
    CHECK(io_getevents(ctx, 1, 1, ev, NULL) == 1 && ev[0].res == 0);
    uint64_t cnt = 0;                 /* signalled by the time the event is there */
    CHECK(read(efd, &cnt, 8) == 8 && cnt == 1);

    /* errors at submission */
    struct iocb bad = cb_of(IOCB_CMD_PREAD, 999, in, 1, 0);
    cbs[0] = &bad;
    CHECK_ERR(io_submit(ctx, 1, cbs), EBADF);
    bad = cb_of(IOCB_CMD_PREAD, fd, in, 1, -1);
    CHECK_ERR(io_submit(ctx, 1, cbs), EINVAL);
    struct iovec wild = {(void *)0xFFFFFFFF00000000ULL, 1};
    bad = cb_of(IOCB_CMD_PWRITEV, fd, &wild, 1, 0);
    CHECK_ERR(io_submit(ctx, 1, cbs), EFAULT);
    bad = cb_of(77, fd, in, 1, 0);
    CHECK_ERR(io_submit(ctx, 1, cbs), EINVAL);
    int ro = open("/dev/null", O_RDONLY);
    bad = cb_of(IOCB_CMD_PWRITE, ro, in, 1, 0);
    CHECK_ERR(io_submit(ctx, 1, cbs), EBADF);
    bad = cb_of(IOCB_CMD_PREAD, fd, in, 1, 0);
    bad.aio_flags = IOCB_FLAG_RESFD;
    bad.aio_resfd = fd;
    CHECK_ERR(io_submit(ctx, 1, cbs), EINVAL);          /* not an eventfd */
    /* the second request fails: the first one counts */
    struct iocb good = cb_of(IOCB_CMD_PREAD, fd, in, 1, 0);
    bad = cb_of(IOCB_CMD_PREAD, 999, in, 1, 0);
    cbs[0] = &good;
    cbs[1] = &bad;
    CHECK(io_submit(ctx, 2, cbs) == 1);
    CHECK(io_getevents(ctx, 1, 1, ev, NULL) == 1);
    CHECK_ERR(io_submit(ctx, -1, cbs), EINVAL);
    CHECK_ERR(io_submit(ctx + 4096, 1, cbs), EINVAL);
    CHECK_ERR(io_getevents(ctx, 2, 1, ev, NULL), EINVAL);
    CHECK_ERR(syscall(SYS_io_cancel, ctx, &good, &ev[0]), EINVAL);

    /* mremap: the context follows its ring */
    size_t sz = 4096;
    void *dst = mmap(NULL, sz, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(dst != MAP_FAILED);
    CHECK(mremap((void *)ctx, sz, sz, MREMAP_FIXED | MREMAP_MAYMOVE, dst) == dst);
    cbs[0] = &good;
    CHECK_ERR(io_submit(ctx, 1, cbs), EINVAL);
    ctx = (aio_context_t)dst;
    CHECK(io_submit(ctx, 1, cbs) == 1);
    CHECK(io_getevents(ctx, 1, 1, ev, NULL) == 1 && ev[0].res == 1);
    CHECK(mremap((void *)ctx, sz, 2 * sz, MREMAP_MAYMOVE) == MAP_FAILED && errno == EFAULT);

    CHECK(io_destroy(ctx) == 0);
    CHECK_ERR(io_destroy(ctx), EINVAL);
    CHECK_ERR(io_submit(ctx, 1, cbs), EINVAL);
    ok();
    return 0;
}
