"""System V IPC calls.  Linux: ipc/syscall.c, ipc/msg.c, ipc/sem.c, ipc/shm.c."""

from __future__ import annotations

import struct

from pyvisor.abi.linux.errno import Errno
from pyvisor.sentry.arch.syscall_args import SyscallArguments
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.kernel.ipc import IPC_64
from pyvisor.sentry.kernel.ipc import msgqueue as mq
from pyvisor.sentry.kernel.ipc import semaphore as sem
from pyvisor.sentry.kernel.ipc import shm
from pyvisor.sentry.kernel.task import Task


def sys_msgget(t: Task, r: SyscallArguments) -> int:
    """Implements msgget(2)."""
    return mq.msgget(t, r.int32(0), r.int32(1))


async def sys_msgsnd(t: Task, r: SyscallArguments) -> int:
    """Implements msgsnd(2)."""
    ident, addr, size, flags = r.int32(0), r.pointer(1), r.int64(2), r.int32(3)
    if size < 0 or size > mq.MSGMAX or ident < 0:
        raise SyscallError(Errno.EINVAL)
    (mtype,) = struct.unpack("<q", t.copy_in(addr, 8))
    data = t.copy_in(addr + 8, size) if size else b""
    await mq.msgsnd(t, ident, mtype, data, flags)
    return 0


async def sys_msgrcv(t: Task, r: SyscallArguments) -> int:
    """Implements msgrcv(2)."""
    ident, addr, size, msgtyp, flags = (r.int32(0), r.pointer(1), r.int64(2), r.int64(3),
                                        r.int32(4))
    if size < 0 or ident < 0:
        raise SyscallError(Errno.EINVAL)
    mtype, data = await mq.msgrcv(t, ident, size, msgtyp, flags)
    t.copy_out(addr, struct.pack("<q", mtype) + data)
    return len(data)


def sys_msgctl(t: Task, r: SyscallArguments) -> int:
    """Implements msgctl(2)."""
    return mq.msgctl(t, r.int32(0), r.int32(1) & ~IPC_64, r.pointer(2))


# -- semaphores -------------------------------------------------------------------------------

_SEMBUF = struct.Struct("<Hhh")


def sys_semget(t: Task, r: SyscallArguments) -> int:
    """Implements semget(2)."""
    return sem.semget(t, r.int32(0), r.int32(1), r.int32(2))


async def _semop(t: Task, ident: int, addr: int, nsops: int, deadline: int | None) -> int:
    if nsops < 1 or ident < 0:
        raise SyscallError(Errno.EINVAL)
    if nsops > sem.SEMOPM:
        raise SyscallError(Errno.E2BIG)
    raw = t.copy_in(addr, _SEMBUF.size * nsops)
    ops = [_SEMBUF.unpack_from(raw, i * _SEMBUF.size) for i in range(nsops)]
    await sem.semop(t, ident, ops, deadline)
    return 0


async def sys_semop(t: Task, r: SyscallArguments) -> int:
    """Implements semop(2)."""
    return await _semop(t, r.int32(0), r.pointer(1), r.int64(2), None)


async def sys_semtimedop(t: Task, r: SyscallArguments) -> int:
    """Implements semtimedop(2)."""
    from pyvisor.sentry.syscalls.linux.usertime import copy_in_timespec
    ts = r.pointer(3)
    deadline = t.kernel.now() + copy_in_timespec(t, ts) if ts else None
    return await _semop(t, r.int32(0), r.pointer(1), r.int64(2), deadline)


def sys_semctl(t: Task, r: SyscallArguments) -> int:
    """Implements semctl(2)."""
    return sem.semctl(t, r.int32(0), r.int32(1), r.int32(2) & ~IPC_64, r.uint64(3))


# -- shared memory ----------------------------------------------------------------------------


def sys_shmget(t: Task, r: SyscallArguments) -> int:
    """Implements shmget(2)."""
    return shm.shmget(t, r.int32(0), r.uint64(1), r.int32(2))


def sys_shmat(t: Task, r: SyscallArguments) -> int:
    """Implements shmat(2)."""
    return shm.shmat(t, r.int32(0), r.pointer(1), r.int32(2))


def sys_shmdt(t: Task, r: SyscallArguments) -> int:
    """Implements shmdt(2)."""
    shm.shmdt(t, r.pointer(0))
    return 0


def sys_shmctl(t: Task, r: SyscallArguments) -> int:
    """Implements shmctl(2)."""
    return shm.shmctl(t, r.int32(0), r.int32(1) & ~IPC_64, r.pointer(2))
