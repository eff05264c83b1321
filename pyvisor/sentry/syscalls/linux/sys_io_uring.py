"""io_uring_setup, io_uring_enter, io_uring_register.  Linux: io_uring/io_uring.c,
io_uring/register.c.  The rings and their semantics: kernel/io_uring.py."""

from __future__ import annotations

import struct

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.fcntl import O_RDWR
from pyvisor.sentry.arch.syscall_args import SyscallArguments
from pyvisor.sentry.errors import Interrupted, SyscallError, WouldBlock
from pyvisor.sentry.kernel import io_uring as iou
from pyvisor.sentry.kernel.io_uring import Ring
from pyvisor.sentry.kernel.task import Task
from pyvisor.sentry.syscalls.linux.sys_poll import EventFD, anon_file
from pyvisor.sentry.syscalls.linux.sys_read_write import do_read, do_write, read_iovecs
from pyvisor.sentry.vfs.file import FileDescription, FileImpl
from pyvisor.sentry.vfs.inode import Inode
from pyvisor.sentry.waitqueue import EVENT_IN, EVENT_OUT, WaitQueue

_O_CLOEXEC = 0o2000000

# From <linux/io_uring.h>: io_uring_register opcodes.
IORING_REGISTER_EVENTFD = 4
IORING_UNREGISTER_EVENTFD = 5
IORING_REGISTER_PROBE = 8
IORING_REGISTER_EVENTFD_ASYNC = 7
IO_URING_OP_SUPPORTED = 1
_PROBE_HEAD = struct.Struct("<BBH12x")       # last_op, ops_len, resv, resv2[3]
_PROBE_OP = struct.Struct("<BBHI")            # op, resv, flags, resv2


class RingInode(Inode):
    """The ring fd's anonymous inode: mmap maps the ring's memory."""

    def __init__(self, base: Inode, ring: Ring) -> None:
        super().__init__(base.fs, base.mode)
        self.ring = ring

    def mappable(self) -> Ring:
        return self.ring


class RingFile(FileImpl):
    """The io_uring fd.  Polls readable with CQEs ready, writable with SQ room."""

    splice_read = False

    def __init__(self, ring: Ring) -> None:
        self.ring = ring

    def read(self, fd: FileDescription, t: Task, n: int, offset: int) -> bytes:
        raise SyscallError(Errno.EINVAL)

    def readiness(self, fd: FileDescription, mask: int) -> int:
        return self.ring.readiness(mask)

    def waitq(self, fd: FileDescription) -> WaitQueue:
        return self.ring.wq


def _ring_of(t: Task, fd: int) -> Ring:
    f = t.fd_table.get(fd)
    if not isinstance(f.impl, RingFile):
        raise SyscallError(Errno.EOPNOTSUPP)
    return f.impl.ring


def sys_io_uring_setup(t: Task, r: SyscallArguments) -> int:
    """Implements io_uring_setup(2): no SQPOLL, IOPOLL or attached work queues."""
    entries, addr = r.uint32(0), r.pointer(1)
    p = iou.PARAMS.unpack(t.copy_in(addr, iou.PARAMS.size))
    cq_wanted, flags = p[1], p[2]
    if any(p[7:10]) or p[17] or p[18] or p[26] or p[27]:      # resv fields
        raise SyscallError(Errno.EINVAL)
    if flags & ~iou.SETUP_SUPPORTED:
        raise SyscallError(Errno.EINVAL)
    sq, cq = iou.setup_sizes(entries, flags, cq_wanted)
    try:
        ring = Ring(t.kernel.memfile, sq, cq)
    except MemoryError:
        raise SyscallError(Errno.ENOMEM) from None
    t.copy_out(addr, iou.params_out(ring, flags))
    f = anon_file(b"[io_uring]", RingFile(ring), O_RDWR)
    inode = RingInode(f.inode, ring)
    f.dentry.inode = f.inode = inode
    return t.fd_table.install(f, cloexec=True)


async def _rw(t: Task, sqe: tuple[int, ...]) -> int:
    """One READV/WRITEV/READ/WRITE request; its result or a SyscallError."""
    op, _, ioprio, fd, off, addr, ln = sqe[:7]
    if ioprio:
        iou.check_ioprio(ioprio)
    if sqe[9]:                               # buf_index: no registered buffers
        raise SyscallError(Errno.EINVAL)
    f = t.fd_table.get(fd)
    vectored = op in (iou.IORING_OP_READV, iou.IORING_OP_WRITEV)
    reading = op in (iou.IORING_OP_READV, iou.IORING_OP_READ)
    pos: int | None = None
    if off != 0xFFFFFFFFFFFFFFFF and f.impl.seekable:
        pos = off - (1 << 64) if off >> 63 else off
        if pos < 0:
            raise SyscallError(Errno.EINVAL)
    iovs = read_iovecs(t, addr, ln) if vectored else [(addr, ln)]
    total = sum(n for _, n in iovs)
    if reading:
        if not f.readable:
            raise SyscallError(Errno.EBADF)
        if not total:
            return 0
        if not f.impl.readiness(f, EVENT_IN) & EVENT_IN:
            raise WouldBlock()
        data = await do_read(t, f, total, pos)
        done = 0
        for base, n in iovs:
            if done >= len(data):
                break
            t.copy_out(base, data[done:done + n])
            done += n
        return len(data)
    if not f.writable:
        raise SyscallError(Errno.EBADF)
    data = b"".join(t.copy_in(base, n) for base, n in iovs if n)
    if not data:
        return 0
    if not f.impl.readiness(f, EVENT_OUT) & EVENT_OUT:
        raise WouldBlock()
    return await do_write(t, f, data, pos)


