"""rseq and membarrier.  Linux: kernel/rseq.c, kernel/sched/membarrier.c.

Restartable sequences live in kernel/rseq.py.  membarrier's barriers are the
host's: MEMBARRIER_CMD_GLOBAL issued by the Sentry makes every thread running
on the host, and so every application thread, pass a full memory barrier
before the call returns (stopped threads pass one when they are resumed).
The expedited commands use it too: slower than Linux's IPIs, never weaker.
"""

from __future__ import annotations

import ctypes

from pyvisor.abi.linux.errno import Errno
from pyvisor.sentry.arch.syscall_args import SyscallArguments
from pyvisor.sentry.errors import SyscallError
from pyvisor.sentry.kernel import rseq
from pyvisor.sentry.kernel.task import Task

# From <linux/membarrier.h>.
MEMBARRIER_CMD_QUERY = 0
MEMBARRIER_CMD_GLOBAL = 1 << 0
MEMBARRIER_CMD_GLOBAL_EXPEDITED = 1 << 1
MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED = 1 << 2
MEMBARRIER_CMD_PRIVATE_EXPEDITED = 1 << 3
MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED = 1 << 4
MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE = 1 << 5
MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE = 1 << 6
MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ = 1 << 7
MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ = 1 << 8
MEMBARRIER_CMD_GET_REGISTRATIONS = 1 << 9
MEMBARRIER_CMD_FLAG_CPU = 1
SUPPORTED = (MEMBARRIER_CMD_GLOBAL | MEMBARRIER_CMD_GLOBAL_EXPEDITED
             | MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED | MEMBARRIER_CMD_PRIVATE_EXPEDITED
             | MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED
             | MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE
             | MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE
             | MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ
             | MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ | MEMBARRIER_CMD_GET_REGISTRATIONS)
# Which registration each expedited command needs.
_NEEDS = {MEMBARRIER_CMD_GLOBAL_EXPEDITED: 0,
          MEMBARRIER_CMD_PRIVATE_EXPEDITED: MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
          MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE:
              MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE,
          MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ: MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ}
_REGISTER = (MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED | MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED
             | MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE
             | MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ)

_libc = ctypes.CDLL(None, use_errno=True)
_SYS_membarrier = 324


def sys_rseq(t: Task, r: SyscallArguments) -> int:
    """Implements rseq(2)."""
    return rseq.sys_rseq(t, r.pointer(0), r.uint32(1), r.int32(2), r.uint32(3))


def _host_barrier() -> None:
    """A full memory barrier on every CPU running user code (host MEMBARRIER_CMD_GLOBAL)."""
    if _libc.syscall(_SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) != 0:
        raise SyscallError.from_host(OSError(ctypes.get_errno(), "membarrier"))


def sys_membarrier(t: Task, r: SyscallArguments) -> int:
    """Implements membarrier(2)."""
    cmd, flags, _cpu = r.int32(0), r.uint32(1), r.int32(2)
    if cmd == MEMBARRIER_CMD_QUERY:
        if flags:
            raise SyscallError(Errno.EINVAL)
        return SUPPORTED
    if flags & ~MEMBARRIER_CMD_FLAG_CPU or (flags and cmd not in (
            MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ,)):
        raise SyscallError(Errno.EINVAL)
    regs: set[int] = getattr(t.mm, "membarrier_regs", None) or set()
    if cmd == MEMBARRIER_CMD_GET_REGISTRATIONS:
        out = 0
        for c in regs:
            out |= c
        return out
    if cmd & _REGISTER and cmd & (cmd - 1) == 0:
        regs.add(cmd)
        t.mm.membarrier_regs = regs      # type: ignore[attr-defined]
        return 0
    if cmd == MEMBARRIER_CMD_GLOBAL:
        _host_barrier()
        return 0
    if cmd not in _NEEDS:
        raise SyscallError(Errno.EINVAL)
    need = _NEEDS[cmd]
    if need and need not in regs:
        raise SyscallError(Errno.EPERM)
    if cmd == MEMBARRIER_CMD_GLOBAL_EXPEDITED:
        _host_barrier()
        return 0
    if cmd == MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ:
        rseq.fence(t)
    _host_barrier()
    return 0
