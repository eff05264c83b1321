"""futex(2).  Linux: kernel/futex/syscalls.c."""

from __future__ import annotations

import struct

from pyvisor.abi.linux.errno import Errno
from pyvisor.sentry.arch.syscall_args import SyscallArguments
from pyvisor.sentry.kernel import futex
from pyvisor.sentry.errors import SyscallError, TimedOut
from pyvisor.sentry.kernel.task import Task
from pyvisor.sentry.syscalls.linux.usertime import copy_in_timespec

FUTEX_WAIT, FUTEX_WAKE, FUTEX_FD, FUTEX_REQUEUE, FUTEX_CMP_REQUEUE, FUTEX_WAKE_OP = 0, 1, 2, 3, 4, 5
FUTEX_WAIT_BITSET, FUTEX_WAKE_BITSET = 9, 10
FUTEX_PRIVATE_FLAG, FUTEX_CLOCK_REALTIME = 128, 256


def _wake_op(t: Task, uaddr: int, n: int, uaddr2: int, n2: int, op: int, private: bool) -> int:
    """FUTEX_WAKE_OP: *uaddr2 = *uaddr2 OP oparg; wake uaddr; maybe wake uaddr2."""
    kind, cmp_, oparg, cmparg = (op >> 28) & 7, (op >> 24) & 15, (op >> 12) & 0xFFF, op & 0xFFF
    if op & (8 << 28):
        oparg = 1 << oparg
    (old,) = struct.unpack("<i", t.copy_in(uaddr2, 4))
    new = {0: oparg, 1: old + oparg, 2: old | oparg, 3: old & ~oparg, 4: old ^ oparg}.get(kind)
    if new is None:
        raise SyscallError(Errno.ENOSYS)
    t.copy_out(uaddr2, struct.pack("<I", new & 0xFFFFFFFF))
    woken = futex.wake(t, uaddr, n, private=private)
    ok = {0: old == cmparg, 1: old != cmparg, 2: old < cmparg, 3: old <= cmparg,
          4: old > cmparg, 5: old >= cmparg}.get(cmp_, False)
    if ok:
        woken += futex.wake(t, uaddr2, n2, private=private)
    return woken


async def sys_futex(t: Task, r: SyscallArguments) -> int:
    """Implements futex(2): WAIT/WAKE (+BITSET), REQUEUE, CMP_REQUEUE, WAKE_OP.  No PI futexes."""
    uaddr, op, val, utime, uaddr2, val3 = (r.pointer(0), r.int32(1), r.uint32(2),
                                           r.pointer(3), r.pointer(4), r.uint32(5))
    cmd = op & ~(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME)
    private = bool(op & FUTEX_PRIVATE_FLAG)
    if cmd in (FUTEX_WAIT, FUTEX_WAIT_BITSET):
        deadline = None
        if utime:
            ns = copy_in_timespec(t, utime)
            if cmd == FUTEX_WAIT:
                deadline = t.kernel.now() + ns
            else:
                import time
                clock = time.CLOCK_REALTIME if op & FUTEX_CLOCK_REALTIME else time.CLOCK_MONOTONIC
                deadline = t.kernel.now() + max(0, ns - time.clock_gettime_ns(clock))
        bitset = val3 if cmd == FUTEX_WAIT_BITSET else 0xFFFFFFFF
        if bitset == 0:
            raise SyscallError(Errno.EINVAL)
        try:
            return await futex.wait(t, uaddr, val, deadline, bitset, private)
        except TimedOut:
            raise SyscallError(Errno.ETIMEDOUT) from None
    if cmd in (FUTEX_WAKE, FUTEX_WAKE_BITSET):
        bitset = val3 if cmd == FUTEX_WAKE_BITSET else 0xFFFFFFFF
        if bitset == 0:
            raise SyscallError(Errno.EINVAL)
        return futex.wake(t, uaddr, val, bitset, private)
    if cmd == FUTEX_REQUEUE:
        return futex.requeue(t, uaddr, val, uaddr2, utime & 0x7FFFFFFF, private=private)
    if cmd == FUTEX_CMP_REQUEUE:
        return futex.requeue(t, uaddr, val, uaddr2, utime & 0x7FFFFFFF, val3, private)
    if cmd == FUTEX_WAKE_OP:
        return _wake_op(t, uaddr, val, uaddr2, utime & 0x7FFFFFFF, val3, private)
    raise SyscallError(Errno.ENOSYS)


