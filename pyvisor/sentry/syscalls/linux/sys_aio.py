"""io_setup, io_destroy, io_submit, io_cancel, io_getevents.  Linux: fs/aio.c.
Contexts, rings and completion: kernel/aio.py."""

from __future__ import annotations

import struct

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.fcntl import O_PATH
from pyvisor.sentry.arch.syscall_args import SyscallArguments
from pyvisor.sentry.errors import Interrupted, SyscallError, TimedOut
from pyvisor.sentry.kernel import aio
from pyvisor.sentry.kernel.aio import Context
from pyvisor.sentry.kernel.io_uring import check_ioprio
from pyvisor.sentry.kernel.task import Task
from pyvisor.sentry.syscalls.linux.sys_poll import EventFD
from pyvisor.sentry.syscalls.linux.sys_read_write import do_read, do_write, read_iovecs
from pyvisor.sentry.vfs.file import FileDescription
from pyvisor.sentry.waitqueue import EVENT_IN

# From <linux/aio_abi.h>.
IOCB_CMD_PREAD, IOCB_CMD_PWRITE, IOCB_CMD_FSYNC, IOCB_CMD_FDSYNC = 0, 1, 2, 3
IOCB_CMD_PREADV, IOCB_CMD_PWRITEV = 7, 8
IOCB_FLAG_RESFD, IOCB_FLAG_IOPRIO = 1, 2
KIOCB_KEY = 0
# struct iocb: aio_data, aio_key, aio_rw_flags, aio_lio_opcode, aio_reqprio, aio_fildes,
# aio_buf, aio_nbytes, aio_offset, aio_reserved2, aio_flags, aio_resfd.
IOCB = struct.Struct("<QIIHhIQQqQII")
assert IOCB.size == 64
_TASK_SIZE = 0x7FFFFFFFF000
_TIMESPEC = struct.Struct("<qq")


def sys_io_setup(t: Task, r: SyscallArguments) -> int:
    """Implements io_setup(2)."""
    nr, addr = r.uint32(0), r.pointer(1)
    (old,) = struct.unpack("<Q", t.copy_in(addr, 8))
    if old:
        raise SyscallError(Errno.EINVAL)          # *ctxp must be 0
    ctx = aio.setup(t, nr)
    try:
        t.copy_out(addr, struct.pack("<Q", ctx.user_addr))
    except SyscallError:
        aio.destroy(t, ctx)
        raise
    return 0


def sys_io_destroy(t: Task, r: SyscallArguments) -> int:
    """Implements io_destroy(2): nothing is ever in flight, so nothing to wait for."""
    aio.destroy(t, aio.lookup(t, r.uint64(0)))
    return 0


def _access_ok(base: int, n: int) -> None:
    if base + n > _TASK_SIZE or base + n < base:
        raise SyscallError(Errno.EFAULT)


def _prep(t: Task, cb: tuple[int, ...]) -> tuple[FileDescription, list[tuple[int, int]] | None,
                                               object]:
    """The checks Linux makes before it queues a request (errors here fail io_submit):
    the file, the eventfd, the buffers.  Returns (file, iovecs or None, eventfd)."""
    op, prio, fd, buf, nbytes, off, flags = cb[3], cb[4], cb[5], cb[6], cb[7], cb[8], cb[10]
    efd = None
    if flags & IOCB_FLAG_RESFD:
        ef = t.fd_table.get(cb[11])
        if not isinstance(ef.impl, EventFD):
            raise SyscallError(Errno.EINVAL)
        efd = ef.impl
    f = t.fd_table.get(fd)
    if f.flags & O_PATH:
        raise SyscallError(Errno.EBADF)
    if op in (IOCB_CMD_FSYNC, IOCB_CMD_FDSYNC):
        if buf or off or nbytes or cb[2]:
            raise SyscallError(Errno.EINVAL)
        return f, None, efd
    if op not in (IOCB_CMD_PREAD, IOCB_CMD_PWRITE, IOCB_CMD_PREADV, IOCB_CMD_PWRITEV):
        raise SyscallError(Errno.EINVAL)
    if flags & IOCB_FLAG_IOPRIO:
        check_ioprio(prio & 0xFFFF)
    if cb[2]:
        raise SyscallError(Errno.EOPNOTSUPP)        # RWF_* flags: none supported
    reading = op in (IOCB_CMD_PREAD, IOCB_CMD_PREADV)
    if not (f.readable if reading else f.writable):
        raise SyscallError(Errno.EBADF)
    if op in (IOCB_CMD_PREADV, IOCB_CMD_PWRITEV):
        iovs = read_iovecs(t, buf, nbytes)
        for base, n in iovs:
            _access_ok(base, n)
    else:
        _access_ok(buf, nbytes)
        iovs = [(buf, nbytes)]
    if off < 0:
        raise SyscallError(Errno.EINVAL)             # rw_verify_area
    return f, iovs, efd