async def _issue(t: Task, sqe: tuple[int, ...]) -> int:
    """Runs one request; its CQE result."""
    op, flags = sqe[0], sqe[1]
    try:
        if flags & ~iou.IOSQE_KNOWN or flags & iou.IOSQE_BUFFER_SELECT:
            raise SyscallError(Errno.EINVAL)
        if flags & iou.IOSQE_FIXED_FILE:
            raise SyscallError(Errno.EBADF)          # no registered files
        if op == iou.IORING_OP_NOP:
            return 0
        if op in (iou.IORING_OP_READV, iou.IORING_OP_WRITEV, iou.IORING_OP_READ,
                  iou.IORING_OP_WRITE):
            return await _rw(t, sqe)
        if op == iou.IORING_OP_FSYNC:
            if sqe[7] & ~iou.IORING_FSYNC_DATASYNC or sqe[5] or sqe[6] or sqe[9]:
                raise SyscallError(Errno.EINVAL)
            f = t.fd_table.get(sqe[3])
            f.impl.fsync(f)
            return 0
        raise SyscallError(Errno.EINVAL)
    except SyscallError as e:
        return -int(e.errno)
    except Interrupted:
        return -int(Errno.EINTR)


async def sys_io_uring_enter(t: Task, r: SyscallArguments) -> int:
    """Implements io_uring_enter(2): submits up to `to_submit` SQEs (each completes
    before the next starts) and, with IORING_ENTER_GETEVENTS, waits for
    `min_complete` CQEs.  The signal mask argument is applied while waiting."""
    fd, to_submit, min_complete, flags = r.fd(0), r.uint32(1), r.uint32(2), r.uint32(3)
    sig, sigsz = r.pointer(4), r.uint64(5)
    ring = _ring_of(t, fd)
    if flags & ~iou.ENTER_KNOWN:
        raise SyscallError(Errno.EINVAL)
    if flags & iou.IORING_ENTER_EXT_ARG:
        raise SyscallError(Errno.EINVAL)            # TODO(#10): struct io_uring_getevents_arg
    mask: int | None = None
    if sig and flags & iou.IORING_ENTER_GETEVENTS:
        if sigsz != 8:
            raise SyscallError(Errno.EINVAL)
        (mask,) = struct.unpack("<Q", t.copy_in(sig, 8))
    submitted = 0
    n = min(to_submit, ring.pending_sqes())
    failed_link = False
    while submitted < n:
        sqe = ring.next_sqe()
        submitted += 1
        if sqe is None:
            continue
        link = bool(sqe[1] & (iou.IOSQE_IO_LINK | iou.IOSQE_IO_HARDLINK))
        if failed_link:
            res = -int(Errno.ECANCELED)
        else:
            res = await _issue(t, sqe)
        failed_link = link and (failed_link or (res < 0 and not sqe[1] & iou.IOSQE_IO_HARDLINK))
        if not (res >= 0 and sqe[1] & iou.IOSQE_CQE_SKIP_SUCCESS):
            ring.post(sqe[8], res)
    if flags & iou.IORING_ENTER_GETEVENTS and min_complete:
        await _wait_cqes(t, ring, min(min_complete, ring.cq_entries), mask)
    return submitted


async def _wait_cqes(t: Task, ring: Ring, want: int, mask: int | None) -> None:
    old = t.sigmask
    if mask is not None:
        t.sigmask = mask & ~((1 << 8) | (1 << 18))          # never SIGKILL or SIGSTOP
    try:
        while ring.cq_ready() < want:
            await t.kernel.block_on(t, ring.wq, EVENT_IN)
    except Interrupted:
        if mask is not None:
            t.saved_sigmask = old                          # restored after the handler
            mask = None
        raise SyscallError(Errno.EINTR) from None
    finally:
        if mask is not None:
            t.sigmask = old


def sys_io_uring_register(t: Task, r: SyscallArguments) -> int:
    """Implements io_uring_register(2): eventfd notification and the opcode probe."""
    ring = _ring_of(t, r.fd(0))
    op, arg, nr = r.uint32(1), r.pointer(2), r.uint32(3)
    if op in (IORING_REGISTER_EVENTFD, IORING_REGISTER_EVENTFD_ASYNC):
        if nr != 1:
            raise SyscallError(Errno.EINVAL)
        if ring.eventfd is not None:
            raise SyscallError(Errno.EBUSY)
        (efd,) = struct.unpack("<i", t.copy_in(arg, 4))
        f = t.fd_table.get(efd)
        if not isinstance(f.impl, EventFD):
            raise SyscallError(Errno.EBADF)
        ring.eventfd = f.impl
        return 0
    if op == IORING_UNREGISTER_EVENTFD:
        if arg or nr:
            raise SyscallError(Errno.EINVAL)
        if ring.eventfd is None:
            raise SyscallError(Errno.ENXIO)
        ring.eventfd = None
        return 0
    if op == IORING_REGISTER_PROBE:
        if nr > 256:
            nr = 256
        raw = t.copy_in(arg, _PROBE_HEAD.size + _PROBE_OP.size * nr)
        if any(raw):
            raise SyscallError(Errno.EINVAL)
        last = max(iou.SUPPORTED_OPS)
        out = bytearray(_PROBE_HEAD.pack(last, min(nr, last + 1), 0))
        for i in range(nr):
            out += _PROBE_OP.pack(i, 0, IO_URING_OP_SUPPORTED if i in iou.SUPPORTED_OPS
                                  else 0, 0)
        t.copy_out(arg, bytes(out))
        return 0
    raise SyscallError(Errno.EINVAL)
