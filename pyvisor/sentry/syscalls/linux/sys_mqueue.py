"""POSIX message queue syscalls.  Linux: ipc/mqueue.c (the SYSCALL_DEFINEs).

Behaviour lives in kernel/mqueue.py; this decodes arguments in Linux's order.
"""

from __future__ import annotations

import time

from pyvisor.abi.linux.errno import Errno
from pyvisor.abi.linux.fcntl import O_NONBLOCK
from pyvisor.sentry.arch.syscall_args import SyscallArguments
from pyvisor.sentry.kernel import mqueue
from pyvisor.sentry.errors import SyscallError, TimedOut, WouldBlock
from pyvisor.sentry.kernel.task import Task
from pyvisor.sentry.waitqueue import EVENT_IN, EVENT_OUT
from pyvisor.sentry.syscalls.linux.usertime import copy_in_timespec

_NSIG = 64


def sys_mq_open(t: Task, r: SyscallArguments) -> int:
    """Implements mq_open(2)."""
    uname, oflag, mode, uattr = r.pointer(0), r.int32(1), r.uint32(2), r.pointer(3)
    attr = None
    if uattr and oflag & 0o100:
        _flags, maxmsg, msgsize, _cur = mqueue.MQ_ATTR.unpack(t.copy_in(uattr, mqueue.MQ_ATTR.size))
        attr = (maxmsg, msgsize)
    name = t.copy_in_str(uname, 4096)
    f = mqueue.open_queue(t, name, oflag, mode, attr)
    return t.fd_table.install(f, cloexec=True)      # mq descriptors are always O_CLOEXEC


def sys_mq_unlink(t: Task, r: SyscallArguments) -> int:
    """Implements mq_unlink(2)."""
    mqueue.unlink(t, t.copy_in_str(r.pointer(0), 4096))
    return 0


def _deadline(t: Task, addr: int) -> int | None:
    """An absolute CLOCK_REALTIME timeout as a Sentry deadline (monotonic ns)."""
    if not addr:
        return None
    ns = copy_in_timespec(t, addr)
    return t.kernel.now() + max(0, ns - time.clock_gettime_ns(time.CLOCK_REALTIME))


async def sys_mq_timedsend(t: Task, r: SyscallArguments) -> int:
    """Implements mq_timedsend(2)."""
    mqdes, uptr, n, prio = r.int32(0), r.pointer(1), r.uint64(2), r.uint32(3)
    deadline = _deadline(t, r.pointer(4))
    if prio >= mqueue.MQ_PRIO_MAX:
        raise SyscallError(Errno.EINVAL)
    f, q = mqueue.queue_of(t, mqdes)
    if not f.writable:
        raise SyscallError(Errno.EBADF)
    if n > q.msgsize:
        raise SyscallError(Errno.EMSGSIZE)
    data = t.copy_in(uptr, n)
    while True:
        try:
            mqueue.try_send(t, q, data, prio)
            return 0
        except WouldBlock:
            if f.flags & O_NONBLOCK:
                raise
        try:
            await t.kernel.block_on(t, q.wq, EVENT_OUT, deadline)
        except TimedOut:
            raise SyscallError(Errno.ETIMEDOUT) from None


async def sys_mq_timedreceive(t: Task, r: SyscallArguments) -> int:
    """Implements mq_timedreceive(2)."""
    mqdes, uptr, n, uprio = r.int32(0), r.pointer(1), r.uint64(2), r.pointer(3)
    deadline = _deadline(t, r.pointer(4))
    f, q = mqueue.queue_of(t, mqdes)
    if not f.readable:
        raise SyscallError(Errno.EBADF)
    if n < q.msgsize:
        raise SyscallError(Errno.EMSGSIZE)
    while True:
        if q.keys:
            t.mm.check_range(uptr, len(q.msgs[q.keys[0]]), 2)   # EFAULT leaves it queued
            data, prio = mqueue.try_receive(q)
            if uprio:
                t.copy_out(uprio, prio.to_bytes(4, "little"))
            t.copy_out(uptr, data)
            return len(data)
        if f.flags & O_NONBLOCK:
            raise WouldBlock()
        q.receivers += 1
        try:
            await t.kernel.block_on(t, q.wq, EVENT_IN, deadline)
        except TimedOut:
            raise SyscallError(Errno.ETIMEDOUT) from None
        finally:
            q.receivers -= 1


def sys_mq_notify(t: Task, r: SyscallArguments) -> int:
    """Implements mq_notify(2).  SIGEV_THREAD (glibc's netlink helper) is EINVAL."""
    mqdes, usev = r.int32(0), r.pointer(1)
    sev = None
    if usev:
        value, signo, notify = mqueue.SIGEVENT.unpack(t.copy_in(usev, mqueue.SIGEVENT.size))
        if notify not in (mqueue.SIGEV_NONE, mqueue.SIGEV_SIGNAL):
            raise SyscallError(Errno.EINVAL)
        if notify == mqueue.SIGEV_SIGNAL and not 0 <= signo <= _NSIG:
            raise SyscallError(Errno.EINVAL)
        sev = (value, signo, notify)
    _f, q = mqueue.queue_of(t, mqdes)
    mqueue.set_notification(t, q, sev)
    return 0


def sys_mq_getsetattr(t: Task, r: SyscallArguments) -> int:
    """Implements mq_getsetattr(2): only O_NONBLOCK can change."""
    mqdes, unew, uold = r.int32(0), r.pointer(1), r.pointer(2)
    new_flags = None
    if unew:
        new_flags = mqueue.MQ_ATTR.unpack(t.copy_in(unew, mqueue.MQ_ATTR.size))[0]
        if new_flags & ~O_NONBLOCK:
            raise SyscallError(Errno.EINVAL)
    f, q = mqueue.queue_of(t, mqdes)
    old = mqueue.MQ_ATTR.pack(f.flags & O_NONBLOCK, q.maxmsg, q.msgsize, q.curmsgs)
    if new_flags is not None:
        f.flags = (f.flags & ~O_NONBLOCK) | new_flags
    if uold:
        t.copy_out(uold, old)
    return 0