async def _run(t: Task, f: FileDescription, op: int, iovs: list[tuple[int, int]] | None,
               off: int) -> int:
    """Performs a prepared request: its result (the io_event's res)."""
    try:
        if iovs is None:
            f.impl.fsync(f)
            return 0
        pos = off if f.impl.seekable else None
        total = sum(n for _, n in iovs)
        if op in (IOCB_CMD_PREAD, IOCB_CMD_PREADV):
            if not total:
                return 0
            data = await do_read(t, f, total, pos)
            done = 0
            for base, n in iovs:
                if done >= len(data):
                    break
                t.copy_out(base, data[done:done + n])
                done += n
            return len(data)
        data = b"".join(t.copy_in(base, n) for base, n in iovs if n)
        return await do_write(t, f, data, pos) if data else 0
    except SyscallError as e:
        return -int(e.errno)
    except Interrupted:
        return -int(Errno.EINTR)


async def sys_io_submit(t: Task, r: SyscallArguments) -> int:
    """Implements io_submit(2): each request completes before the next is read."""
    ctx_id, nr, addr = r.uint64(0), r.int64(1), r.pointer(2)
    if nr < 0:
        raise SyscallError(Errno.EINVAL)
    ctx = aio.lookup(t, ctx_id)
    nr = min(nr, ctx.nr)
    done = 0
    try:
        while done < nr:
            (user_iocb,) = struct.unpack("<Q", t.copy_in(addr + 8 * done, 8))
            cb = IOCB.unpack(t.copy_in(user_iocb, IOCB.size))
            if cb[9] or cb[7] >> 63:                # aio_reserved2; a negative count
                raise SyscallError(Errno.EINVAL)
            if ctx.dead or ctx.room() == 0:
                raise SyscallError(Errno.EAGAIN)
            f, iovs, efd = _prep(t, cb)
            t.copy_out(user_iocb + 8, struct.pack("<I", KIOCB_KEY))
            f.incref()
            try:
                res = await _run(t, f, cb[3], iovs, cb[8])
            finally:
                f.decref()
            if not ctx.dead and ctx.room():
                ctx.post(cb[0], user_iocb, res, efd)
            done += 1
    except SyscallError:
        if done == 0:
            raise
    return done


async def sys_io_getevents(t: Task, r: SyscallArguments) -> int:
    """Implements io_getevents(2)."""
    ctx_id, min_nr, nr, events, timeout = (r.uint64(0), r.int64(1), r.int64(2), r.pointer(3),
                                           r.pointer(4))
    until: int | None = None
    if timeout:
        sec, nsec = _TIMESPEC.unpack(t.copy_in(timeout, _TIMESPEC.size))
        until = max(0, sec * 1_000_000_000 + nsec)
    ctx = aio.lookup(t, ctx_id)
    if not 0 <= min_nr <= nr:
        raise SyscallError(Errno.EINVAL)
    deadline = None if until is None else t.kernel.now() + until
    got = 0
    while True:
        evs = ctx.take(nr - got)
        if evs:
            try:
                t.copy_out(events + aio.IO_EVENT.size * got, b"".join(evs))
            except SyscallError:
                if got == 0:
                    raise
                return got
            got += len(evs)
        if got >= min_nr or got >= nr or until == 0 or ctx.dead:
            return got
        try:
            await t.kernel.block_on(t, ctx.wq, EVENT_IN, deadline=deadline)
        except TimedOut:
            return got
        except Interrupted:
            if got:
                return got
            raise SyscallError(Errno.EINTR) from None


def sys_io_cancel(t: Task, r: SyscallArguments) -> int:
    """Implements io_cancel(2).  Requests complete at submission, so there is never
    one in flight to cancel (EINVAL, as Linux for a completed request)."""
    ctx_id, iocb = r.uint64(0), r.pointer(1)
    (key,) = struct.unpack("<I", t.copy_in(iocb + 8, 4))
    if key != KIOCB_KEY:
        raise SyscallError(Errno.EINVAL)
    ctx: Context = aio.lookup(t, ctx_id)
    del ctx
    raise SyscallError(Errno.EINVAL)
