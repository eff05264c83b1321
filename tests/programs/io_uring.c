/* io_uring with raw syscalls: setup's checks and ring layout, the three mmap
 * offsets, NOP, READV/WRITEV/READ/WRITE (positional and at the file position),
 * per-request errors in the CQE, linked requests cancelled after a failure,
 * CQE_SKIP_SUCCESS, the eventfd and the opcode probe of io_uring_register,
 * poll on the ring fd, and EOPNOTSUPP for an fd that is no ring. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/io_uring.h>
#include <poll.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include "check.h"

static int setup(unsigned entries, struct io_uring_params *p)
{
    return syscall(SYS_io_uring_setup, entries, p);
}

static int enter(int fd, unsigned n, unsigned min, unsigned flags)
{
    return syscall(SYS_io_uring_enter, fd, n, min, flags, NULL, 0);
}

struct ring {
    int fd;
    struct io_uring_params p;
    char *sq, *cq;
    struct io_uring_sqe *sqes;
    unsigned *sq_tail, *sq_array, *cq_head, *cq_tail, sq_mask, cq_mask;
    struct io_uring_cqe *cqes;
};

static void ring_init(struct ring *r, unsigned entries)
{
    memset(&r->p, 0, sizeof r->p);
    r->fd = setup(entries, &r->p);
    CHECK(r->fd >= 0);
    CHECK(r->p.features & IORING_FEAT_SINGLE_MMAP);
    size_t sqsz = r->p.sq_off.array + r->p.sq_entries * 4;
    size_t cqsz = r->p.cq_off.cqes + r->p.cq_entries * sizeof(struct io_uring_cqe);
    r->sq = mmap(0, sqsz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
                 IORING_OFF_SQ_RING);
    CHECK(r->sq != MAP_FAILED);
    r->cq = mmap(0, cqsz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
                 IORING_OFF_CQ_RING);
    CHECK(r->cq != MAP_FAILED);
    r->sqes = mmap(0, r->p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQES);
    CHECK(r->sqes != MAP_FAILED);
    r->sq_tail = (unsigned *)(r->sq + r->p.sq_off.tail);
    r->sq_array = (unsigned *)(r->sq + r->p.sq_off.array);
    r->sq_mask = *(unsigned *)(r->sq + r->p.sq_off.ring_mask);
    r->cq_head = (unsigned *)(r->cq + r->p.cq_off.head);
    r->cq_tail = (unsigned *)(r->cq + r->p.cq_off.tail);
    r->cq_mask = *(unsigned *)(r->cq + r->p.cq_off.ring_mask);
    r->cqes = (struct io_uring_cqe *)(r->cq + r->p.cq_off.cqes);
    CHECK(r->sq_mask == r->p.sq_entries - 1);
    CHECK(*(unsigned *)(r->cq + r->p.cq_off.ring_entries) == r->p.cq_entries);
}

static struct io_uring_sqe *get_sqe(struct ring *r)
{
    unsigned tail = *r->sq_tail;
    unsigned i = tail & r->sq_mask;
    struct io_uring_sqe *sqe = &r->sqes[i];
    memset(sqe, 0, sizeof *sqe);
    r->sq_array[i] = i;
    __atomic_store_n(r->sq_tail, tail + 1, __ATOMIC_RELEASE);
    return sqe;
}

static struct io_uring_cqe pop_cqe(struct ring *r)
{
    unsigned head = *r->cq_head;
    CHECK(head != __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE));
    struct io_uring_cqe c = r->cqes[head & r->cq_mask];
    __atomic_store_n(r->cq_head, head + 1, __ATOMIC_RELEASE);
    return c;
}

int main(void)
{
    struct io_uring_params p;

    /* setup's argument checks */
    memset(&p, 0, sizeof p);
    CHECK_ERR(setup(0, &p), EINVAL);
    p.resv[1] = 1;
    CHECK_ERR(setup(1, &p), EINVAL);
    memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_CQSIZE;
    CHECK_ERR(setup(1, &p), EINVAL);                    /* cq_entries 0 */
    p.cq_entries = 16;
    CHECK_ERR(setup(32, &p), EINVAL);                   /* fewer CQ than SQ entries */
    CHECK_ERR(setup(1, NULL), EFAULT);
    memset(&p, 0, sizeof p);
    int fd = setup(3, &p);
    CHECK(fd >= 0);
    CHECK(p.sq_entries == 4 && p.cq_entries == 8);
    CHECK(p.sq_off.array % 64 == 0);
    CHECK(fcntl(fd, F_GETFD) == FD_CLOEXEC);
    CHECK(mmap(0, 4096, PROT_READ, MAP_SHARED, fd, 66) == MAP_FAILED && errno == EINVAL);
    close(fd);

    struct ring r;
    ring_init(&r, 4);
    CHECK(*(unsigned *)(r.sq + r.p.sq_off.head) == 0);

    /* NOPs: the return value counts consumed SQEs; CQEs come in order. */
    for (int i = 0; i < 3; i++)
        get_sqe(&r)->user_data = 100 + i;
    CHECK(enter(r.fd, 2, 2, IORING_ENTER_GETEVENTS) == 2);
    CHECK(*(unsigned *)(r.sq + r.p.sq_off.head) == 2);
    CHECK(*r.cq_tail == 2);
    CHECK(enter(r.fd, 5, 1, IORING_ENTER_GETEVENTS) == 1);   /* only one left */
    for (int i = 0; i < 3; i++) {
        struct io_uring_cqe c = pop_cqe(&r);
        CHECK(c.user_data == 100 + (unsigned)i && c.res == 0);
    }

    /* poll: readable once a CQE is waiting */
    struct pollfd pfd = {r.fd, POLLIN | POLLOUT, 0};
    CHECK(poll(&pfd, 1, 0) == 1 && pfd.revents == POLLOUT);
    get_sqe(&r)->user_data = 7;
    CHECK(enter(r.fd, 1, 0, 0) == 1);
    CHECK(poll(&pfd, 1, 0) == 1 && pfd.revents == (POLLIN | POLLOUT));
    pop_cqe(&r);

    /* WRITEV then READV at offsets, READ at the file position */
    char path[] = "/tmp/io_uringXXXXXX";
    int f = mkstemp(path);
    CHECK(f >= 0);
    unlink(path);
    char a[] = "hello ", b[] = "uring!";
    struct iovec wv[2] = {{a, 6}, {b, 6}};
    struct io_uring_sqe *s = get_sqe(&r);
    s->opcode = IORING_OP_WRITEV;
    s->fd = f;
    s->addr = (uintptr_t)wv;
    s->len = 2;
    s->off = 4;
    s->user_data = 1;
    CHECK(enter(r.fd, 1, 1, IORING_ENTER_GETEVENTS) == 1);
    struct io_uring_cqe c = pop_cqe(&r);
    CHECK(c.user_data == 1 && c.res == 12);
    CHECK(lseek(f, 0, SEEK_CUR) == 0);                     /* positional: no move */
    char x[5] = {0}, y[20] = {0};
    struct iovec rv[2] = {{x, 4}, {y, 20}};
    s = get_sqe(&r);
    s->opcode = IORING_OP_READV;
    s->fd = f;
    s->addr = (uintptr_t)rv;
    s->len = 2;
    s->off = 0;
    s->user_data = 2;
    CHECK(enter(r.fd, 1, 1, IORING_ENTER_GETEVENTS) == 1);
    c = pop_cqe(&r);
    CHECK(c.user_data == 2 && c.res == 16);
    CHECK(memcmp(x, "\0\0\0\0", 4) == 0 && memcmp(y, "hello uring!", 12) == 0);
    CHECK(lseek(f, 10, SEEK_SET) == 10);
    char z[8] = {0};
    s = get_sqe(&r);
    s->opcode = IORING_OP_READ;
    s->fd = f;
    s->addr = (uintptr_t)z;
    s->len = 8;
    s->off = (uint64_t)-1;                                 /* the file position */
    CHECK(enter(r.fd, 1, 1, IORING_ENTER_GETEVENTS) == 1);
    c = pop_cqe(&r);
    CHECK(c.res == 6 && memcmp(z, "uring!", 6) == 0);
    CHECK(lseek(f, 0, SEEK_CUR) == 16);

    /* errors land in the CQE; a failed link cancels the rest of its chain */
    s = get_sqe(&r);
    s->opcode = 250;
    s->user_data = 3;
    CHECK(enter(r.fd, 1, 1, IORING_ENTER_GETEVENTS) == 1);
    c = pop_cqe(&r);
    CHECK(c.user_data == 3 && c.res == -EINVAL);
    s = get_sqe(&r);
    s->opcode = IORING_OP_READ;
    s->fd = 1000;
    s->addr = (uintptr_t)z;
    s->len = 1;
    s->flags = IOSQE_IO_LINK;
    s->user_data = 4;
    s = get_sqe(&r);
    s->opcode = IORING_OP_NOP;
    s->user_data = 5;
    CHECK(enter(r.fd, 2, 2, IORING_ENTER_GETEVENTS) == 2);
    c = pop_cqe(&r);
    CHECK(c.user_data == 4 && c.res == -EBADF);
    c = pop_cqe(&r);
    CHECK(c.user_data == 5 && c.res == -ECANCELED);
    int wo = open("/dev/null", O_WRONLY);
    s = get_sqe(&r);
    s->opcode = IORING_OP_READ;
    s->fd = wo;
    s->addr = (uintptr_t)z;
    s->len = 1;
    CHECK(enter(r.fd, 1, 1, IORING_ENTER_GETEVENTS) == 1);
    CHECK(pop_cqe(&r).res == -EBADF);
    s = get_sqe(&r);
    s->opcode = IORING_OP_NOP;
    s->flags = IOSQE_CQE_SKIP_SUCCESS;
    CHECK(enter(r.fd, 1, 0, 0) == 1);
    CHECK(*r.cq_head == *r.cq_tail);

    /* eventfd notification */
    int efd = eventfd(0, EFD_NONBLOCK);
    CHECK(syscall(SYS_io_uring_register, r.fd, IORING_REGISTER_EVENTFD, &efd, 1) == 0);
    CHECK_ERR(syscall(SYS_io_uring_register, r.fd, IORING_REGISTER_EVENTFD, &efd, 1), EBUSY);
    get_sqe(&r);
    get_sqe(&r);
    CHECK(enter(r.fd, 2, 2, IORING_ENTER_GETEVENTS) == 2);
    uint64_t cnt = 0;
    CHECK(read(efd, &cnt, 8) == 8 && cnt >= 1);
    pop_cqe(&r);
    pop_cqe(&r);
    CHECK(syscall(SYS_io_uring_register, r.fd, IORING_UNREGISTER_EVENTFD, NULL, 0) == 0);
    get_sqe(&r);
    CHECK(enter(r.fd, 1, 1, IORING_ENTER_GETEVENTS) == 1);
    CHECK_ERR(read(efd, &cnt, 8), EAGAIN);
    pop_cqe(&r);

    /* the opcode probe */
    struct {
        struct io_uring_probe h;
        struct io_uring_probe_op ops[32];
    } probe;
    memset(&probe, 0, sizeof probe);
    CHECK(syscall(SYS_io_uring_register, r.fd, IORING_REGISTER_PROBE, &probe, 32) == 0);
    CHECK(probe.h.ops_len > IORING_OP_WRITE);
    CHECK(probe.ops[IORING_OP_NOP].flags & IO_URING_OP_SUPPORTED);
    CHECK(probe.ops[IORING_OP_READV].flags & IO_URING_OP_SUPPORTED);
    CHECK(probe.ops[IORING_OP_WRITE].flags & IO_URING_OP_SUPPORTED);

    /* not a ring */
    CHECK_ERR(enter(f, 0, 0, 0), EOPNOTSUPP);
    CHECK_ERR(enter(-1, 0, 0, 0), EBADF);
    CHECK_ERR(enter(r.fd, 0, 0, 1U << 30), EINVAL);
    ok();
    return 0;
}
